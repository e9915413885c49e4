package smtpsink_test

import (
	"context"
	"errors"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels/smtpsink"
)

func start(t *testing.T, cfg smtpsink.Config) *smtpsink.Sink {
	t.Helper()
	s, err := smtpsink.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// A hand-written multipart message: quoted-printable text, base64 HTML,
// RFC 2047 subject, as a mail client would send it.
const rawMail = "From: \"Stadtwerke\" <service@stadtwerke.example>\r\n" +
	"To: erika@example.org\r\n" +
	"Subject: =?UTF-8?q?Gr=C3=BC=C3=9Fe_aus_M=C3=BCnchen?=\r\n" +
	"Message-ID: <key-1@stadtwerke.example>\r\n" +
	"List-Unsubscribe: <https://stadtwerke.example/u/abc>\r\n" +
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=\"XYZ\"\r\n" +
	"\r\n" +
	"--XYZ\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Sch=C3=B6ne Gr=C3=BC=C3=9Fe,\r\nIhre Stadtwerke\r\n" +
	"--XYZ\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+U2No\r\nw7ZuZSBHcsO8w59lPC9wPg==\r\n" +
	"--XYZ--\r\n"

func send(addr, from, to, msg string) error {
	return smtp.SendMail(addr, nil, from, []string{to}, []byte(msg))
}

func TestKeepParsesAndIndexes(t *testing.T) {
	t.Parallel()
	s := start(t, smtpsink.Config{})
	if err := send(s.Addr(), "service@stadtwerke.example", "Erika@Example.org", rawMail); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	got := s.Received("erika@example.org")
	if len(got) != 1 {
		t.Fatalf("Received = %d mails, want 1", len(got))
	}
	m := got[0]
	checks := []struct{ name, got, want string }{
		{"From", m.From, "service@stadtwerke.example"},
		{"Subject", m.Subject, "Grüße aus München"},
		{"MessageID", m.MessageID, "key-1@stadtwerke.example"},
		{"ListUnsubscribe", m.ListUnsubscribe, "<https://stadtwerke.example/u/abc>"},
		{"ListUnsubscribePost", m.ListUnsubscribePost, "List-Unsubscribe=One-Click"},
		{"ContentType", m.ContentType, "multipart/alternative"},
		{"Text", m.Text, "Schöne Grüße,\nIhre Stadtwerke"},
		{"HTML", m.HTML, "<p>Schöne Grüße</p>"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if m.ParseErr != nil {
		t.Errorf("ParseErr = %v", m.ParseErr)
	}
	if strings.Join(m.Parts, ",") != "text/plain,text/html" {
		t.Errorf("Parts = %v", m.Parts)
	}
	if s.Count() != 1 || len(s.All()) != 1 {
		t.Errorf("Count = %d, All = %d, want 1, 1", s.Count(), len(s.All()))
	}
	if other := s.Received("someone@example.org"); len(other) != 0 {
		t.Errorf("unrelated recipient has %d mails", len(other))
	}
}

func TestDiscardCountsOnly(t *testing.T) {
	t.Parallel()
	s := start(t, smtpsink.Config{Mode: smtpsink.Discard})
	for range 3 {
		if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); err != nil {
			t.Fatalf("SendMail: %v", err)
		}
	}
	if s.Count() != 3 {
		t.Errorf("Count = %d, want 3", s.Count())
	}
	if n := len(s.All()); n != 0 {
		t.Errorf("Discard stored %d mails", n)
	}
}

func replyCode(err error) int {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return tp.Code
	}
	return 0
}

func TestFailNextThenRecovers(t *testing.T) {
	t.Parallel()
	s := start(t, smtpsink.Config{})
	s.FailNext("b@example.org", 451)
	s.FailNextData("b@example.org", 554)
	if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); replyCode(err) != 451 {
		t.Fatalf("first send: %v, want a 451 reply", err)
	}
	if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); replyCode(err) != 554 {
		t.Fatalf("second send: %v, want a 554 reply", err)
	}
	if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); err != nil {
		t.Fatalf("third send: %v", err)
	}
	if n := len(s.Received("b@example.org")); n != 1 {
		t.Errorf("stored %d mails, want 1 (refused ones are not stored)", n)
	}
}

func TestAuthRequiredWhenConfigured(t *testing.T) {
	t.Parallel()
	s := start(t, smtpsink.Config{Username: "dw", Password: "geheim"})
	dial := func() *smtp.Client {
		c, err := smtp.Dial(s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	c := dial()
	if err := c.Mail("a@example.org"); replyCode(err)/100 != 5 {
		t.Fatalf("MAIL before AUTH: %v, want a 5xx reply", err)
	}
	// net/smtp sends PLAIN without TLS only to a loopback server, and
	// hangs up after a failed AUTH.
	if err := c.Auth(smtp.PlainAuth("", "dw", "falsch", "127.0.0.1")); replyCode(err) != 535 {
		t.Fatalf("AUTH with a wrong password: %v, want 535", err)
	}
	c = dial()
	if err := c.Auth(smtp.PlainAuth("", "dw", "geheim", "127.0.0.1")); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.Mail("a@example.org"); err != nil {
		t.Fatalf("MAIL after AUTH: %v", err)
	}
}

func TestConnectionsCountedAndDropped(t *testing.T) {
	t.Parallel()
	s := start(t, smtpsink.Config{})
	c, err := smtp.Dial(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err != nil {
		t.Fatal(err)
	}
	if s.Connections() != 1 {
		t.Errorf("Connections = %d, want 1", s.Connections())
	}
	if n := s.DropConnections(); n != 1 {
		t.Errorf("DropConnections closed %d, want 1", n)
	}
	if err := c.Noop(); err == nil {
		t.Error("NOOP on a dropped connection succeeded")
	}
	// The sink still accepts new connections.
	if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); err != nil {
		t.Fatalf("send after drop: %v", err)
	}
	if s.Connections() != 2 {
		t.Errorf("Connections = %d, want 2", s.Connections())
	}
}

func TestStartValidates(t *testing.T) {
	t.Parallel()
	cases := []smtpsink.Config{
		{Mode: smtpsink.Mode(7)},
		{Password: "x"},
		{Addr: "256.0.0.1:0"},
	}
	for _, cfg := range cases {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		s, err := smtpsink.Start(ctx, cfg)
		cancel()
		if err == nil {
			_ = s.Close()
			t.Errorf("Start(%+v) succeeded, want an error", cfg)
		}
	}
}
