package smtpsink

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// maxDepth bounds multipart nesting.
const maxDepth = 8

// parse reads raw into a Mail; what cannot be parsed is reported in
// ParseErr, with Raw always set.
func parse(raw []byte) Mail {
	m := Mail{Raw: raw}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		m.ParseErr = fmt.Errorf("reading header: %w", err)
		return m
	}
	m.Header = msg.Header
	dec := mime.WordDecoder{}
	if subj := msg.Header.Get("Subject"); subj != "" {
		if m.Subject, err = dec.DecodeHeader(subj); err != nil {
			m.Subject = subj
			m.ParseErr = fmt.Errorf("decoding subject: %w", err)
		}
	}
	m.MessageID = strings.Trim(strings.TrimSpace(msg.Header.Get("Message-Id")), "<>")
	m.ListUnsubscribe = msg.Header.Get("List-Unsubscribe")
	m.ListUnsubscribePost = msg.Header.Get("List-Unsubscribe-Post")
	h := textproto.MIMEHeader(msg.Header)
	if err := m.walk(h, msg.Body, 0, true); err != nil && m.ParseErr == nil {
		m.ParseErr = err
	}
	return m
}

// walk records the leaf parts of one entity with header h and body r.
func (m *Mail) walk(h textproto.MIMEHeader, r io.Reader, depth int, top bool) error {
	ct := h.Get("Content-Type")
	mediaType, params := "text/plain", map[string]string{}
	if ct != "" {
		var err error
		if mediaType, params, err = mime.ParseMediaType(ct); err != nil {
			return fmt.Errorf("content type %q: %w", ct, err)
		}
	}
	if top {
		m.ContentType = mediaType
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		if depth >= maxDepth {
			return fmt.Errorf("multipart nested deeper than %d", maxDepth)
		}
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextRawPart() // raw: the transfer encoding is ours to undo
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading %s part: %w", mediaType, err)
			}
			if err := m.walk(p.Header, p, depth+1, false); err != nil {
				return err
			}
		}
	}
	m.Parts = append(m.Parts, mediaType)
	body, err := io.ReadAll(decoder(h.Get("Content-Transfer-Encoding"), r))
	if err != nil {
		return fmt.Errorf("decoding %s part: %w", mediaType, err)
	}
	switch {
	case mediaType == "text/plain" && m.Text == "":
		m.Text = strings.ReplaceAll(string(body), "\r\n", "\n")
	case mediaType == "text/html" && m.HTML == "":
		m.HTML = strings.ReplaceAll(string(body), "\r\n", "\n")
	}
	return nil
}

// decoder undoes a Content-Transfer-Encoding.
func decoder(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r) // skips line breaks itself
	}
	return r
}
