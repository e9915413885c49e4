package webhook_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dialogwerk/dialogwerk/triggers/eventbus"
	"github.com/dialogwerk/dialogwerk/triggers/webhook"
)

// testEnv is a handler publishing to a real bus on an embedded NATS server.
type testEnv struct {
	srv *httptest.Server
	ns  *eventbus.Embedded
	bus *eventbus.Bus
}

func newEnv(t *testing.T, mod func(*webhook.Config)) *testEnv {
	t.Helper()
	ns, err := eventbus.StartEmbedded(eventbus.EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	bus, err := eventbus.Connect(t.Context(), eventbus.Config{Embedded: ns, Tenant: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close) // runs before ns.Shutdown
	cfg := webhook.Config{
		Secrets: secrets,
		Now:     func() time.Time { return sigNow },
		Logger:  slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := webhook.New(cfg, bus)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testEnv{srv: srv, ns: ns, bus: bus}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

// post sends body signed with key (nil: unsigned) and decodes the answer.
func (e *testEnv) post(t *testing.T, contentType string, key []byte, body []byte) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/v1/events", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != nil {
		req.Header.Set(webhook.SignatureHeader, webhook.Sign(key, sigNow, body))
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("answer Content-Type = %q, want application/json", ct)
	}
	r := response{status: res.StatusCode, header: res.Header}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("answer %d is not a JSON object: %q", res.StatusCode, raw)
	}
	return r
}

func (e *testEnv) storedCount(t *testing.T) uint64 {
	t.Helper()
	st, err := e.bus.JetStream().Stream(t.Context(), eventbus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func event(id, typ, subject string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/billing/sap","type":%q,"subject":%q,"data":{"facility":"pool"}}`, id, typ, subject)
}

func batch(evs ...string) []byte { return []byte("[" + strings.Join(evs, ",") + "]") }

func TestHandlerAcceptsAndDeduplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	body := batch(event("ev-1", "citycard.used", "K1"), event("ev-2", "citycard.used", "K2"), event("ev-3", "custom.thing", "K3"))

	r := e.post(t, "application/cloudevents-batch+json", billingKey, body)
	if r.status != http.StatusAccepted {
		t.Fatalf("status = %d (%v), want 202", r.status, r.body)
	}
	if r.body["accepted"] != 3.0 || r.body["duplicates"] != 0.0 {
		t.Errorf("first send = %v, want 3 accepted, 0 duplicates", r.body)
	}
	if n := e.storedCount(t); n != 3 {
		t.Fatalf("stream holds %d events, want 3", n)
	}

	// The same batch again (a retry after a lost answer): nothing new.
	r = e.post(t, "application/json", billingKey, body)
	if r.status != http.StatusAccepted || r.body["accepted"] != 0.0 || r.body["duplicates"] != 3.0 {
		t.Errorf("re-sent batch: %d %v, want 202 with 0 accepted, 3 duplicates", r.status, r.body)
	}
	// Partly new.
	r = e.post(t, "application/json; charset=utf-8", crmKey, batch(event("ev-3", "custom.thing", "K3"), event("ev-4", "custom.thing", "K4")))
	if r.status != http.StatusAccepted || r.body["accepted"] != 1.0 || r.body["duplicates"] != 1.0 {
		t.Errorf("half new batch: %d %v, want 202 with 1 accepted, 1 duplicate", r.status, r.body)
	}
	// A single event, no Content-Type at all.
	r = e.post(t, "", billingKey, []byte(event("ev-5", "citycard.used", "K5")))
	if r.status != http.StatusAccepted || r.body["accepted"] != 1.0 {
		t.Errorf("single event: %d %v, want 202 with 1 accepted", r.status, r.body)
	}
	if n := e.storedCount(t); n != 5 {
		t.Fatalf("stream holds %d events, want 5", n)
	}

	// The sender recorded is the source whose key signed the request.
	st, err := e.bus.JetStream().Stream(t.Context(), eventbus.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{1: "billing", 4: "crm", 5: "billing"} {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(eventbus.HeaderSender); got != want {
			t.Errorf("seq %d: sender %q, want %q", seq, got, want)
		}
	}
	m, err := st.GetMsg(t.Context(), 4)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "events.test.custom.thing" || m.Header.Get(jetstream.MsgIDHeader) != "ev-4" {
		t.Errorf("seq 4 stored as %s with id %q", m.Subject, m.Header.Get(jetstream.MsgIDHeader))
	}
}

func TestHandlerRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *webhook.Config) { c.MaxBody = 1024 })
	good := []byte(event("ev-1", "citycard.used", "K1"))
	ts := fmt.Sprint(sigNow.Unix())
	tests := []struct {
		name        string
		method      string
		contentType string
		signature   func(body []byte) string // nil: none
		body        []byte
		status      int
		errContains string
		check       func(t *testing.T, r response)
	}{
		{
			name: "GET", method: http.MethodGet, status: http.StatusMethodNotAllowed, errContains: "POST",
			check: func(t *testing.T, r response) {
				if r.header.Get("Allow") != http.MethodPost {
					t.Errorf("Allow = %q", r.header.Get("Allow"))
				}
			},
		},
		{name: "PUT", method: http.MethodPut, body: good, status: http.StatusMethodNotAllowed},
		{name: "text/plain", contentType: "text/plain", body: good, status: http.StatusUnsupportedMediaType, errContains: "Content-Type"},
		{name: "form", contentType: "application/x-www-form-urlencoded", body: good, status: http.StatusUnsupportedMediaType},
		{name: "unparsable content type", contentType: "application/json; charset", body: good, status: http.StatusUnsupportedMediaType},
		{name: "missing signature", body: good, status: http.StatusUnauthorized, errContains: "missing"},
		{
			name: "signature of another key", body: good, status: http.StatusUnauthorized, errContains: "does not match",
			signature: func(b []byte) string { return webhook.Sign(otherKey, sigNow, b) },
		},
		{
			name: "signature of another body", body: good, status: http.StatusUnauthorized,
			signature: func([]byte) string {
				return webhook.Sign(billingKey, sigNow, []byte(event("ev-2", "citycard.used", "K1")))
			},
		},
		{
			name: "stale signature", body: good, status: http.StatusUnauthorized, errContains: "outside the allowed window",
			signature: func(b []byte) string { return webhook.Sign(billingKey, sigNow.Add(-10*time.Minute), b) },
		},
		{
			name: "malformed signature", body: good, status: http.StatusUnauthorized, errContains: "malformed",
			signature: func([]byte) string { return "t=" + ts + ",v1=nothex" },
		},
		{
			// Too large is answered before the signature is even checked.
			name: "over MaxBody", body: batch(strings.Repeat(event("ev-x", "citycard.used", "K1")+",", 10) + "{}"), status: http.StatusRequestEntityTooLarge,
			errContains: "1024",
		},
		{
			name: "invalid event in a batch names index and field", status: http.StatusBadRequest,
			body:      batch(event("ev-1", "citycard.used", "K1"), `{"specversion":"1.0","id":"ev-2","source":"/billing","type":"citycard.used"}`),
			signature: func(b []byte) string { return webhook.Sign(billingKey, sigNow, b) },
			check: func(t *testing.T, r response) {
				errs, _ := r.body["errors"].([]any)
				if len(errs) != 1 {
					t.Fatalf("errors = %v, want one", r.body["errors"])
				}
				fe, _ := errs[0].(map[string]any)
				if fe["index"] != 1.0 || fe["field"] != "subject" || fe["reason"] == "" {
					t.Errorf("field error = %v, want index 1, field subject and a reason", fe)
				}
			},
		},
		{
			name: "invalid JSON", status: http.StatusBadRequest, body: []byte(`{"specversion":`),
			signature: func(b []byte) string { return webhook.Sign(billingKey, sigNow, b) },
			check: func(t *testing.T, r response) {
				errs, _ := r.body["errors"].([]any)
				if len(errs) != 1 || errs[0].(map[string]any)["field"] != "event" {
					t.Errorf("errors = %v, want one on field event", r.body["errors"])
				}
			},
		},
		{
			name: "duplicate ids within a batch", status: http.StatusBadRequest,
			body:      batch(event("ev-1", "citycard.used", "K1"), event("ev-1", "citycard.used", "K2")),
			signature: func(b []byte) string { return webhook.Sign(billingKey, sigNow, b) },
			check: func(t *testing.T, r response) {
				fe := r.body["errors"].([]any)[0].(map[string]any)
				if fe["index"] != 1.0 || fe["field"] != "id" {
					t.Errorf("field error = %v, want index 1, field id", fe)
				}
			},
		},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				method := tt.method
				if method == "" {
					method = http.MethodPost
				}
				req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+"/v1/events", bytes.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				if tt.contentType != "" {
					req.Header.Set("Content-Type", tt.contentType)
				}
				if tt.signature != nil {
					req.Header.Set(webhook.SignatureHeader, tt.signature(tt.body))
				}
				r := do(t, req)
				if r.status != tt.status {
					t.Fatalf("status = %d (%v), want %d", r.status, r.body, tt.status)
				}
				msg, _ := r.body["error"].(string)
				if msg == "" || !strings.Contains(msg, tt.errContains) {
					t.Errorf("error = %q, want it to contain %q", msg, tt.errContains)
				}
				if tt.check != nil {
					tt.check(t, r)
				}
			})
		}
	})
	if n := e.storedCount(t); n != 0 {
		t.Errorf("rejected requests stored %d events", n)
	}
}

func TestHandlerMaxBodyBoundary(t *testing.T) {
	t.Parallel()
	body := []byte(event("ev-1", "citycard.used", "K1"))
	e := newEnv(t, func(c *webhook.Config) { c.MaxBody = int64(len(body)) })
	if r := e.post(t, "application/json", billingKey, body); r.status != http.StatusAccepted {
		t.Errorf("body of exactly MaxBody: %d %v, want 202", r.status, r.body)
	}
	body = []byte(event("ev-10", "citycard.used", "K1"))
	if r := e.post(t, "application/json", billingKey, body); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("body one byte over MaxBody: %d %v, want 413", r.status, r.body)
	}
}

func TestHandlerBusDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *webhook.Config) { c.PublishTimeout = 500 * time.Millisecond })
	e.ns.Shutdown()
	r := e.post(t, "application/json", billingKey, []byte(event("ev-1", "citycard.used", "K1")))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d (%v), want 503", r.status, r.body)
	}
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if msg, _ := r.body["error"].(string); !strings.Contains(msg, "retry") {
		t.Errorf("error = %q, want advice to retry", msg)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	pub := newEnv(t, nil).bus
	tests := []struct {
		name string
		cfg  webhook.Config
		pub  webhook.Publisher
	}{
		{"no secrets", webhook.Config{}, pub},
		{"short key", webhook.Config{Secrets: []webhook.Secret{{Source: "billing", Key: []byte("short")}}}, pub},
		{"no source", webhook.Config{Secrets: []webhook.Secret{{Key: billingKey}}}, pub},
		{"no publisher", webhook.Config{Secrets: secrets}, nil},
	}
	for _, tt := range tests {
		if _, err := webhook.New(tt.cfg, tt.pub); err == nil {
			t.Errorf("%s: New accepted the config", tt.name)
		}
	}
	if _, err := webhook.New(webhook.Config{Secrets: secrets}, pub); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}
