package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/email"
	"github.com/dialogwerk/dialogwerk/channels/retry"
	"github.com/dialogwerk/dialogwerk/channels/smtpsink"
	"github.com/dialogwerk/dialogwerk/channels/twilio"
	"github.com/dialogwerk/dialogwerk/channels/twiliosim"
	"github.com/dialogwerk/dialogwerk/engine"
	"github.com/dialogwerk/dialogwerk/engine/journal"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/profiles/pgtest"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
	"github.com/dialogwerk/dialogwerk/triggers/eventbus"
	"github.com/dialogwerk/dialogwerk/triggers/events"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// harness runs the engine against real parts: embedded NATS with JetStream
// on disk, a PostgreSQL database of its own, an SMTP server and the
// Twilio-like API, reached through the real adapters.
type harness struct {
	t       *testing.T
	pool    *pgxpool.Pool
	store   *profiles.Store
	journal *journal.Journal
	bus     *eventbus.Bus
	sim     *twiliosim.Server
	sink    *smtpsink.Sink
	engine  *engine.Engine
	ackWait time.Duration
}

type harnessOpt func(*engine.Config)

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	ctx := context.Background()
	h := &harness{t: t, pool: pgtest.New(t), ackWait: 2 * time.Second}
	h.store, h.journal = profiles.NewStore(h.pool), journal.New(h.pool)

	ns, err := eventbus.StartEmbedded(eventbus.EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	h.bus, err = eventbus.Connect(ctx, eventbus.Config{Embedded: ns, Tenant: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.bus.Close)

	h.sim = twiliosim.New(twiliosim.Config{})
	if err := h.sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.sim.Close() })
	h.sink, err = smtpsink.Start(ctx, smtpsink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.sink.Close() })

	es, err := email.New(email.Config{Host: h.sink.Host(), Port: h.sink.Port(), TLS: email.TLSMode("none"),
		From: "kundenservice@stadtwerke-test.example", FromName: "Stadtwerke Test", Pool: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = es.Close(context.Background()) })
	ts, err := twilio.New(twilio.Config{AccountSID: h.sim.AccountSID(), AuthToken: h.sim.AuthToken(), From: "SWTest",
		WhatsAppFrom: "+4930901820", BaseURL: h.sim.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	policy := retry.Policy{MaxAttempts: 3, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}

	set, err := campaigns.LoadSeed()
	if err != nil {
		t.Fatal(err)
	}
	cons, err := h.bus.Consumer(ctx, eventbus.ConsumerConfig{AckWait: h.ackWait})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.Config{
		Consumer: cons, DeadLetters: h.bus, Profiles: h.store, Journal: h.journal, Campaigns: set,
		Senders: map[channels.Kind]engine.Sender{
			channels.Email:    retry.Wrap(es, policy),
			channels.SMS:      retry.Wrap(ts, policy),
			channels.WhatsApp: retry.Wrap(ts, policy),
		},
		Utility: campaigns.Utility{Name: "Stadtwerke Test", Phone: "0800 1", Web: "https://stadtwerke-test.example"},
		AckWait: h.ackWait, Workers: 2,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.engine, err = engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.engine.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.engine.Stop(ctx); err != nil {
			t.Errorf("engine stop: %v", err)
		}
	})
	return h
}

// customer builds a profile; consents lists channels with granted marketing
// consent.
func customer(id string, preferred channels.Kind, withEmail, withMobile bool, consents ...channels.Kind) profiles.Profile {
	p := profiles.Profile{ID: id, Salutation: "Frau", FirstName: "Erika", LastName: "Mustermann-" + id, PreferredChannel: preferred,
		City: "Musterstadt", InSupplyArea: true,
		Contracts: []profiles.Contract{{ID: "V-" + id, Product: "strom", Tariff: "MusterStrom Fix 24",
			StartsOn: time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC), EndsOn: time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC), NoticePeriodDays: 30, MonthlyInstallmentEUR: 80}},
		Interests: []profiles.Interest{{Topic: "pool", Strength: 0.9, Source: "citycard"}},
	}
	if withEmail {
		p.Email = "kunde-" + id + "@test.example"
	}
	if withMobile {
		p.Mobile = fmt.Sprintf("+49151%08d", len(id)*1000+int(id[len(id)-1]))
	}
	for _, ch := range consents {
		p.Consents = append(p.Consents, profiles.Consent{Channel: ch, Purpose: profiles.PurposeMarketing, Granted: true,
			RecordedAt: time.Now().Add(-48 * time.Hour), Touchpoint: "web", Evidence: map[string]any{"wording": "v3"}})
	}
	return p
}

func (h *harness) importProfiles(ps ...profiles.Profile) {
	h.t.Helper()
	if err := h.store.Import(context.Background(), ps); err != nil {
		h.t.Fatal(err)
	}
}

// event builds a valid event of a seed type for customer.
func event(id, typ, cust string) events.Event {
	var data any
	switch typ {
	case events.TypeContractEnding:
		data = map[string]any{"contract": "V-" + cust, "product": "strom", "ends_on": "2027-01-31", "notice_until": "2026-12-31"}
	case events.TypeBackpaymentExpected:
		data = map[string]any{"contract": "V-" + cust, "amount_eur": 412.3, "due_on": "2027-02-15", "period": "2026"}
	case events.TypeCancellationEnquiry:
		data = map[string]any{"contract": "V-" + cust, "agent": "A-07", "touchpoint": "phone"}
	default:
		data = map[string]any{"facility": "pool"}
	}
	raw, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": id, "source": "/test", "type": typ,
		"subject": cust, "time": time.Now().UTC().Format(time.RFC3339Nano), "data": data})
	ev, ferr := events.Parse(0, raw)
	if ferr != nil {
		panic(ferr)
	}
	return ev
}

func (h *harness) publish(evs ...events.Event) {
	h.t.Helper()
	if _, err := h.bus.Publish(context.Background(), "test", evs); err != nil {
		h.t.Fatal(err)
	}
}

// waitOutcomes polls until n events have their outcome row.
func (h *harness) waitOutcomes(n int) {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got int
		if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM events`).Scan(&got); err != nil {
			h.t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("only %d of %d events have an outcome after 20s", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) timeline(cust string) []journal.Entry {
	h.t.Helper()
	es, err := h.journal.Timeline(context.Background(), cust, 100)
	if err != nil {
		h.t.Fatal(err)
	}
	return es
}

func (h *harness) outcome(eventID string) (string, string) {
	h.t.Helper()
	var outcome, detail string
	if err := h.pool.QueryRow(context.Background(), `SELECT outcome, detail FROM events WHERE id = $1`, eventID).Scan(&outcome, &detail); err != nil {
		h.t.Fatalf("event %s: %v", eventID, err)
	}
	return outcome, detail
}
