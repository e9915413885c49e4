package maildev

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Email is one received message as MailDev's REST API describes it
// (GET /api/email). MailDev parses the MIME itself: Text and HTML are the
// decoded parts, Subject is decoded.
type Email struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`
	Subject string    `json:"subject"`
	From    []Address `json:"from"`
	To      []Address `json:"to"`
	// Headers holds the headers MailDev keeps, by lower-case name
	// ("message-id", "subject", "mime-version", …); use Header to read one.
	Headers  map[string]json.RawMessage `json:"headers"`
	Text     string                     `json:"text"`
	HTML     string                     `json:"html"`
	Size     int                        `json:"size"`
	Envelope Envelope                   `json:"envelope"`
}

// Address is a mailbox: address and display name.
type Address struct {
	Address string `json:"address"`
	Name    string `json:"name"`
}

// Envelope is the SMTP envelope MailDev saw.
type Envelope struct {
	From Address   `json:"from"`
	To   []Address `json:"to"`
}

// Header returns the header's value by name (case-insensitive), the first
// one if MailDev lists several, or "".
func (e Email) Header(name string) string {
	raw, ok := e.Headers[strings.ToLower(name)]
	if !ok {
		return ""
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 {
		return many[0]
	}
	return ""
}

// Emails lists every received message, oldest first.
func (s *Server) Emails(ctx context.Context) ([]Email, error) {
	body, err := s.call(ctx, http.MethodGet, "api/email")
	if err != nil {
		return nil, err
	}
	var out []Email
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("maildev: decoding email list: %w", err)
	}
	return out, nil
}

// Source returns the raw message (RFC 5322 as received) with id.
func (s *Server) Source(ctx context.Context, id string) ([]byte, error) {
	return s.call(ctx, http.MethodGet, "api/email/"+url.PathEscape(id)+"/source")
}

// DeleteAll deletes every received message.
func (s *Server) DeleteAll(ctx context.Context) error {
	_, err := s.call(ctx, http.MethodDelete, "api/email/all")
	return err
}

func (s *Server) call(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.WebURL()+path, nil)
	if err != nil {
		return nil, fmt.Errorf("maildev: %s %s: %w", method, path, err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("maildev: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("maildev: %s %s: reading response: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("maildev: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}
