package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels/maildev"
	"github.com/dialogwerk/dialogwerk/channels/smtpsink"
	"github.com/dialogwerk/dialogwerk/channels/twiliosim"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/profiles/musterstadt"
	"github.com/dialogwerk/dialogwerk/profiles/pgtest"
	"github.com/dialogwerk/dialogwerk/triggers/webhook"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// providers are the local stand-ins for the outside world.
type providers struct {
	sim  *twiliosim.Server
	sink *smtpsink.Sink
}

func startProviders(t *testing.T, simLatency time.Duration) providers {
	t.Helper()
	sim := twiliosim.New(twiliosim.Config{Latency: simLatency})
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	sink, err := smtpsink.Start(context.Background(), smtpsink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	return providers{sim: sim, sink: sink}
}

// testConfig is a serve configuration against the providers and a database
// of the test's own.
func testConfig(t *testing.T, p providers, secret, token string) *config {
	t.Helper()
	var cfg config
	cfg.register(flag.NewFlagSet("t", flag.ContinueOnError))
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.DatabaseURL = pgtest.NewURL(t)
	cfg.WebhookSecrets, cfg.APITokens = "billing="+secret, token
	cfg.SMTPHost, cfg.SMTPPort, cfg.SMTPTLS = p.sink.Host(), p.sink.Port(), "none"
	cfg.MailFrom = "kundenservice@stadtwerke-test.example"
	cfg.TwilioAccountSID, cfg.TwilioAuthToken, cfg.TwilioBaseURL = p.sim.AccountSID(), p.sim.AuthToken(), p.sim.URL()
	cfg.TwilioFrom, cfg.TwilioWhatsAppFrom = "SWTest", "+4930901820"
	cfg.LogLevel = "error"
	return &cfg
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func TestServeWebhookToReadAPI(t *testing.T) {
	t.Parallel()
	p := startProviders(t, 0)
	secret, token := "0123456789abcdef0123", "read-token-1"
	cfg := testConfig(t, p, secret, token)
	ctx := context.Background()
	a, err := startApp(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop(ctx)
	if err := a.store.Import(ctx, testTown(50)); err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.addr

	// A wrong signature is refused, nothing is stored.
	body := []byte(`{"specversion":"1.0","id":"w-1","source":"/billing","type":"billing.backpayment_expected","subject":"K100001","data":{"amount_eur":300,"due_on":"2027-02-01"}}`)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/events", bytes.NewReader(body))
	req.Header.Set(webhook.SignatureHeader, webhook.Sign([]byte("wrong-secret-wrong-secret"), time.Now(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong signature: %d", resp.StatusCode)
	}

	// Sent the way an operator would: `dialogwerk events send`.
	file := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"events", "send", "--url", base, "--secret", secret, file}, &out); err != nil {
		t.Fatalf("events send: %v", err)
	}
	if !strings.Contains(out.String(), `202 {"accepted":1,"duplicates":0}`) {
		t.Fatalf("events send printed %q", out.String())
	}
	// The engine decides and sends; the read API shows it.
	var got struct {
		Customer string `json:"customer"`
		Entries  []struct {
			EventID  string `json:"event_id"`
			Campaign string `json:"campaign"`
			Reason   string `json:"reason"`
			Channel  string `json:"channel"`
			Send     bool   `json:"send"`
			Message  *struct {
				Status  string `json:"status"`
				Channel string `json:"channel"`
			} `json:"message"`
		} `json:"entries"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/customers/K100001/messages", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("read API: %d %s", resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Entries) == 1 && (!got.Entries[0].Send || got.Entries[0].Message != nil && got.Entries[0].Message.Status != "sending") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no final decision after 15s: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e := got.Entries[0]
	if e.EventID != "w-1" || e.Campaign != "backpayment-preparation" || e.Reason == "" {
		t.Errorf("entry = %+v", e)
	}
	if e.Send && (e.Message == nil || e.Message.Status != "sent") {
		t.Errorf("message = %+v", e.Message)
	}
	// Without the token: refused.
	resp, err = http.Get(base + "/v1/customers/K100001/messages")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("read API without token: %d", resp.StatusCode)
	}
}

var demoLine = regexp.MustCompile(`^demo: events=(\d+) emails=(\d+) sms=(\d+) whatsapp=(\d+) suppressed=(\d+) failed=(\d+)$`)

func TestDemo(t *testing.T) {
	t.Parallel()
	if _, err := maildev.Find(); err != nil {
		if os.Getenv("DIALOGWERK_TEST_STRICT") == "1" {
			t.Fatalf("MailDev is required: %v", err)
		}
		t.Skipf("MailDev not installed (make tools): %v", err)
	}
	dir, err := os.MkdirTemp("", "dwdemotest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, []string{"demo", "--customers", "400", "--data-dir", filepath.Join(dir, "data"), "--log-level", "error"}, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	m := demoLine.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("last line %q does not match the demo summary format", lines[len(lines)-1])
	}
	n := make([]int, 7)
	for i := 1; i <= 6; i++ {
		n[i], _ = strconv.Atoi(m[i])
	}
	events, emails, sms, wa, suppressed := n[1], n[2], n[3], n[4], n[5]
	if events < 100 || emails == 0 || sms == 0 || wa == 0 || suppressed == 0 {
		t.Errorf("implausible demo result: %s", lines[len(lines)-1])
	}
	if !strings.Contains(out.String(), `"duplicates":50`) {
		t.Errorf("re-sent batch not reported as duplicates:\n%s", out.String())
	}
	if !strings.Contains(out.String(), `"field":"data.ends_on"`) {
		t.Errorf("malformed event not refused with the field:\n%s", out.String())
	}
	inbox := regexp.MustCompile(`MailDev inbox holds (\d+) emails`).FindStringSubmatch(out.String())
	if inbox == nil || inbox[1] != strconv.Itoa(emails) {
		t.Errorf("MailDev inbox does not hold the %d emails sent:\n%s", emails, out.String())
	}
}

func testTown(n int) []profiles.Profile {
	return musterstadt.Generate(n, 11, time.Now()).Profiles
}

func TestDeadLetterAndReplay(t *testing.T) {
	t.Parallel()
	p := startProviders(t, 0)
	secret, token := "0123456789abcdef0123", "ops-token"
	cfg := testConfig(t, p, secret, token)
	ctx := context.Background()
	a, err := startApp(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop(ctx)
	base := "http://" + a.addr
	call := func(method, path string) (int, []byte) {
		req, _ := http.NewRequest(method, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	outcome := func() string {
		var o string
		_ = a.pool.QueryRow(ctx, `SELECT outcome FROM events WHERE id = 'dl-1'`).Scan(&o)
		return o
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for outcome() != want {
			if time.Now().After(deadline) {
				t.Fatalf("event outcome %q, want %q", outcome(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// An event for a customer the billing export has not delivered yet.
	town := testTown(1)
	body := []byte(`{"specversion":"1.0","id":"dl-1","source":"/billing","type":"billing.backpayment_expected","subject":"` + town[0].ID + `","data":{"amount_eur":300,"due_on":"2027-02-01"}}`)
	if status, answer, err := postEvents(ctx, http.DefaultClient, base, []byte(secret), body); err != nil || status != http.StatusAccepted {
		t.Fatalf("post: %d %s %v", status, answer, err)
	}
	waitFor("dead_letter")
	status, b := call(http.MethodGet, "/v1/dead-letters")
	var list struct {
		DeadLetters []struct {
			EventID string `json:"event_id"`
			Reason  string `json:"reason"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal(b, &list); err != nil || status != http.StatusOK {
		t.Fatalf("list: %d %s", status, b)
	}
	if len(list.DeadLetters) != 1 || list.DeadLetters[0].EventID != "dl-1" || !strings.Contains(list.DeadLetters[0].Reason, "unknown customer") {
		t.Fatalf("dead letters = %s", b)
	}

	// The customer arrives; the operator replays.
	if err := a.store.Import(ctx, town); err != nil {
		t.Fatal(err)
	}
	if status, b := call(http.MethodPost, "/v1/dead-letters/replay"); status != http.StatusOK || !strings.Contains(string(b), `"replayed":1`) {
		t.Fatalf("replay: %d %s", status, b)
	}
	waitFor("processed")
	var decisions int
	_ = a.pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE event_id = 'dl-1'`).Scan(&decisions)
	if decisions != 1 {
		t.Errorf("decisions after replay = %d, want 1", decisions)
	}
	if _, b := call(http.MethodGet, "/v1/dead-letters"); !strings.Contains(string(b), `"dead_letters":[]`) {
		t.Errorf("dead letter not removed after replay: %s", b)
	}
	// Without a token the operator API is closed.
	resp, err := http.Post(base+"/v1/dead-letters/replay", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("replay without token: %d", resp.StatusCode)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t) // already migrated from the template: migrate must be a no-op that succeeds
	var out bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "--database-url", url, "--log-level", "error"}, &out); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "migrate: schema is up to date" {
		t.Errorf("migrate printed %q", out.String())
	}
}

func TestCampaignsValidate(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"campaigns", "validate"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"contract-ending-retention", "backpayment-preparation", "cancellation-enquiry-retention"} {
		if !strings.Contains(out.String(), "ok  "+id) {
			t.Errorf("validate output lacks %s:\n%s", id, out.String())
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("id: Bad Id\nversion: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"campaigns", "validate", dir}, &out)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "id:") {
		t.Errorf("invalid campaign: err = %v", err)
	}
}
