package profiles_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/profiles/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newStore(t *testing.T) (*profiles.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.New(t)
	return profiles.NewStore(pool), pool
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// full sets every field; floats are exactly representable in real (float4).
func full() profiles.Profile {
	churn := 0.75
	return profiles.Profile{
		ID: "K100001", Salutation: "Frau", FirstName: "Erika", LastName: "Müller-Lüdenscheidt",
		Birthday: date(1971, 8, 12), Language: "en", Email: "erika@example.invalid", Mobile: "+4915112345678",
		Street: "Hauptstraße 1", Postcode: "12345", City: "Musterstadt", InSupplyArea: true,
		PreferredChannel: channels.WhatsApp, ChurnIndex: &churn,
		Contracts: []profiles.Contract{
			{ID: "V-2", Product: "gas", Tariff: "Gas Grund", BasicSupply: true, StartsOn: date(2024, 6, 1),
				NoticePeriodDays: 14, MonthlyInstallmentEUR: 61.37}, // open-ended
			{ID: "V-1", Product: "strom", Tariff: "Strom Fix 24", StartsOn: date(2023, 1, 1), EndsOn: date(2027, 1, 31),
				NoticePeriodDays: 30, MonthlyInstallmentEUR: 84.5},
		},
		Interests: []profiles.Interest{
			{Topic: "museum", Strength: 0.25, Source: "survey"},
			{Topic: "pool", Strength: 0.75, Source: "citycard"},
			{Topic: "parking", Strength: 0.75, Source: "agent"},
		},
		Consents: []profiles.Consent{
			{Channel: channels.Email, Purpose: profiles.PurposeMarketing, Granted: true,
				RecordedAt: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), Touchpoint: "web", Evidence: map[string]any{"wording": "v3"}},
			{Channel: channels.SMS, Purpose: profiles.PurposeMarketing, Granted: true,
				RecordedAt: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC), Touchpoint: "web"},
			{Channel: channels.SMS, Purpose: profiles.PurposeMarketing, Granted: false,
				RecordedAt: time.Date(2025, 4, 1, 10, 0, 0, 0, time.UTC), Touchpoint: "sms", Evidence: map[string]any{"keyword": "STOP"}},
		},
	}
}

// minimal leaves every optional field empty.
func minimal() profiles.Profile {
	return profiles.Profile{ID: "K100002", LastName: "Muster"}
}

func TestImportGetManyRoundTrip(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.Import(ctx, []profiles.Profile{full(), minimal()}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetMany(ctx, []string{"K100001", "K100002", "K404"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("GetMany returned %d profiles, want 2 (unknown ids absent)", len(got))
	}
	if _, ok := got["K404"]; ok {
		t.Error("unknown id present in GetMany")
	}

	f, want := got["K100001"], full()
	// Contracts by start, interests by strength then topic, consents the
	// current state per channel × purpose (SMS revoked).
	want.Contracts = []profiles.Contract{want.Contracts[1], want.Contracts[0]}
	want.Interests = []profiles.Interest{want.Interests[2], want.Interests[1], want.Interests[0]}
	gotConsents, wantConsents := f.Consents, want.Consents
	f.Consents, want.Consents = nil, nil
	if !reflect.DeepEqual(f, &want) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", *f, want)
	}
	f.Consents = gotConsents
	if f.ChurnIndex == nil || *f.ChurnIndex != 0.75 {
		t.Errorf("churn = %v", f.ChurnIndex)
	}
	if len(gotConsents) != 2 {
		t.Fatalf("consents = %+v, want email and sms", gotConsents)
	}
	for _, c := range gotConsents {
		if c.ID == 0 || c.CustomerID != "K100001" || c.Purpose != profiles.PurposeMarketing {
			t.Errorf("consent %+v", c)
		}
		var w profiles.Consent
		switch c.Channel {
		case channels.Email:
			w = wantConsents[0]
		case channels.SMS:
			w = wantConsents[2]
		default:
			t.Fatalf("consent for %q", c.Channel)
		}
		if c.Granted != w.Granted || !c.RecordedAt.Equal(w.RecordedAt) || c.Touchpoint != w.Touchpoint {
			t.Errorf("%s consent = %+v, want %+v", c.Channel, c, w)
		}
	}
	if c, ok := f.ConsentFor(channels.SMS, profiles.PurposeMarketing); !ok || c.Granted {
		t.Errorf("SMS consent after STOP = %+v, %v; want revoked", c, ok)
	}
	if c, ok := f.ConsentFor(channels.Email, profiles.PurposeMarketing); !ok || !c.Granted {
		t.Errorf("email consent = %+v, %v; want granted", c, ok)
	}
	if _, ok := f.ConsentFor(channels.WhatsApp, profiles.PurposeMarketing); ok {
		t.Error("WhatsApp consent without a ledger entry")
	}

	m := got["K100002"]
	wantMin := &profiles.Profile{ID: "K100002", LastName: "Muster", Language: "de"}
	if !reflect.DeepEqual(m, wantMin) {
		t.Errorf("minimal profile:\n got %+v\nwant %+v", *m, *wantMin)
	}
	if m.ChurnIndex != nil || !m.Birthday.IsZero() || m.PreferredChannel != "" || m.Contracts != nil || m.Consents != nil {
		t.Errorf("empty fields not empty: %+v", *m)
	}

	// Unknown ids only, and no ids at all.
	none, err := s.GetMany(ctx, []string{"K404"})
	if err != nil || len(none) != 0 {
		t.Errorf("GetMany(unknown) = %v, %v", none, err)
	}
	none, err = s.GetMany(ctx, nil)
	if err != nil || none == nil || len(none) != 0 {
		t.Errorf("GetMany(nil) = %v, %v", none, err)
	}
}

func TestEvidenceIsStored(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.Import(ctx, []profiles.Profile{full()}); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT evidence::text FROM consents WHERE customer_id = 'K100001' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{`{"wording": "v3"}`, `{}`, `{"keyword": "STOP"}`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("evidence = %q, want %q", got, want)
	}
}

func TestImportIsAtomic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ps   func() []profiles.Profile
		want string
	}{
		{"duplicate customer", func() []profiles.Profile { return []profiles.Profile{full(), full()} }, "customers"},
		{"unknown product", func() []profiles.Profile {
			p := full()
			p.Contracts[0].Product = "telekom"
			return []profiles.Profile{minimal(), p}
		}, "contracts"},
		{"churn out of range", func() []profiles.Profile {
			p, c := full(), 1.5
			p.ChurnIndex = &c
			return []profiles.Profile{p}
		}, "customers"},
		{"consent channel unknown to the ledger", func() []profiles.Profile {
			p := full()
			p.Consents[0].Channel = "fax"
			return []profiles.Profile{minimal(), p}
		}, "consents"},
		{"evidence that is not JSON", func() []profiles.Profile {
			p := full()
			p.Consents[0].Evidence = map[string]any{"f": func() {}}
			return []profiles.Profile{minimal(), p}
		}, "evidence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, _ := newStore(t)
			err := s.Import(t.Context(), tt.ps())
			if err == nil {
				t.Fatal("Import succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if n, err := s.Count(t.Context()); err != nil || n != 0 {
				t.Errorf("after a failed import %d customers (%v), want 0", n, err)
			}
		})
	}
}

func TestRecordConsent(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.Import(ctx, []profiles.Profile{minimal()}); err != nil {
		t.Fatal(err)
	}
	const id = "K100002"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	grant, err := s.RecordConsent(ctx, profiles.Consent{CustomerID: id, Channel: channels.SMS, Purpose: profiles.PurposeMarketing,
		Granted: true, RecordedAt: at, Touchpoint: "web", Evidence: map[string]any{"doi_confirmed_at": "2026-01-02T03:05:00Z"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.ConsentFor(channels.SMS, profiles.PurposeMarketing); !ok || !c.Granted || c.ID != grant || !c.RecordedAt.Equal(at) {
		t.Errorf("after grant: %+v, %v", c, ok)
	}

	// Revoked later: the newest entry is the current state.
	revoke, err := s.RecordConsent(ctx, profiles.Consent{CustomerID: id, Channel: channels.SMS, Purpose: profiles.PurposeMarketing,
		Granted: false, Touchpoint: "sms"})
	if err != nil {
		t.Fatal(err)
	}
	if revoke <= grant {
		t.Errorf("ledger ids %d then %d, want increasing", grant, revoke)
	}
	p, err = s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := p.ConsentFor(channels.SMS, profiles.PurposeMarketing)
	if !ok || c.Granted || c.ID != revoke || c.Touchpoint != "sms" {
		t.Errorf("after revoke: %+v, %v; want the revocation", c, ok)
	}
	if time.Since(c.RecordedAt) > time.Minute || time.Since(c.RecordedAt) < -time.Minute {
		t.Errorf("revocation without a time recorded at %v, want now", c.RecordedAt)
	}
	if len(p.Consents) != 1 {
		t.Errorf("current consents = %+v, want one per channel × purpose", p.Consents)
	}

	// Both entries stay in the ledger, with their evidence.
	var n int
	var evidence string
	if err := pool.QueryRow(ctx, `SELECT count(*), min(evidence::text) FILTER (WHERE granted) FROM consents WHERE customer_id = $1`, id).Scan(&n, &evidence); err != nil {
		t.Fatal(err)
	}
	if n != 2 || evidence != `{"doi_confirmed_at": "2026-01-02T03:05:00Z"}` {
		t.Errorf("ledger holds %d entries, grant evidence %s", n, evidence)
	}

	// Append-only: the database refuses to change an entry.
	_, err = pool.Exec(ctx, `UPDATE consents SET granted = true WHERE id = $1`, revoke)
	if err == nil || !strings.Contains(err.Error(), "consents is an append-only ledger: UPDATE is not allowed") {
		t.Errorf("UPDATE of a ledger entry: %v, want the trigger's refusal", err)
	}
	p, err = s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := p.ConsentFor(channels.SMS, profiles.PurposeMarketing); c.Granted {
		t.Error("the refused UPDATE changed the consent")
	}
}

func TestRecordConsentRefuses(t *testing.T) {
	t.Parallel()
	s, pool := newStore(t)
	ctx := t.Context()
	if err := s.Import(ctx, []profiles.Profile{minimal()}); err != nil {
		t.Fatal(err)
	}
	ok := profiles.Consent{CustomerID: "K100002", Channel: channels.Email, Purpose: profiles.PurposeMarketing, Granted: true, Touchpoint: "api"}
	tests := []struct {
		name string
		mod  func(*profiles.Consent)
		want string
	}{
		{"unknown channel", func(c *profiles.Consent) { c.Channel = "fax" }, "channel"},
		{"no channel", func(c *profiles.Consent) { c.Channel = "" }, "channel"},
		{"no touchpoint", func(c *profiles.Consent) { c.Touchpoint = "" }, "touchpoint"},
		{"unknown customer", func(c *profiles.Consent) { c.CustomerID = "K404" }, "recording consent"},
		{"purpose without a ledger", func(c *profiles.Consent) { c.Purpose = profiles.PurposeService }, "recording consent"},
		{"evidence that is not JSON", func(c *profiles.Consent) { c.Evidence = map[string]any{"ch": make(chan int)} }, "evidence"},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		_, err := s.RecordConsent(ctx, c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tt.name, err, tt.want)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM consents`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("refused entries left %d rows", n)
	}
	if _, err := s.RecordConsent(ctx, ok); err != nil {
		t.Errorf("valid consent refused: %v", err)
	}
}

func TestGetExistsCount(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count on an empty database = %d, %v", n, err)
	}
	if _, err := s.Get(ctx, "K100001"); !errors.Is(err, profiles.ErrNotFound) {
		t.Errorf("Get(unknown) error = %v, want ErrNotFound", err)
	}
	if err := s.Import(ctx, []profiles.Profile{full(), minimal()}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Errorf("Count = %d, %v; want 2", n, err)
	}
	for id, want := range map[string]bool{"K100001": true, "K100002": true, "K404": false, "": false, "k100001": false} {
		got, err := s.Exists(ctx, id)
		if err != nil || got != want {
			t.Errorf("Exists(%q) = %v, %v; want %v", id, got, err, want)
		}
	}
	p, err := s.Get(ctx, "K100001")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "K100001" || len(p.Contracts) != 2 || len(p.Interests) != 3 {
		t.Errorf("Get = %+v", p)
	}
	if _, err := s.Get(ctx, "K404"); !errors.Is(err, profiles.ErrNotFound) {
		t.Errorf("Get(unknown) error = %v, want ErrNotFound", err)
	}
}

func TestGetManyManyCustomers(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	var ps []profiles.Profile
	var ids []string
	for i := range 300 {
		p := full()
		p.ID = fmt.Sprintf("K%06d", i)
		for j := range p.Contracts {
			p.Contracts[j].ID = p.ID + "-" + p.Contracts[j].ID
		}
		ps = append(ps, p)
		ids = append(ids, p.ID)
	}
	if err := s.Import(ctx, ps); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ps) {
		t.Fatalf("GetMany returned %d profiles, want %d", len(got), len(ps))
	}
	for _, id := range ids {
		p := got[id]
		// Each profile got its own rows, none of another customer's.
		if len(p.Contracts) != 2 || !strings.HasPrefix(p.Contracts[0].ID, id+"-") || len(p.Interests) != 3 || len(p.Consents) != 2 {
			t.Fatalf("%s: %d contracts, %d interests, %d consents", id, len(p.Contracts), len(p.Interests), len(p.Consents))
		}
		for _, c := range p.Consents {
			if c.CustomerID != id {
				t.Fatalf("%s holds a consent of %s", id, c.CustomerID)
			}
		}
	}
}

// A statement recorded later in the ledger but dated earlier (an import of
// paper forms, say) does not override a newer one: the current state is the
// newest by recorded_at.
func TestCurrentConsentIsNewestStatement(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.Import(ctx, []profiles.Profile{minimal()}); err != nil {
		t.Fatal(err)
	}
	const id = "K100002"
	newer, err := s.RecordConsent(ctx, profiles.Consent{CustomerID: id, Channel: channels.Email, Purpose: profiles.PurposeMarketing,
		Granted: true, RecordedAt: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC), Touchpoint: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordConsent(ctx, profiles.Consent{CustomerID: id, Channel: channels.Email, Purpose: profiles.PurposeMarketing,
		Granted: false, RecordedAt: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC), Touchpoint: "letter"}); err != nil {
		t.Fatal(err)
	}
	p, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.ConsentFor(channels.Email, profiles.PurposeMarketing); !ok || !c.Granted || c.ID != newer {
		t.Errorf("current = %+v, want the grant of 2026-06-01", c)
	}
}
