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

// modes runs f for each Mode as a parallel subtest.
func modes(t *testing.T, f func(t *testing.T, mode smtpsink.Mode)) {
	t.Helper()
	for _, m := range []struct {
		name string
		mode smtpsink.Mode
	}{{"keep", smtpsink.Keep}, {"discard", smtpsink.Discard}} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			f(t, m.mode)
		})
	}
}

func TestFailNextThenRecovers(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, mode smtpsink.Mode) {
		s := start(t, smtpsink.Config{Mode: mode})
		s.FailNext("b@example.org", 451)
		s.FailNextData("B@example.org", 554)
		if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); replyCode(err) != 451 {
			t.Fatalf("first send: %v, want a 451 reply", err)
		}
		if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); replyCode(err) != 554 {
			t.Fatalf("second send: %v, want a 554 reply", err)
		}
		if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); err != nil {
			t.Fatalf("third send: %v", err)
		}
		if s.Count() != 1 {
			t.Errorf("Count = %d, want 1 (refused ones are not counted)", s.Count())
		}
		if n := len(s.Received("b@example.org")); mode == smtpsink.Keep && n != 1 {
			t.Errorf("stored %d mails, want 1 (refused ones are not stored)", n)
		}
	})
}

func TestAuthRequiredWhenConfigured(t *testing.T) {
	t.Parallel()
	modes(t, testAuthRequiredWhenConfigured)
}

func testAuthRequiredWhenConfigured(t *testing.T, mode smtpsink.Mode) {
	s := start(t, smtpsink.Config{Mode: mode, Username: "dw", Password: "geheim"})
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
	modes(t, testConnectionsCountedAndDropped)
}

func testConnectionsCountedAndDropped(t *testing.T, mode smtpsink.Mode) {
	s := start(t, smtpsink.Config{Mode: mode})
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

// dialRaw connects a bare textproto client and reads the greeting.
func dialRaw(t *testing.T, s *smtpsink.Sink) *textproto.Conn {
	t.Helper()
	c, err := textproto.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c
}

// expect reads one reply per code.
func expect(t *testing.T, c *textproto.Conn, codes ...int) {
	t.Helper()
	for _, code := range codes {
		if _, msg, err := c.ReadResponse(code); err != nil {
			t.Fatalf("want %d: %v %q", code, err, msg)
		}
	}
}

func raw(t *testing.T, c *textproto.Conn, s string) {
	t.Helper()
	if _, err := c.W.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := c.W.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestPipelinedCounted(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, mode smtpsink.Mode) {
		s := start(t, smtpsink.Config{Mode: mode})
		c := dialRaw(t, s)
		raw(t, c, "EHLO client.example\r\n")
		_, ehlo, err := c.ReadResponse(250)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ehlo, "\nPIPELINING") {
			t.Errorf("EHLO reply does not offer PIPELINING:\n%s", ehlo)
		}
		// Pipelined: MAIL, RCPT and DATA in one write; dot-stuffed content.
		raw(t, c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		expect(t, c, 250, 250, 354)
		raw(t, c, "Subject: pipelined\r\n\r\n..leading dot\r\n.\r\n")
		expect(t, c, 250)
		// Lock-step.
		for _, step := range []struct {
			cmd  string
			code int
		}{{"MAIL FROM:<a@example.org>", 250}, {"RCPT TO:<b@example.org>", 250}, {"DATA", 354}, {"Subject: lock-step\r\n\r\nbody\r\n.", 250}} {
			raw(t, c, step.cmd+"\r\n")
			expect(t, c, step.code)
		}
		raw(t, c, "QUIT\r\n")
		expect(t, c, 221)
		if s.Count() != 2 || s.Pipelined() != 1 {
			t.Errorf("Count = %d, Pipelined = %d, want 2, 1", s.Count(), s.Pipelined())
		}
		if mode == smtpsink.Keep {
			got := s.Received("b@example.org")
			if len(got) != 2 || got[0].Subject != "pipelined" || got[0].Text != ".leading dot\n" {
				t.Errorf("received %+v", got)
			}
		}
	})
}

func TestNoPipelining(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, mode smtpsink.Mode) {
		s := start(t, smtpsink.Config{Mode: mode, NoPipelining: true})
		c := dialRaw(t, s)
		raw(t, c, "EHLO client.example\r\n")
		_, ehlo, err := c.ReadResponse(250)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(ehlo, "PIPELINING") || !strings.Contains(ehlo, "8BITMIME") {
			t.Errorf("EHLO reply:\n%s\nwant 8BITMIME and no PIPELINING", ehlo)
		}
		if err := send(s.Addr(), "a@example.org", "b@example.org", rawMail); err != nil {
			t.Fatalf("SendMail: %v", err)
		}
		if s.Count() != 1 {
			t.Errorf("Count = %d, want 1", s.Count())
		}
	})
}

// After a refused RCPT, the DATA that a pipelining client sent with it is
// refused too, and the connection goes on.
func TestPipelinedRefusal(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, mode smtpsink.Mode) {
		s := start(t, smtpsink.Config{Mode: mode})
		s.FailNext("b@example.org", 550)
		c := dialRaw(t, s)
		raw(t, c, "EHLO client.example\r\n")
		expect(t, c, 250)
		raw(t, c, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		expect(t, c, 250, 550)
		if code, _, err := c.ReadResponse(354); err == nil || code/100 != 5 {
			t.Fatalf("DATA after the refused RCPT: %d %v, want a 5xx", code, err)
		}
		raw(t, c, "RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		expect(t, c, 250, 250, 250, 354)
		raw(t, c, "\r\n.\r\n")
		expect(t, c, 250)
		if s.Count() != 1 {
			t.Errorf("Count = %d, want 1", s.Count())
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, mode smtpsink.Mode) {
		s := start(t, smtpsink.Config{Mode: mode, IdleTimeout: 50 * time.Millisecond})
		c := dialRaw(t, s)
		if code, _, err := c.ReadResponse(0); code != 421 {
			t.Fatalf("idle client got %d %v, want 421", code, err)
		}
		if _, err := c.ReadLine(); err == nil {
			t.Error("connection still open after the idle timeout")
		}
	})
}

func TestDiscardCloseEndsConnections(t *testing.T) {
	t.Parallel()
	s, err := smtpsink.Start(t.Context(), smtpsink.Config{Mode: smtpsink.Discard})
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, s)
	raw(t, c, "EHLO client.example\r\n")
	expect(t, c, 250)
	if s.Open() != 1 {
		t.Errorf("Open = %d, want 1", s.Open())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.ReadLine(); err == nil {
		t.Error("connection still open after Close")
	}
	if s.Open() != 0 {
		t.Errorf("Open = %d after Close", s.Open())
	}
}
