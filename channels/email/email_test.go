package email_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/channeltest"
	"github.com/dialogwerk/dialogwerk/channels/email"
	"github.com/dialogwerk/dialogwerk/channels/smtpsink"
	"github.com/dialogwerk/dialogwerk/engine"
)

var _ engine.Sender = (*email.Sender)(nil)

const from = "service@stadtwerke-musterstadt.de"

func startSink(t testing.TB, cfg smtpsink.Config) *smtpsink.Sink {
	t.Helper()
	s, err := smtpsink.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("smtpsink.Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newSender returns a sender pointed at sink, plain SMTP; edit adjusts the
// config.
func newSender(t testing.TB, sink *smtpsink.Sink, edit func(*email.Config)) *email.Sender {
	t.Helper()
	cfg := email.Config{
		Host:     sink.Host(),
		Port:     sink.Port(),
		TLS:      email.TLSNone,
		From:     from,
		FromName: "Stadtwerke Musterstadt",
		HELO:     "dialogwerk.test",
		Timeout:  5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := email.New(cfg)
	if err != nil {
		t.Fatalf("email.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func message(key, to string) channels.Message {
	return channels.Message{
		Key:     key,
		Channel: channels.Email,
		To:      to,
		ToName:  "Erika Müller",
		Subject: "Ihr Vertrag endet bald – Grüße aus Musterstadt",
		Text:    "Hallo Frau Müller,\nIhr Vertrag endet am 31.12.\nIhre Stadtwerke",
		HTML:    "<p>Hallo Frau Müller, Strom &amp; Gas &lt;günstig&gt;</p>",
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	sender := newSender(t, sink, nil)
	channeltest.Run(t, channeltest.Harness{
		Channel:        channels.Email,
		Sender:         sender,
		Address:        func(i int) string { return fmt.Sprintf("kunde%d@example.org", i) },
		InvalidAddress: "kein-gueltiger-empfaenger",
		Received: func(t *testing.T, to string) []channeltest.Received {
			var out []channeltest.Received
			for _, m := range sink.Received(to) {
				out = append(out, channeltest.Received{To: m.To[0], Subject: m.Subject, Text: m.Text, ProviderID: m.MessageID})
			}
			return out
		},
		FailNext: func(t *testing.T, to string, transient bool) {
			code := 550
			if transient {
				code = 451
			}
			sink.FailNext(to, code)
		},
	})
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  email.Config
		ok   bool
	}{
		{"defaults", email.Config{From: from}, true},
		{"none", email.Config{From: from, TLS: email.TLSNone}, true},
		{"starttls", email.Config{From: from, TLS: email.TLSStartTLS, Username: "u", Password: "p"}, true},
		{"opportunistic", email.Config{From: from, TLS: email.TLSOpportunistic}, true},
		{"implicit tls", email.Config{From: from, TLS: email.TLSImplicit, Host: "smtp.example.org"}, true},
		{"unknown tls mode", email.Config{From: from, TLS: "ssl"}, false},
		{"upper-case tls mode", email.Config{From: from, TLS: "STARTTLS"}, false},
		{"no from", email.Config{}, false},
		{"from with name", email.Config{From: "Stadtwerke <" + from + ">"}, false},
		{"from not an address", email.Config{From: "stadtwerke"}, false},
		{"negative port", email.Config{From: from, Port: -1}, false},
		{"port too large", email.Config{From: from, Port: 70000}, false},
		{"negative pool", email.Config{From: from, Pool: -1}, false},
		{"negative timeout", email.Config{From: from, Timeout: -time.Second}, false},
		{"password without username", email.Config{From: from, Password: "p"}, false},
		{"credentials in clear text to a remote host", email.Config{From: from, TLS: email.TLSNone, Host: "smtp.example.org", Username: "u"}, false},
		{"credentials in clear text to loopback", email.Config{From: from, TLS: email.TLSNone, Host: "127.0.0.1", Username: "u"}, true},
		{"bad message-id domain", email.Config{From: from, MessageIDDomain: "a b"}, false},
		{"line break in from name", email.Config{From: from, FromName: "a\r\nBcc: x@example.org"}, false},
		{"helo with space", email.Config{From: from, HELO: "a b"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := email.New(c.cfg)
			if c.ok && err != nil {
				t.Fatalf("New: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("New succeeded, want an error")
			}
			if s != nil {
				_ = s.Close(context.Background())
			}
		})
	}
}

// Port 0 means the TLS mode's port; the dial error names the address dialed.
func TestDefaultPorts(t *testing.T) {
	t.Parallel()
	cases := map[email.TLSMode]string{
		email.TLSNone:          ":25",
		email.TLSOpportunistic: ":25",
		email.TLSStartTLS:      ":587",
		email.TLSImplicit:      ":465",
	}
	for mode, port := range cases {
		// 192.0.2.1 (TEST-NET-1) is unroutable: the dial fails or times out,
		// and the error names the address dialed.
		s, err := email.New(email.Config{From: from, TLS: mode, Host: "192.0.2.1", Timeout: 50 * time.Millisecond, Pool: 1})
		if err != nil {
			t.Fatalf("New(%s): %v", mode, err)
		}
		_, err = s.Send(context.Background(), message("port", "a@example.org"))
		if err == nil || !strings.Contains(err.Error(), "192.0.2.1"+port) {
			t.Errorf("mode %s: error %v does not name port %s", mode, err, port)
		}
		if !channels.IsTransient(err) {
			t.Errorf("mode %s: connect failure %v not transient", mode, err)
		}
		_ = s.Close(context.Background())
	}
}

func TestMessageFormat(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	sender := newSender(t, sink, nil)
	m := message("decision-7:email", "erika@example.org")
	m.Marketing = true
	rc, err := sender.Send(context.Background(), m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if rc.ProviderID != "decision-7%3Aemail@stadtwerke-musterstadt.de" {
		t.Errorf("ProviderID = %q", rc.ProviderID)
	}
	got := sink.Received("erika@example.org")
	if len(got) != 1 {
		t.Fatalf("received %d mails, want 1", len(got))
	}
	r := got[0]
	if r.ParseErr != nil {
		t.Fatalf("sink could not parse the mail: %v", r.ParseErr)
	}
	if r.MessageID != rc.ProviderID {
		t.Errorf("Message-ID %q != receipt %q", r.MessageID, rc.ProviderID)
	}
	if r.From != from || len(r.To) != 1 || r.To[0] != "erika@example.org" {
		t.Errorf("envelope %q → %v", r.From, r.To)
	}
	if r.ContentType != "multipart/alternative" || strings.Join(r.Parts, ",") != "text/plain,text/html" {
		t.Errorf("structure %s %v, want multipart/alternative with text/plain, text/html", r.ContentType, r.Parts)
	}
	if r.Subject != m.Subject {
		t.Errorf("Subject = %q, want %q", r.Subject, m.Subject)
	}
	if r.Text != m.Text {
		t.Errorf("Text = %q, want %q", r.Text, m.Text)
	}
	if r.HTML != m.HTML {
		t.Errorf("HTML = %q, want %q (passed through, not re-escaped)", r.HTML, m.HTML)
	}
	// Non-ASCII headers travel encoded (RFC 2047), never raw.
	raw := string(r.Raw)
	head, _, _ := strings.Cut(raw, "\r\n\r\n")
	if subj := r.Header["Subject"]; len(subj) != 1 || !strings.HasPrefix(subj[0], "=?UTF-8?") {
		t.Errorf("Subject header %q is not RFC 2047 encoded", subj)
	}
	for _, h := range []string{"From: \"Stadtwerke Musterstadt\" <" + from + ">", "To: =?utf-8?q?Erika_M=C3=BCller?= <erika@example.org>", "Date: ", "MIME-Version: 1.0"} {
		if !strings.Contains(head, h) {
			t.Errorf("header lacks %q:\n%s", h, head)
		}
	}
	for _, b := range head {
		if b > 127 {
			t.Fatalf("raw non-ASCII in the header:\n%s", head)
		}
	}
	if _, ok := r.Header["Date"]; !ok {
		t.Error("no Date header")
	}
	// Not yet: the unsubscribe endpoint comes later.
	if r.ListUnsubscribe != "" {
		t.Errorf("List-Unsubscribe = %q, want none yet", r.ListUnsubscribe)
	}
}

func TestHeaderInjectionKeptOnOneLine(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	sender := newSender(t, sink, nil)
	m := message("inject", "erika@example.org")
	m.Subject = "Hallo\r\nBcc: mallory@example.org"
	m.ToName = "Erika\nX-Evil: 1"
	if _, err := sender.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := sink.Received("erika@example.org")[0]
	if _, ok := r.Header["Bcc"]; ok {
		t.Error("subject injected a Bcc header")
	}
	if _, ok := r.Header["X-Evil"]; ok {
		t.Error("display name injected a header")
	}
	if r.Subject != "Hallo Bcc: mallory@example.org" {
		t.Errorf("Subject = %q", r.Subject)
	}
}

func TestInvalidMessages(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	sender := newSender(t, sink, nil)
	cases := map[string]channels.Message{
		"no key":             message("", "erika@example.org"),
		"address with name":  message("k1", "Erika <erika@example.org>"),
		"address with CRLF":  message("k2", "erika@example.org\r\nRCPT TO:<x@example.org>"),
		"no domain":          message("k3", "erika@"),
		"not an address":     message("k4", "erika"),
		"empty address":      message("k5", ""),
		"spaces in address":  message("k6", "erika mustermann@example.org"),
		"angle-bracket addr": message("k7", "<erika@example.org>"),
	}
	for name, m := range cases {
		_, err := sender.Send(context.Background(), m)
		if !errors.Is(err, channels.ErrPermanent) {
			t.Errorf("%s: err = %v, want permanent", name, err)
		}
		if m.To != "" && strings.Contains(fmt.Sprint(err), m.To) {
			t.Errorf("%s: error %q contains the address", name, err)
		}
	}
	if sink.Connections() != 0 {
		t.Errorf("invalid messages contacted the server (%d connections)", sink.Connections())
	}
}

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{Mode: smtpsink.Discard})
	const pool, n = 4, 200
	sender := newSender(t, sink, func(c *email.Config) { c.Pool = pool })
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 16 {
				if _, err := sender.Send(context.Background(), message(fmt.Sprintf("reuse-%d", i), "a@example.org")); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Send: %v", err)
	}
	if sink.Count() != n {
		t.Errorf("sink counted %d, want %d", sink.Count(), n)
	}
	if c := sink.Connections(); c < 1 || c > pool {
		t.Errorf("sink saw %d connections for %d messages, want 1..%d", c, n, pool)
	}
}

func TestRedialAfterServerDropsConnections(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	sender := newSender(t, sink, func(c *email.Config) { c.Pool = 2 })
	ctx := context.Background()
	for i := range 4 {
		if _, err := sender.Send(ctx, message(fmt.Sprintf("before-%d", i), "a@example.org")); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	before := sink.Connections()
	if dropped := sink.DropConnections(); dropped == 0 {
		t.Fatal("sink had no open connection to drop")
	}
	// Every following send succeeds: a stale pooled connection is replaced
	// within the same Send.
	for i := range 4 {
		if _, err := sender.Send(ctx, message(fmt.Sprintf("after-%d", i), "b@example.org")); err != nil {
			t.Fatalf("Send after drop: %v", err)
		}
	}
	if n := len(sink.Received("b@example.org")); n != 4 {
		t.Errorf("received %d after the drop, want 4", n)
	}
	if sink.Connections() <= before {
		t.Errorf("connections %d → %d: no redial", before, sink.Connections())
	}
}

// A server that hangs up on idle clients (421, then close) costs no failed
// send: the next Send finds the stale connection and redials.
func TestRedialAfterIdleTimeout(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{IdleTimeout: 100 * time.Millisecond})
	sender := newSender(t, sink, func(c *email.Config) { c.Pool = 1 })
	ctx := context.Background()
	if _, err := sender.Send(ctx, message("idle-1", "a@example.org")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sink.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("sink did not time the idle connection out")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := sender.Send(ctx, message("idle-2", "a@example.org")); err != nil {
		t.Fatalf("Send after the idle timeout: %v", err)
	}
	if got := sink.Connections(); got != 2 {
		t.Errorf("connections = %d, want 2", got)
	}
	if n := len(sink.Received("a@example.org")); n != 2 {
		t.Errorf("received %d, want 2", n)
	}
}

func TestRedialAfterServerRestart(t *testing.T) {
	t.Parallel()
	first, err := smtpsink.Start(context.Background(), smtpsink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sender := newSender(t, first, func(c *email.Config) { c.Pool = 1 })
	ctx := context.Background()
	if _, err := sender.Send(ctx, message("restart-1", "a@example.org")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	addr := first.Addr()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// While the server is down: a transient network failure.
	_, err = sender.Send(ctx, message("restart-2", "a@example.org"))
	if !channels.IsTransient(err) || channels.Code(err) != "network" {
		t.Fatalf("Send while down: %v (code %q), want transient network", err, channels.Code(err))
	}
	second := startSink(t, smtpsink.Config{Addr: addr})
	if _, err := sender.Send(ctx, message("restart-2", "a@example.org")); err != nil {
		t.Fatalf("Send after restart: %v", err)
	}
	if n := len(second.Received("a@example.org")); n != 1 {
		t.Errorf("restarted sink received %d, want 1", n)
	}
}

// sinkVariants are the servers the dialogue is tested against: go-smtp
// with and without PIPELINING, and the sink's own Discard-mode responder.
var sinkVariants = []struct {
	name string
	cfg  smtpsink.Config
}{
	{"pipelining", smtpsink.Config{}},
	{"lock-step", smtpsink.Config{NoPipelining: true}},
	{"discard", smtpsink.Config{Mode: smtpsink.Discard}},
}

// Refusals at each stage are classified by their code, pipelined or not,
// and leave the connection usable (after RSET) unless the server closes it.
func TestRefusals(t *testing.T) {
	t.Parallel()
	for _, v := range sinkVariants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			testRefusals(t, v.cfg)
		})
	}
}

func testRefusals(t *testing.T, cfg smtpsink.Config) {
	cases := []struct {
		name      string
		inject    func(s *smtpsink.Sink, to string)
		transient bool
		code      string
		redial    bool // the connection must be replaced
	}{
		{"451 at RCPT", func(s *smtpsink.Sink, to string) { s.FailNext(to, 451) }, true, "451", false},
		{"550 at RCPT", func(s *smtpsink.Sink, to string) { s.FailNext(to, 550) }, false, "550", false},
		{"452 after DATA", func(s *smtpsink.Sink, to string) { s.FailNextData(to, 452) }, true, "452", false},
		{"554 after DATA", func(s *smtpsink.Sink, to string) { s.FailNextData(to, 554) }, false, "554", false},
		{"421 closing", func(s *smtpsink.Sink, to string) { s.FailNext(to, 421) }, true, "421", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			sink := startSink(t, cfg)
			sender := newSender(t, sink, func(cfg *email.Config) { cfg.Pool = 1 })
			ctx := context.Background()
			to := "erika.mustermann@example.org"
			if _, err := sender.Send(ctx, message("warm", to)); err != nil {
				t.Fatalf("Send: %v", err)
			}
			c.inject(sink, to)
			_, err := sender.Send(ctx, message("refused", to))
			if err == nil {
				t.Fatal("Send succeeded, want a refusal")
			}
			if channels.IsTransient(err) != c.transient || channels.Code(err) != c.code {
				t.Errorf("err = %v: transient %t code %q, want %t %q", err, channels.IsTransient(err), channels.Code(err), c.transient, c.code)
			}
			if !c.transient && !errors.Is(err, channels.ErrPermanent) {
				t.Errorf("err = %v not ErrPermanent", err)
			}
			if strings.Contains(err.Error(), to) || strings.Contains(err.Error(), "injected") {
				t.Errorf("error %q carries the address or the reply text", err)
			}
			if !strings.Contains(err.Error(), "refused") {
				t.Errorf("error %q does not say refused", err)
			}
			// The next message goes through; on the same connection after a
			// reset, or on a new one after 421.
			if _, err := sender.Send(ctx, message("next", to)); err != nil {
				t.Fatalf("Send after the refusal: %v", err)
			}
			wantConns := 1
			if c.redial {
				wantConns = 2
			}
			if got := sink.Connections(); got != wantConns {
				t.Errorf("connections = %d, want %d", got, wantConns)
			}
			if n := sink.Count(); n != 2 {
				t.Errorf("sink accepted %d, want 2 (warm-up and next)", n)
			}
			if n := len(sink.Received(to)); cfg.Mode == smtpsink.Keep && n != 2 {
				t.Errorf("received %d, want 2 (warm-up and next)", n)
			}
			if p := sink.Pipelined(); cfg.NoPipelining && p != 0 || !cfg.NoPipelining && p < 2 {
				t.Errorf("%d transactions pipelined", p)
			}
		})
	}
}

// A server that offers PIPELINING gets MAIL, RCPT and DATA in one write; one
// that does not gets them one by one. Both get the same message.
func TestPipelining(t *testing.T) {
	t.Parallel()
	for _, v := range sinkVariants {
		for _, noPipelining := range []bool{false, true} {
			cfg := v.cfg
			cfg.NoPipelining = noPipelining
			t.Run(fmt.Sprintf("%s/no-pipelining=%t", v.name, noPipelining), func(t *testing.T) {
				t.Parallel()
				sink := startSink(t, cfg)
				sender := newSender(t, sink, func(c *email.Config) { c.Pool = 1 })
				const n = 5
				for i := range n {
					m := message(fmt.Sprintf("pipe-%d", i), "erika@example.org")
					m.Text = ".Zeile mit Punkt\n.\nEnde"
					if _, err := sender.Send(context.Background(), m); err != nil {
						t.Fatalf("Send: %v", err)
					}
				}
				want := n
				if noPipelining {
					want = 0
				}
				if sink.Count() != n || sink.Pipelined() != want {
					t.Errorf("sink accepted %d, %d pipelined; want %d, %d", sink.Count(), sink.Pipelined(), n, want)
				}
				if sink.Connections() != 1 {
					t.Errorf("connections = %d, want 1", sink.Connections())
				}
				for _, r := range sink.Received("erika@example.org") {
					if r.ParseErr != nil || r.Text != ".Zeile mit Punkt\n.\nEnde" || r.HTML == "" {
						t.Errorf("received text %q html %q (%v)", r.Text, r.HTML, r.ParseErr)
					}
				}
			})
		}
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{Username: "dialogwerk", Password: "geheim"})
	good := newSender(t, sink, func(c *email.Config) { c.Username, c.Password = "dialogwerk", "geheim" })
	if _, err := good.Send(context.Background(), message("auth-ok", "a@example.org")); err != nil {
		t.Fatalf("Send with credentials: %v", err)
	}
	bad := newSender(t, sink, func(c *email.Config) { c.Username, c.Password = "dialogwerk", "falsch" })
	_, err := bad.Send(context.Background(), message("auth-bad", "a@example.org"))
	if !errors.Is(err, channels.ErrPermanent) || channels.Code(err) != "535" {
		t.Errorf("wrong password: %v (code %q), want permanent 535", err, channels.Code(err))
	}
	if strings.Contains(err.Error(), "falsch") {
		t.Errorf("error %q carries the password", err)
	}
	none := newSender(t, sink, func(c *email.Config) { c.Pool = 1 })
	_, err = none.Send(context.Background(), message("auth-none", "a@example.org"))
	if !errors.Is(err, channels.ErrPermanent) {
		t.Errorf("without credentials: %v, want permanent (server requires AUTH)", err)
	}
	// Pipelined, RCPT and DATA were refused too; MAIL's refusal counts.
	if err == nil || !strings.Contains(err.Error(), "MAIL FROM refused") {
		t.Errorf("without credentials: %v, want MAIL FROM refused", err)
	}
	if _, err := none.Send(context.Background(), message("auth-none-2", "a@example.org")); !errors.Is(err, channels.ErrPermanent) {
		t.Errorf("again without credentials: %v, want permanent", err)
	}
	if sink.Count() != 1 {
		t.Errorf("sink accepted %d, want 1", sink.Count())
	}
}

// A server that accepts connections and never greets: the send times out.
func TestTimeout(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	port := ln.Addr().(*net.TCPAddr).Port
	s, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: from, Timeout: 100 * time.Millisecond, Pool: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())

	start := time.Now()
	_, err = s.Send(context.Background(), message("slow", "a@example.org"))
	if !channels.IsTransient(err) || channels.Code(err) != "timeout" {
		t.Errorf("err = %v (code %q), want transient timeout", err, channels.Code(err))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v with a 100ms timeout", d)
	}

	// The context's deadline counts too, and is reported as such.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s2, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: from, Timeout: time.Minute, Pool: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(context.Background())
	_, err = s2.Send(ctx, message("slow-ctx", "a@example.org"))
	if !errors.Is(err, context.DeadlineExceeded) || !channels.IsTransient(err) {
		t.Errorf("err = %v, want transient wrapping context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("context deadline not honoured: %v", d)
	}
}

func TestCancelledContext(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	sender := newSender(t, sink, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := sender.Send(ctx, message("cancel", "a@example.org"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want one wrapping context.Canceled", err)
	}
	if sink.Count() != 0 {
		t.Errorf("a cancelled send reached the server")
	}
}

func TestCloseQuitsAndRefusesSends(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	s, err := email.New(email.Config{Host: sink.Host(), Port: sink.Port(), TLS: email.TLSNone, From: from, Pool: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(context.Background(), message("close-1", "a@example.org")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err = s.Send(context.Background(), message("close-2", "a@example.org"))
	if !errors.Is(err, email.ErrClosed) || !channels.IsTransient(err) {
		t.Errorf("Send after Close: %v, want transient ErrClosed", err)
	}
	// QUIT ended the server side of the connection.
	deadline := time.Now().Add(5 * time.Second)
	for sink.DropConnections() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("connection still open at the sink after Close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkSend measures hand-off throughput: parallel Sends through the
// default pool of 8 connections to a sink that only counts. Besides msgs/s
// it reports the process's CPU time per message (client and sink together),
// which a busy machine distorts less than the wall clock.
func BenchmarkSend(b *testing.B) {
	benchmarkSend(b, message("bench", "kunde@example.org"))
}

// BenchmarkSendLargeHTML is BenchmarkSend with a 30 kB HTML part.
func BenchmarkSendLargeHTML(b *testing.B) {
	m := message("bench", "kunde@example.org")
	m.HTML = "<html><body>" + strings.Repeat("<p>Hallo Frau Müller, Strom &amp; Gas &lt;günstig&gt; – jetzt wechseln und sparen.</p>\n", 300) + "</body></html>"
	benchmarkSend(b, m)
}

func benchmarkSend(b *testing.B, msg channels.Message) {
	sink := startSink(b, smtpsink.Config{Mode: smtpsink.Discard})
	sender := newSender(b, sink, nil)
	b.SetParallelism(8) // 8×GOMAXPROCS goroutines: every pooled connection stays busy
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := sender.Send(ctx, msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if sink.Count() != b.N {
		b.Errorf("sink counted %d, want %d", sink.Count(), b.N)
	}
}

// RFC 2920 §3.1: a server may accept DATA although it refused every
// recipient. The client then ends the empty message with a lone dot,
// reports the RCPT refusal and resets; the connection stays usable.
func TestPipelinedDataAcceptedAfterRefusal(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	seen := make(chan []string, 1)
	go func() {
		var log []string
		defer func() { seen <- log }()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		reply := func(s string) { _, _ = c.Write([]byte(s + "\r\n")) }
		reply("220 fake ESMTP")
		refused := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			cmd := strings.TrimSpace(line)
			verb, _, _ := strings.Cut(cmd, " ")
			log = append(log, verb)
			switch strings.ToUpper(verb) {
			case "EHLO":
				reply("250-fake\r\n250-PIPELINING\r\n250 8BITMIME")
			case "MAIL", "RSET":
				reply("250 2.0.0 OK")
			case "RCPT":
				refused = !refused // the first refused, the second accepted, …
				if refused {
					reply("550 5.1.1 <" + cmd + "> unknown")
				} else {
					reply("250 2.1.5 OK")
				}
			case "DATA":
				reply("354 go ahead") // even without a valid recipient
				lines := 0
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if l == ".\r\n" {
						break
					}
					lines++
				}
				log = append(log, fmt.Sprintf("content:%t", lines > 0))
				if refused {
					reply("554 5.5.1 no valid recipients")
				} else {
					reply("250 2.0.0 queued")
				}
			case "QUIT":
				reply("221 bye")
				return
			default:
				reply("500 unknown")
			}
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	s, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: from, Pool: 1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = s.Send(ctx, message("refused", "erika@example.org"))
	if errors.Is(err, channels.ErrTransient) || channels.Code(err) != "550" || !strings.Contains(fmt.Sprint(err), "RCPT TO refused: 550 5.1.1") {
		t.Errorf("err = %v (code %q), want permanent 550 at RCPT TO", err, channels.Code(err))
	}
	if strings.Contains(fmt.Sprint(err), "erika") {
		t.Errorf("error %q carries the address", err)
	}
	if _, err := s.Send(ctx, message("accepted", "erika@example.org")); err != nil {
		t.Fatalf("Send after the refusal: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(<-seen, " ")
	want := "EHLO MAIL RCPT DATA content:false RSET MAIL RCPT DATA content:true QUIT"
	if got != want {
		t.Errorf("server saw\n%s\nwant\n%s", got, want)
	}
}

// The parts are quoted-printable however go-mail is told so (see
// streamQP), and decode to the text and HTML given, long lines included.
func TestQuotedPrintableParts(t *testing.T) {
	t.Parallel()
	sink := startSink(t, smtpsink.Config{})
	sender := newSender(t, sink, nil)
	m := message("qp", "erika@example.org")
	m.Text = "Grüße\n" + strings.Repeat("lange Zeile ", 40) + "\n.\n.Punkt am Anfang\nEnde "
	m.HTML = "<p>" + strings.Repeat("Strom &amp; Gas – günstig. ", 2000) + "</p>\n.\n<p>Ende</p>"
	if _, err := sender.Send(context.Background(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := sink.Received("erika@example.org")[0]
	if r.ParseErr != nil {
		t.Fatalf("sink could not parse the mail: %v", r.ParseErr)
	}
	if r.Text != strings.ReplaceAll(m.Text, "\r\n", "\n") || r.HTML != m.HTML {
		t.Errorf("decoded parts differ:\ntext %q\nhtml %.200q…", r.Text, r.HTML)
	}
	raw := string(r.Raw)
	if n := strings.Count(strings.ToLower(raw), "content-transfer-encoding: quoted-printable\r\n"); n != 2 {
		t.Errorf("%d quoted-printable parts, want 2:\n%.2000s", n, raw)
	}
	if !strings.Contains(raw, "Gr=C3=BC=C3=9Fe") {
		t.Errorf("text part not quoted-printable encoded:\n%.2000s", raw)
	}
	for i, line := range strings.Split(raw, "\r\n") {
		if len(line) > 78 {
			t.Fatalf("line %d is %d characters long", i, len(line))
		}
	}
}
