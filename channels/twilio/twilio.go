// Package twilio sends SMS and WhatsApp messages through Twilio's
// Programmable Messaging API with github.com/twilio/twilio-go.
//
// One Sender serves both channels; a message's Channel picks the sender
// address (From or WhatsAppFrom, or the Messaging Service). WhatsApp
// templates go out as ContentSid + ContentVariables. Send honours its
// context (twilio-go itself does not take one), classifies Twilio's answers
// as channels.Transient (429, 5xx, network, timeout) or channels.Permanent
// (other 4xx), and never puts phone numbers or bodies into errors: Twilio's
// own error messages quote the number, so only status and code are kept.
//
// Retries, rate limiting and metrics are decorators around the Sender, not
// part of it.
package twilio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/dialogwerk/dialogwerk/channels"
)

// Config configures a Sender. Zero values mean the documented default; New
// validates it.
type Config struct {
	// AccountSID is the Twilio account ("AC…"). Required, alphanumeric.
	AccountSID string
	// AuthToken is the account's auth token. Required, alphanumeric.
	AuthToken string
	// From is the SMS sender: an E.164 number, a short code or an
	// alphanumeric sender ID (up to 11 letters, digits, spaces). SMS needs
	// From or MessagingServiceSID.
	From string
	// WhatsAppFrom is the E.164 number of the WhatsApp sender, without the
	// "whatsapp:" prefix. WhatsApp needs WhatsAppFrom or MessagingServiceSID.
	WhatsAppFrom string
	// MessagingServiceSID ("MG" + 32 hex digits) sends through a Messaging
	// Service instead of a fixed sender. Mutually exclusive with From; when
	// WhatsAppFrom is empty WhatsApp goes through the service as well.
	MessagingServiceSID string
	// StatusCallback is the URL Twilio posts delivery status changes to
	// (optional, absolute http(s) URL).
	StatusCallback string
	// BaseURL replaces https://api.twilio.com as the API's address (scheme,
	// host and an optional path prefix), for a local stand-in such as
	// channels/twiliosim. Default: the real API.
	BaseURL string
	// Timeout bounds each request, answer included. Default 10s.
	Timeout time.Duration
	// MaxConns is how many idle keep-alive connections to the API are kept
	// for reuse. Default 64.
	MaxConns int
}

// Sender sends SMS and WhatsApp messages through Twilio. It is safe for
// concurrent use.
type Sender struct {
	cfg       Config
	creds     *client.Credentials
	transport *http.Transport
	base      *url.URL // nil: the real API
	smsFrom   string   // From parameter for SMS, or "" to use the service
	waFrom    string   // From parameter for WhatsApp, or ""
	service   string
}

// New validates cfg and returns a Sender.
func New(cfg Config) (*Sender, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("twilio: invalid config: %w", err)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 64
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = cfg.MaxConns
	t.MaxIdleConnsPerHost = cfg.MaxConns // the default of 2 throttles concurrent sends
	s := &Sender{
		cfg:       cfg,
		creds:     client.NewCredentials(cfg.AccountSID, cfg.AuthToken),
		transport: t,
		smsFrom:   cfg.From,
		service:   cfg.MessagingServiceSID,
	}
	if cfg.WhatsAppFrom != "" {
		s.waFrom = "whatsapp:" + cfg.WhatsAppFrom
	}
	if cfg.BaseURL != "" {
		s.base, _ = url.Parse(cfg.BaseURL) // checked by validate
		s.base.Path = strings.TrimSuffix(s.base.Path, "/")
	}
	return s, nil
}

func (c Config) validate() error {
	var errs []error
	if c.AccountSID == "" || !alphanumeric(c.AccountSID) {
		errs = append(errs, errors.New("AccountSID must be set and alphanumeric"))
	}
	if c.AuthToken == "" || !alphanumeric(c.AuthToken) {
		errs = append(errs, errors.New("AuthToken must be set and alphanumeric"))
	}
	if c.From != "" && !isE164(c.From) && !isShortCode(c.From) && !isAlphaSender(c.From) {
		errs = append(errs, errors.New("the From sender must be an E.164 number, a short code or an alphanumeric sender ID"))
	}
	if c.WhatsAppFrom != "" && !isE164(c.WhatsAppFrom) {
		errs = append(errs, errors.New("WhatsAppFrom must be an E.164 number without the whatsapp: prefix"))
	}
	if c.MessagingServiceSID != "" && !isSID(c.MessagingServiceSID, "MG") {
		errs = append(errs, errors.New(`MessagingServiceSID must be "MG" and 32 hex digits`))
	}
	if c.From != "" && c.MessagingServiceSID != "" {
		errs = append(errs, errors.New("set From or MessagingServiceSID, not both"))
	}
	if c.From == "" && c.WhatsAppFrom == "" && c.MessagingServiceSID == "" {
		errs = append(errs, errors.New("one of From, WhatsAppFrom or MessagingServiceSID is required"))
	}
	if c.StatusCallback != "" && !isHTTPURL(c.StatusCallback) {
		errs = append(errs, errors.New("StatusCallback must be an absolute http(s) URL"))
	}
	if c.BaseURL != "" && !isHTTPURL(c.BaseURL) {
		errs = append(errs, errors.New("BaseURL must be an absolute http(s) URL"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("negative Timeout"))
	}
	if c.MaxConns < 0 {
		errs = append(errs, errors.New("negative MaxConns"))
	}
	return errors.Join(errs...)
}

// Supports reports whether the configuration has a sender for channel k.
func (s *Sender) Supports(k channels.Kind) bool {
	switch k {
	case channels.SMS:
		return s.smsFrom != "" || s.service != ""
	case channels.WhatsApp:
		return s.waFrom != "" || s.service != ""
	}
	return false
}

// Close releases idle connections. Sends after Close still work (they open
// new connections).
func (s *Sender) Close() { s.transport.CloseIdleConnections() }

// Send hands msg to Twilio and returns the message SID and, for SMS, the
// billed segment count. It returns early with an error wrapping ctx.Err()
// when ctx ends; other errors are classified with channels.Transient or
// channels.Permanent and carry Twilio's error code.
func (s *Sender) Send(ctx context.Context, msg channels.Message) (channels.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, fmt.Errorf("twilio: sending message %s: %w", msg.Key, err)
	}
	params, err := s.params(msg)
	if err != nil {
		return channels.Receipt{}, err
	}

	callCtx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	rt := &callTransport{ctx: callCtx, base: s.base, next: s.transport}
	c := &client.Client{
		Credentials: s.creds,
		HTTPClient: &http.Client{
			Transport:     rt,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		UserAgentExtensions: []string{"dialogwerk"},
	}
	c.SetAccountSid(s.cfg.AccountSID)
	// A bare RequestHandler: NewRequestHandler would read TWILIO_EDGE and
	// TWILIO_REGION from the environment on every call.
	api := openapi.NewApiService(&client.RequestHandler{Client: c})

	res, err := api.CreateMessage(params)
	if err != nil {
		return channels.Receipt{}, s.classify(ctx, callCtx, msg.Key, rt.status, err)
	}
	if res.Sid == nil || *res.Sid == "" {
		return channels.Receipt{}, channels.Permanent("response",
			fmt.Errorf("twilio: message %s accepted (HTTP %d) without a SID", msg.Key, rt.status))
	}
	rc := channels.Receipt{ProviderID: *res.Sid}
	if msg.Channel == channels.SMS {
		// Twilio's count wins; through a Messaging Service it is "0" until a
		// sender is picked, so fall back to our own.
		if res.NumSegments != nil {
			rc.Segments, _ = strconv.Atoi(*res.NumSegments)
		}
		if rc.Segments <= 0 && msg.ContentSID == "" {
			rc.Segments = Segments(msg.Text)
		}
	}
	return rc, nil
}

// params checks msg and builds Twilio's create parameters. Problems Twilio
// would refuse anyway are permanent failures without a request.
func (s *Sender) params(msg channels.Message) (*openapi.CreateMessageParams, error) {
	p := &openapi.CreateMessageParams{}
	var from string
	switch msg.Channel {
	case channels.SMS:
		from = s.smsFrom
		p.SetTo(msg.To)
	case channels.WhatsApp:
		from = s.waFrom
		p.SetTo("whatsapp:" + msg.To)
	default:
		return nil, channels.Permanent("channel", fmt.Errorf("twilio: message %s: channel %q is not SMS or WhatsApp", msg.Key, msg.Channel))
	}
	if !s.Supports(msg.Channel) {
		return nil, channels.Permanent("config", fmt.Errorf("twilio: message %s: no %s sender configured", msg.Key, msg.Channel))
	}
	if !isE164(msg.To) {
		return nil, channels.Permanent("21211", fmt.Errorf("twilio: message %s: recipient is not an E.164 number", msg.Key))
	}
	switch {
	case from != "":
		p.SetFrom(from)
	default:
		p.SetMessagingServiceSid(s.service)
	}
	if msg.ContentSID != "" {
		p.SetContentSid(msg.ContentSID)
		if len(msg.ContentVariables) > 0 {
			vars, err := json.Marshal(msg.ContentVariables)
			if err != nil {
				return nil, channels.Permanent("21656", fmt.Errorf("twilio: message %s: encoding content variables: %w", msg.Key, err))
			}
			p.SetContentVariables(string(vars))
		}
	} else {
		if msg.Text == "" {
			return nil, channels.Permanent("21619", fmt.Errorf("twilio: message %s: empty body", msg.Key))
		}
		if utf8.RuneCountInString(msg.Text) > 1600 {
			return nil, channels.Permanent("21617", fmt.Errorf("twilio: message %s: body exceeds 1600 characters", msg.Key))
		}
		p.SetBody(msg.Text)
	}
	if s.cfg.StatusCallback != "" {
		p.SetStatusCallback(s.cfg.StatusCallback)
	}
	return p, nil
}

// APIError is an error answer from Twilio, without its message text (which
// may quote the recipient's number).
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Code is Twilio's error code (https://www.twilio.com/docs/errors/{Code}),
	// 0 when the answer carried none.
	Code int
}

func (e *APIError) Error() string {
	if e.Code == 0 {
		return fmt.Sprintf("twilio API answered HTTP %d", e.Status)
	}
	return fmt.Sprintf("twilio API error %d (HTTP %d), see https://www.twilio.com/docs/errors/%d", e.Code, e.Status, e.Code)
}

// classify turns what CreateMessage returned into Dialogwerk's error
// classes. status is the HTTP status seen on the wire (0 if none).
func (s *Sender) classify(ctx, callCtx context.Context, key string, status int, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("twilio: sending message %s: %w", key, ctxErr)
	}
	var restErr *client.TwilioRestError
	switch {
	case errors.As(err, &restErr):
		return apiFailure(key, &APIError{Status: restErr.Status, Code: restErr.Code})
	case status >= 400:
		// An error answer that is not Twilio's JSON (a proxy's 502 page).
		return apiFailure(key, &APIError{Status: status})
	case status >= 200 && status < 300:
		// Twilio accepted the message but the answer could not be read.
		// Retrying might send it twice, so this is permanent.
		return channels.Permanent("response",
			fmt.Errorf("twilio: message %s accepted (HTTP %d) but the answer is unreadable: %w", key, status, err))
	case errors.Is(callCtx.Err(), context.DeadlineExceeded):
		return channels.Transient("timeout",
			fmt.Errorf("twilio: sending message %s: no answer within %s: %w", key, s.cfg.Timeout, err))
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return channels.Transient("timeout", fmt.Errorf("twilio: sending message %s: %w", key, err))
	}
	return channels.Transient("network", fmt.Errorf("twilio: sending message %s: %w", key, err))
}

func apiFailure(key string, e *APIError) error {
	code := strconv.Itoa(e.Code)
	if e.Code == 0 {
		code = strconv.Itoa(e.Status)
	}
	err := fmt.Errorf("twilio: sending message %s: %w", key, e)
	if e.Status == http.StatusTooManyRequests || e.Status >= 500 {
		return channels.Transient(code, err)
	}
	return channels.Permanent(code, err)
}

// callTransport carries one Send's context into the request twilio-go
// builds with context.Background, points it at the base URL, and records
// the answer's status.
type callTransport struct {
	ctx    context.Context
	base   *url.URL
	next   http.RoundTripper
	status int // set by RoundTrip; read after CreateMessage returned
}

func (t *callTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.WithContext(t.ctx)
	if t.base != nil {
		u := *req.URL
		u.Scheme, u.Host = t.base.Scheme, t.base.Host
		u.Path = t.base.Path + u.Path
		u.RawPath = ""
		r.URL, r.Host = &u, ""
	}
	res, err := t.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	t.status = res.StatusCode
	// Answers are small; reading them whole here (under ctx) lets the
	// connection go back to the pool even though twilio-go stops decoding
	// before EOF and never closes error bodies.
	b, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	_ = res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(b))
	return res, nil
}

// maxAnswer bounds how much of an answer is read; a message resource is
// about 1 KiB.
const maxAnswer = 1 << 20

func alphanumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// isE164 reports whether s is "+", a digit 1–9 and 6 to 14 more digits.
func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	return allDigits(s[2:])
}

func isShortCode(s string) bool { return len(s) >= 5 && len(s) <= 6 && allDigits(s) }

// isAlphaSender reports whether s is an alphanumeric sender ID: up to 11
// letters, digits and spaces, at least one letter.
func isAlphaSender(s string) bool {
	if s == "" || len(s) > 11 {
		return false
	}
	letter := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			letter = true
		case '0' <= c && c <= '9', c == ' ':
		default:
			return false
		}
	}
	return letter
}

func isSID(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != 32 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
