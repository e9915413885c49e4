package maildev_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/email"
	"github.com/dialogwerk/dialogwerk/channels/maildev"
)

// findMailDev returns MailDev's path, or skips the test when it is not
// installed, unless DIALOGWERK_TEST_STRICT=1 (make test) demands it.
func findMailDev(t *testing.T) string {
	t.Helper()
	bin, err := maildev.Find()
	if err != nil {
		if os.Getenv("DIALOGWERK_TEST_STRICT") == "1" {
			t.Fatalf("DIALOGWERK_TEST_STRICT=1 and %v", err)
		}
		t.Skipf("skipping the MailDev integration test: %v", err)
	}
	return bin
}

func TestSendThroughMailDev(t *testing.T) {
	bin := findMailDev(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	md, err := maildev.Start(ctx, maildev.Config{Bin: bin})
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
	if !strings.HasPrefix(md.WebURL(), "http://127.0.0.1:") || md.SMTPPort() == 0 {
		t.Fatalf("WebURL %q, SMTP port %d", md.WebURL(), md.SMTPPort())
	}

	sender, err := email.New(email.Config{
		Host:     md.SMTPHost(),
		Port:     md.SMTPPort(),
		TLS:      email.TLSNone,
		From:     "kundenservice@stadtwerke-musterstadt.de",
		FromName: "Stadtwerke Musterstadt",
		Pool:     2,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close(ctx)

	msg := channels.Message{
		Key:     "maildev-1",
		Channel: channels.Email,
		To:      "erika.mustermann@example.org",
		ToName:  "Erika Müller",
		Subject: "Ihr Vertrag endet bald – Grüße aus Musterstadt",
		Text:    "Hallo Frau Müller,\nIhr Stromvertrag endet am 31.12.",
		HTML:    "<p>Hallo Frau Müller, Strom &amp; Gas</p>",
	}
	rc, err := sender.Send(ctx, msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}

	var got []maildev.Email
	deadline := time.Now().Add(10 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		if got, err = md.Emails(ctx); err != nil {
			t.Fatalf("Emails: %v", err)
		}
		if len(got) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(got) != 1 {
		t.Fatalf("MailDev has %d emails, want 1", len(got))
	}
	e := got[0]
	if e.Subject != msg.Subject {
		t.Errorf("Subject = %q, want %q", e.Subject, msg.Subject)
	}
	if strings.TrimSpace(e.Text) != msg.Text {
		t.Errorf("Text = %q, want %q", e.Text, msg.Text)
	}
	if strings.TrimSpace(e.HTML) != msg.HTML {
		t.Errorf("HTML = %q, want %q", e.HTML, msg.HTML)
	}
	if id := e.Header("Message-ID"); id != "<"+rc.ProviderID+">" {
		t.Errorf("Message-ID = %q, want <%s>", id, rc.ProviderID)
	}
	if len(e.To) != 1 || e.To[0].Address != msg.To || e.To[0].Name != msg.ToName {
		t.Errorf("To = %+v", e.To)
	}
	if len(e.From) != 1 || e.From[0].Name != "Stadtwerke Musterstadt" {
		t.Errorf("From = %+v", e.From)
	}
	if len(e.Envelope.To) != 1 || e.Envelope.To[0].Address != msg.To {
		t.Errorf("envelope To = %+v", e.Envelope.To)
	}

	src, err := md.Source(ctx, e.ID)
	if err != nil {
		t.Fatalf("Source: %v", err)
	}
	for _, want := range []string{"Message-ID: <" + rc.ProviderID + ">", "multipart/alternative", "text/plain", "text/html"} {
		if !strings.Contains(string(src), want) {
			t.Errorf("source lacks %q", want)
		}
	}

	if err := md.DeleteAll(ctx); err != nil {
		t.Fatalf("DeleteAll: %v", err)
	}
	if got, err := md.Emails(ctx); err != nil || len(got) != 0 {
		t.Errorf("after DeleteAll: %d emails, err %v", len(got), err)
	}
	if _, err := md.Source(ctx, e.ID); err == nil {
		t.Error("Source of a deleted email succeeded")
	}
}

func TestStopEndsProcess(t *testing.T) {
	bin := findMailDev(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	md, err := maildev.Start(ctx, maildev.Config{Bin: bin})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := md.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := md.Stop(ctx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := md.Emails(ctx); err == nil {
		t.Error("API still answers after Stop")
	}
	addr := net.JoinHostPort(md.SMTPHost(), strconv.Itoa(md.SMTPPort()))
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Error("SMTP port still accepts after Stop")
	}
}

func TestStartFailureShowsOutput(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "maildev")
	script := "#!/bin/sh\necho 'Error: listen EADDRINUSE: address already in use' >&2\nexit 3\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	md, err := maildev.Start(ctx, maildev.Config{Bin: bin, SMTPPort: 1, WebPort: 2})
	if err == nil {
		_ = md.Stop(ctx)
		t.Fatal("Start succeeded with a failing executable")
	}
	if !strings.Contains(err.Error(), "EADDRINUSE") || !strings.Contains(err.Error(), "exited") {
		t.Errorf("error does not carry the process's output: %v", err)
	}
}

// On ports it picked itself, Start tries again when MailDev exits at once
// (another process may have taken a port); on given ports it does not.
func TestStartRetriesOnPickedPorts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "maildev")
	count := filepath.Join(dir, "count")
	script := "#!/bin/sh\necho run >> " + count + "\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	runs := func() int {
		b, _ := os.ReadFile(count)
		return strings.Count(string(b), "run")
	}
	if _, err := maildev.Start(ctx, maildev.Config{Bin: bin}); err == nil {
		t.Fatal("Start succeeded")
	}
	if n := runs(); n != 3 {
		t.Errorf("picked ports: %d runs, want 3", n)
	}
	if _, err := maildev.Start(ctx, maildev.Config{Bin: bin, SMTPPort: 1, WebPort: 2}); err == nil {
		t.Fatal("Start succeeded")
	}
	if n := runs(); n != 4 {
		t.Errorf("given ports: %d runs in all, want 4", n)
	}
}

func TestStartTimesOut(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "maildev")
	// Runs, never listens.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho starting\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := maildev.Start(ctx, maildev.Config{Bin: bin, SMTPPort: 1, WebPort: 2, StartTimeout: 300 * time.Millisecond})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "starting") {
		t.Errorf("err = %v, want a readiness timeout with the output", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Start took %v, the sleeping child was not killed promptly", d)
	}
}

// Find's order: the environment variable, then .tools/ up from the working
// directory, then PATH. (Not parallel: it sets the environment.)
func TestFind(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "maildev")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	t.Setenv(maildev.EnvBin, fake)
	if got, err := maildev.Find(); err != nil || got != fake {
		t.Errorf("Find with %s set = %q, %v; want %q", maildev.EnvBin, got, err, fake)
	}

	t.Setenv(maildev.EnvBin, filepath.Join(dir, "missing"))
	if _, err := maildev.Find(); err == nil {
		t.Error("Find with a missing $" + maildev.EnvBin + " succeeded")
	}

	notExec := filepath.Join(dir, "plain")
	if err := os.WriteFile(notExec, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(maildev.EnvBin, notExec)
	if _, err := maildev.Find(); err == nil {
		t.Error("Find accepted a non-executable file")
	}

	// .tools/ in a parent of the working directory.
	t.Setenv(maildev.EnvBin, "")
	root := t.TempDir()
	tools := filepath.Join(root, ".tools", "node_modules", ".bin")
	if err := os.MkdirAll(tools, 0o755); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(tools, "maildev")
	if err := os.WriteFile(want, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "cmd", "dialogwerk")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	if got, err := maildev.Find(); err != nil || got != want {
		t.Errorf("Find from %s = %q, %v; want %q", sub, got, err, want)
	}

	// Nothing anywhere: a clear error naming make tools.
	t.Chdir(t.TempDir())
	t.Setenv("PATH", t.TempDir())
	_, err := maildev.Find()
	if !errors.Is(err, maildev.ErrNotFound) || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("Find with nothing installed: %v", err)
	}
}

// MailDev dies with its parent (Linux: Pdeathsig), even when the parent is
// killed without a chance to call Stop. The parent is this test binary
// re-run as a helper process.
func TestChildDiesWithParent(t *testing.T) {
	if os.Getenv("DIALOGWERK_MAILDEV_HELPER") == "1" {
		md, err := maildev.Start(context.Background(), maildev.Config{Bin: os.Getenv(maildev.EnvBin), Dir: os.Getenv("DIALOGWERK_MAILDEV_HELPER_DIR")})
		if err != nil {
			fmt.Println("ERROR", err)
			os.Exit(1)
		}
		fmt.Printf("SMTP %d\n", md.SMTPPort())
		select {} // until killed
	}
	if runtime.GOOS != "linux" {
		t.Skip("parent-death signal is Linux only")
	}
	bin := findMailDev(t)
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithParent$")
	cmd.Env = append(os.Environ(), "DIALOGWERK_MAILDEV_HELPER=1", "DIALOGWERK_MAILDEV_HELPER_DIR="+t.TempDir(), maildev.EnvBin+"="+bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var port int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "SMTP %d", &port); err == nil {
			break
		}
		t.Logf("helper: %s", sc.Text())
	}
	if port == 0 {
		t.Fatal("helper did not start MailDev")
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("MailDev not listening: %v", err)
	}
	_ = c.Close()

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // gone
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("MailDev still listening 10s after its parent was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
