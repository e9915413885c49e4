package readapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/engine/journal"
	"github.com/dialogwerk/dialogwerk/engine/readapi"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/profiles/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const token = "s3cret-token-for-tests"

var t0 = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)

type env struct {
	srv     *httptest.Server
	store   *profiles.Store
	journal *journal.Journal
}

// newEnv serves the read API over a real journal and store. K-NONE is a
// customer without decisions; K1 has three, K2 one.
func newEnv(t *testing.T, tokens ...string) *env {
	t.Helper()
	pool := pgtest.New(t)
	e := &env{store: profiles.NewStore(pool), journal: journal.New(pool)}
	h := readapi.New(e.journal, e.store, tokens, slog.New(slog.DiscardHandler))
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) get(t *testing.T, path, auth string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	withTokens := newEnv(t, "", token, "second-token")
	noTokens := newEnv(t)
	tests := []struct {
		name string
		e    *env
		auth string
	}{
		{"no header", withTokens, ""},
		{"wrong token", withTokens, "Bearer wrong"},
		{"token prefix", withTokens, "Bearer " + token[:5]},
		{"token plus more", withTokens, "Bearer " + token + "x"},
		{"basic auth", withTokens, "Basic " + token},
		{"lower-case scheme", withTokens, "bearer " + token},
		{"empty bearer with an empty token configured", withTokens, "Bearer "},
		{"no tokens configured", noTokens, "Bearer " + token},
		{"no tokens configured, empty bearer", noTokens, "Bearer "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, h, body := tt.e.get(t, "/v1/customers/K1/messages", tt.auth)
			if status != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", status, body)
			}
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", h.Get("WWW-Authenticate"))
			}
			var m map[string]string
			if err := json.Unmarshal(body, &m); err != nil || m["error"] == "" {
				t.Errorf("body %s, %v", body, err)
			}
		})
	}
	// Any configured token works; the refusal applies to unknown paths too.
	if status, _, body := withTokens.get(t, "/v1/customers/K1/messages", "Bearer second-token"); status != http.StatusNotFound {
		t.Errorf("second token: %d %s, want 404 (no such customer)", status, body)
	}
	if status, _, _ := withTokens.get(t, "/v1/other", ""); status != http.StatusUnauthorized {
		t.Errorf("unknown path without token: %d, want 401", status)
	}
}

func TestBadRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, token)
	tests := []struct {
		path, field string
	}{
		{"/v1/customers/K%201/messages", "id"},
		{"/v1/customers/K%241/messages", "id"},
		{"/v1/customers/%C3%BC/messages", "id"},
		{"/v1/customers/" + strings.Repeat("K", 65) + "/messages", "id"},
		{"/v1/customers/K1/messages?limit=0", "limit"},
		{"/v1/customers/K1/messages?limit=-1", "limit"},
		{"/v1/customers/K1/messages?limit=1001", "limit"},
		{"/v1/customers/K1/messages?limit=ten", "limit"},
		{"/v1/customers/K1/messages?limit=1.5", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			status, h, body := e.get(t, tt.path, "Bearer "+token)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", status, body)
			}
			var m map[string]string
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			if m["field"] != tt.field || !strings.HasPrefix(m["error"], tt.field+":") {
				t.Errorf("answer %v, want it to name %s", m, tt.field)
			}
			if h.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", h.Get("Content-Type"))
			}
		})
	}
	if status, _, _ := e.get(t, "/v1/customers/K1/messages?limit=1000", "Bearer "+token); status != http.StatusNotFound {
		t.Errorf("limit 1000: %d, want 404 (valid limit, unknown customer)", status)
	}
}

// seed gives K1 three decisions (one per hour, newest a failed SMS), K2 one
// and K-NONE none.
func seed(t *testing.T, e *env) (consentID int64) {
	t.Helper()
	ctx := t.Context()
	if err := e.store.Import(ctx, []profiles.Profile{{ID: "K1", LastName: "A"}, {ID: "K2", LastName: "B"}, {ID: "K-NONE", LastName: "C"}}); err != nil {
		t.Fatal(err)
	}
	consentID, err := e.store.RecordConsent(ctx, profiles.Consent{CustomerID: "K1", Channel: "sms", Purpose: profiles.PurposeMarketing, Granted: true, Touchpoint: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var ds []journal.Decision
	var ms []journal.Message
	for i, c := range []string{"K1", "K1", "K1", "K2"} {
		evID := fmt.Sprintf("ev-%d", i)
		d := journal.Decision{ID: journal.DecisionID(evID, "contract-ending-retention", c), EventID: evID, CampaignID: "contract-ending-retention",
			CampaignVersion: 3, CustomerID: c, Purpose: profiles.PurposeMarketing, Reason: "no marketing consent for any channel",
			DecidedAt: t0.Add(time.Duration(i) * time.Hour)}
		if i != 1 {
			d.Send, d.Channel, d.LegalBasis, d.ConsentID, d.Reason = true, "sms", journal.BasisConsent, consentID, "preferred channel"
			ms = append(ms, journal.Message{ID: journal.MessageID(d.ID, "sms"), DecisionID: d.ID, Channel: "sms", Address: "+4915100000001",
				Text: fmt.Sprintf("Hallo %d", i), CreatedAt: d.DecidedAt.Add(time.Second)})
		}
		ds = append(ds, d)
	}
	if _, err := e.journal.Claim(ctx, ds, ms); err != nil {
		t.Fatal(err)
	}
	err = e.journal.Complete(ctx, []journal.Outcome{
		{MessageID: ms[0].ID, Status: journal.StatusSent, ProviderID: "SM0", Segments: 1, Attempts: 1, DispatchedAt: t0.Add(2 * time.Second)},
		{MessageID: ms[1].ID, Status: journal.StatusFailed, ProviderID: "SM2", Segments: 2, Attempts: 3, Error: "21211 invalid number", DispatchedAt: t0.Add(2*time.Hour + 2*time.Second)},
	}, []journal.EventRecord{
		{ID: "ev-2", Type: "contract.ending", Source: "/billing", Subject: "K1", StoredAt: t0, Outcome: journal.OutcomeProcessed},
	})
	if err != nil {
		t.Fatal(err)
	}
	return consentID
}

func TestMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, token)
	consentID := seed(t, e)

	status, h, body := e.get(t, "/v1/customers/K1/messages", "Bearer "+token)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if h.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", h.Get("Content-Type"))
	}
	var resp struct {
		Customer string           `json:"customer"`
		Entries  []map[string]any `json:"entries"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Customer != "K1" || len(resp.Entries) != 3 {
		t.Fatalf("customer %q with %d entries, want K1 with 3: %s", resp.Customer, len(resp.Entries), body)
	}

	// Newest first: the failed SMS with every field.
	newest := resp.Entries[0]
	wantNewest := map[string]any{
		"decision_id":      journal.DecisionID("ev-2", "contract-ending-retention", "K1").String(),
		"event_id":         "ev-2",
		"event_type":       "contract.ending",
		"campaign":         "contract-ending-retention",
		"campaign_version": 3.0,
		"purpose":          "marketing",
		"send":             true,
		"channel":          "sms",
		"legal_basis":      "consent",
		"consent_id":       float64(consentID),
		"reason":           "preferred channel",
		"decided_at":       "2026-11-23T11:30:00Z",
		"message": map[string]any{
			"id":            journal.MessageID(journal.DecisionID("ev-2", "contract-ending-retention", "K1"), "sms").String(),
			"channel":       "sms",
			"status":        "failed",
			"text":          "Hallo 2",
			"provider_id":   "SM2",
			"segments":      2.0,
			"attempts":      3.0,
			"error":         "21211 invalid number",
			"created_at":    "2026-11-23T11:30:01Z",
			"dispatched_at": "2026-11-23T11:30:02Z",
		},
	}
	normaliseTimes(t, newest)
	if fmt.Sprint(newest) != fmt.Sprint(wantNewest) {
		t.Errorf("newest entry:\n got %v\nwant %v", newest, wantNewest)
	}

	// The decision not to send: no channel, basis, consent or message.
	skipped := resp.Entries[1]
	for _, k := range []string{"channel", "legal_basis", "consent_id", "message"} {
		if _, ok := skipped[k]; ok {
			t.Errorf("not-sent entry has %s: %v", k, skipped)
		}
	}
	if skipped["send"] != false || skipped["reason"] != "no marketing consent for any channel" || skipped["event_type"] != "" {
		t.Errorf("not-sent entry = %v", skipped)
	}

	// The oldest: sent, dispatched, no subject (SMS), event row unknown.
	oldest := resp.Entries[2]
	msg, _ := oldest["message"].(map[string]any)
	if msg["status"] != "sent" || msg["provider_id"] != "SM0" || msg["segments"] != 1.0 {
		t.Errorf("oldest message = %v", msg)
	}
	for _, k := range []string{"subject", "error"} {
		if _, ok := msg[k]; ok {
			t.Errorf("oldest message has empty %s: %v", k, msg)
		}
	}

	// Limit.
	status, _, body = e.get(t, "/v1/customers/K1/messages?limit=2", "Bearer "+token)
	if status != http.StatusOK {
		t.Fatalf("limit=2: %d %s", status, body)
	}
	resp.Entries = nil
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 2 || resp.Entries[0]["event_id"] != "ev-2" || resp.Entries[1]["event_id"] != "ev-1" {
		t.Errorf("limit=2 gave %v", resp.Entries)
	}

	// Another customer sees only its own.
	status, _, body = e.get(t, "/v1/customers/K2/messages", "Bearer "+token)
	resp.Entries = nil
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK || resp.Customer != "K2" || len(resp.Entries) != 1 {
		t.Errorf("K2: %d %s", status, body)
	} else if m, _ := resp.Entries[0]["message"].(map[string]any); m["status"] != "sending" || m["attempts"] != 0.0 {
		t.Errorf("K2 message without outcome = %v", m)
	}
}

func TestMessagesWithoutDecisions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, token)
	seed(t, e)
	tests := []struct {
		id     string
		status int
		want   string
	}{
		{"K-NONE", http.StatusOK, `{"customer":"K-NONE","entries":[]}`},
		{"K404", http.StatusNotFound, `{"error":"customer not found"}`},
	}
	for _, tt := range tests {
		status, _, body := e.get(t, "/v1/customers/"+tt.id+"/messages", "Bearer "+token)
		if status != tt.status || strings.TrimSpace(string(body)) != tt.want {
			t.Errorf("%s: %d %s, want %d %s", tt.id, status, body, tt.status, tt.want)
		}
	}
}

func TestMethodAndPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, token)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/v1/customers/K1/messages", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", res.StatusCode)
	}
	if status, _, _ := e.get(t, "/v1/customers/K1", "Bearer "+token); status != http.StatusNotFound {
		t.Errorf("unknown path: %d, want 404", status)
	}
}

// normaliseTimes rewrites RFC 3339 times in m (and m["message"]) to UTC.
func normaliseTimes(t *testing.T, m map[string]any) {
	t.Helper()
	for k, v := range m {
		switch x := v.(type) {
		case string:
			if strings.HasSuffix(k, "_at") {
				tm, err := time.Parse(time.RFC3339Nano, x)
				if err != nil {
					t.Fatalf("%s = %q: %v", k, x, err)
				}
				m[k] = tm.UTC().Format(time.RFC3339Nano)
			}
		case map[string]any:
			normaliseTimes(t, x)
		}
	}
}

func TestRequireBearer(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tests := []struct {
		name   string
		tokens []string
		auth   string
		want   int
	}{
		{"first token", []string{token, "other"}, "Bearer " + token, http.StatusNoContent},
		{"second token", []string{token, "other"}, "Bearer other", http.StatusNoContent},
		{"wrong token", []string{token}, "Bearer nope", http.StatusUnauthorized},
		{"no header", []string{token}, "", http.StatusUnauthorized},
		{"other scheme", []string{token}, "Token " + token, http.StatusUnauthorized},
		{"no tokens", nil, "Bearer " + token, http.StatusUnauthorized},
		{"only an empty token", []string{""}, "Bearer ", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/v1/anything", nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		readapi.RequireBearer(tt.tokens, next).ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, rec.Code, tt.want)
		}
		if tt.want == http.StatusUnauthorized && (rec.Header().Get("WWW-Authenticate") == "" || !strings.Contains(rec.Body.String(), "bearer token")) {
			t.Errorf("%s: refusal without WWW-Authenticate or reason: %v %s", tt.name, rec.Header(), rec.Body)
		}
	}
}
