package email_test

import (
	"context"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels/email"
	"github.com/dialogwerk/dialogwerk/channels/maildev"
)

// MailDev (nodemailer's smtp-server) takes the dialogue pipelined as it
// offers PIPELINING, and lock-step with the extension hidden.
func TestMailDev(t *testing.T) {
	bin, err := maildev.Find()
	if err != nil {
		if os.Getenv("DIALOGWERK_TEST_STRICT") == "1" {
			t.Fatalf("DIALOGWERK_TEST_STRICT=1 and %v", err)
		}
		t.Skipf("skipping the MailDev integration test: %v", err)
	}
	t.Parallel()
	// One MailDev at a time: two starting together can pick the same free
	// port, and maildev.Start may take the other's SMTP port for its own.
	for _, hide := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%t", !hide), func(t *testing.T) {
			testMailDev(t, bin, hide)
		})
	}
}

func testMailDev(t *testing.T, bin string, hidePipelining bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	if hidePipelining {
		// MailDev runs in its mail directory and reads a config file there.
		if err := os.WriteFile(filepath.Join(dir, ".maildevrc.json"), []byte(`{"hideExtensions": ["PIPELINING"]}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	md, err := maildev.Start(ctx, maildev.Config{Bin: bin, Dir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := md.Stop(stopCtx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if offered := offersPipelining(t, fmt.Sprintf("%s:%d", md.SMTPHost(), md.SMTPPort())); offered == hidePipelining {
		t.Fatalf("MailDev offers PIPELINING: %t, want %t", offered, !hidePipelining)
	}

	sender, err := email.New(email.Config{Host: md.SMTPHost(), Port: md.SMTPPort(), TLS: email.TLSNone,
		From: from, FromName: "Stadtwerke Musterstadt", Pool: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close(ctx)
	const n = 4
	want := map[string]string{}
	for i := range n {
		m := message(fmt.Sprintf("maildev-%d", i), fmt.Sprintf("kunde%d@example.org", i))
		m.Text = fmt.Sprintf("Nachricht %d\n.\n.Punkt\nEnde", i)
		m.HTML = "<p>" + strings.Repeat("Strom &amp; Gas – günstig. ", 200) + "</p>"
		if _, err := sender.Send(ctx, m); err != nil {
			t.Fatalf("Send: %v", err)
		}
		want[m.To] = m.Text
	}
	var got []maildev.Email
	for deadline := time.Now().Add(10 * time.Second); len(got) < n && time.Now().Before(deadline); {
		if got, err = md.Emails(ctx); err != nil {
			t.Fatalf("Emails: %v", err)
		}
		if len(got) < n {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(got) != n {
		t.Fatalf("MailDev has %d emails, want %d", len(got), n)
	}
	for _, e := range got {
		if len(e.Envelope.To) != 1 {
			t.Errorf("envelope To = %+v", e.Envelope.To)
			continue
		}
		to := e.Envelope.To[0].Address
		if strings.TrimSpace(e.Text) != want[to] {
			t.Errorf("%s: Text = %q, want %q", to, e.Text, want[to])
		}
		if !strings.HasSuffix(strings.TrimSpace(e.HTML), "günstig. </p>") || len(e.HTML) < 5000 {
			t.Errorf("%s: HTML = %.100q… (%d bytes)", to, e.HTML, len(e.HTML))
		}
		delete(want, to)
	}
}

// offersPipelining reports whether the SMTP server at addr lists PIPELINING
// in its EHLO reply.
func offersPipelining(t *testing.T, addr string) bool {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	if err := c.PrintfLine("EHLO test.example"); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.ReadResponse(250)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.PrintfLine("QUIT")
	return slices.Contains(strings.Split(msg, "\n"), "PIPELINING")
}
