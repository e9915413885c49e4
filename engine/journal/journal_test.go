package journal_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/engine/journal"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/profiles/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// t0 is a fixed time at microsecond precision (what PostgreSQL keeps).
var t0 = time.Date(2026, 11, 23, 9, 30, 0, 123456000, time.UTC)

func newJournal(t *testing.T) (*journal.Journal, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.New(t)
	return journal.New(pool), pool
}

func decision(eventID, campaign, customer string, send bool, channel string, at time.Time) journal.Decision {
	d := journal.Decision{
		ID: journal.DecisionID(eventID, campaign, customer), EventID: eventID, CampaignID: campaign, CampaignVersion: 2,
		CustomerID: customer, Purpose: profiles.PurposeService, Send: send, Reason: "no consent for any channel", DecidedAt: at,
	}
	if send {
		d.Channel, d.LegalBasis, d.Reason = channel, journal.BasisContract, "service message"
	}
	return d
}

func message(d journal.Decision, channel string) journal.Message {
	return journal.Message{ID: journal.MessageID(d.ID, channel), DecisionID: d.ID, Channel: channel, Address: "kunde@example.invalid",
		Subject: "Betreff", Text: "Hallo", HTML: "<p>Hallo</p>", CreatedAt: d.DecidedAt.Add(time.Millisecond)}
}

func set(ids ...uuid.UUID) map[uuid.UUID]bool {
	m := make(map[uuid.UUID]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func count(t *testing.T, pool *pgxpool.Pool, table string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDeterministicIDs(t *testing.T) {
	t.Parallel()
	a := journal.DecisionID("ev-1", "camp", "K1")
	if a != journal.DecisionID("ev-1", "camp", "K1") {
		t.Error("DecisionID is not deterministic")
	}
	// The separator keeps the parts apart.
	for _, other := range []uuid.UUID{journal.DecisionID("ev-1c", "amp", "K1"), journal.DecisionID("ev-1", "camp", "K2"), journal.DecisionID("ev-2", "camp", "K1")} {
		if other == a {
			t.Error("different triples share a decision id")
		}
	}
	if journal.MessageID(a, "email") == journal.MessageID(a, "sms") || journal.MessageID(a, "email") != journal.MessageID(a, "email") {
		t.Error("message ids not deterministic per channel")
	}
}

func TestClaim(t *testing.T) {
	t.Parallel()
	j, pool := newJournal(t)
	ctx := t.Context()
	sent := decision("ev-1", "camp", "K1", true, "email", t0)
	notSent := decision("ev-1", "other", "K1", false, "", t0)
	msg := message(sent, "email")

	c, err := j.Claim(ctx, []journal.Decision{sent, notSent}, []journal.Message{msg})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Decisions, set(sent.ID, notSent.ID)) || !reflect.DeepEqual(c.Messages, set(msg.ID)) {
		t.Fatalf("first claim = %+v", c)
	}

	// Redelivery: the same rows again insert nothing.
	c, err = j.Claim(ctx, []journal.Decision{sent, notSent}, []journal.Message{msg})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Decisions) != 0 || len(c.Messages) != 0 {
		t.Fatalf("second claim inserted %+v", c)
	}

	// Redelivery deciding differently (now SMS): the decision exists, so
	// its new message is not recorded and cannot be sent.
	changed := sent
	changed.Channel = "sms"
	smsMsg := message(changed, "sms")
	c, err = j.Claim(ctx, []journal.Decision{changed}, []journal.Message{smsMsg})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Decisions) != 0 || len(c.Messages) != 0 {
		t.Fatalf("claim with a changed channel inserted %+v", c)
	}

	// A batch mixing an old and a new decision: only the new one's
	// message is recorded.
	fresh := decision("ev-2", "camp", "K1", true, "sms", t0.Add(time.Minute))
	freshMsg := message(fresh, "sms")
	c, err = j.Claim(ctx, []journal.Decision{sent, fresh}, []journal.Message{message(sent, "whatsapp"), freshMsg})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Decisions, set(fresh.ID)) || !reflect.DeepEqual(c.Messages, set(freshMsg.ID)) {
		t.Fatalf("mixed claim = %+v, want only ev-2's rows", c)
	}
	if n := count(t, pool, "decisions"); n != 3 {
		t.Errorf("%d decisions, want 3", n)
	}
	if n := count(t, pool, "messages"); n != 2 {
		t.Errorf("%d messages, want 2", n)
	}

	// What was stored is what the first claim said.
	var ch, legal, reason, addr, subj, text, html string
	var ver int
	var send bool
	var consent *int64
	var decidedAt, createdAt time.Time
	err = pool.QueryRow(ctx, `SELECT d.channel, d.legal_basis, d.reason, d.campaign_version, d.send, d.consent_id, d.decided_at,
	m.address, m.subject, m.body_text, m.body_html, m.created_at
FROM decisions d JOIN messages m ON m.decision_id = d.id WHERE d.id = $1`, sent.ID).Scan(
		&ch, &legal, &reason, &ver, &send, &consent, &decidedAt, &addr, &subj, &text, &html, &createdAt)
	if err != nil {
		t.Fatal(err)
	}
	if ch != "email" || legal != journal.BasisContract || reason != sent.Reason || ver != 2 || !send || consent != nil ||
		!decidedAt.Equal(t0) || addr != msg.Address || subj != "Betreff" || text != "Hallo" || html != "<p>Hallo</p>" || !createdAt.Equal(msg.CreatedAt) {
		t.Errorf("stored %s %s %q v%d %v %v %v %s %q %q %q %v", ch, legal, reason, ver, send, consent, decidedAt, addr, subj, text, html, createdAt)
	}
	var nullChannel, nullBasis *string
	if err := pool.QueryRow(ctx, `SELECT channel, legal_basis FROM decisions WHERE id = $1`, notSent.ID).Scan(&nullChannel, &nullBasis); err != nil {
		t.Fatal(err)
	}
	if nullChannel != nil || nullBasis != nil {
		t.Errorf("a decision not to send stored channel %v, basis %v; want NULL", nullChannel, nullBasis)
	}

	// Nothing to claim.
	c, err = j.Claim(ctx, nil, nil)
	if err != nil || len(c.Decisions) != 0 || len(c.Messages) != 0 || c.Decisions == nil {
		t.Errorf("empty claim = %+v, %v", c, err)
	}
}

// A message needs its decision in the same claim.
func TestClaimMessageWithoutItsDecision(t *testing.T) {
	t.Parallel()
	j, pool := newJournal(t)
	a := decision("ev-1", "camp", "K1", true, "email", t0)
	b := decision("ev-2", "camp", "K1", true, "email", t0)
	c, err := j.Claim(t.Context(), []journal.Decision{a}, []journal.Message{message(a, "email"), message(b, "email")})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Messages, set(message(a, "email").ID)) {
		t.Errorf("messages claimed = %v", c.Messages)
	}
	if n := count(t, pool, "messages"); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestClaimConcurrent(t *testing.T) {
	t.Parallel()
	j, pool := newJournal(t)
	// Two engines process the same delivery at once: exactly one wins
	// each row.
	var ds []journal.Decision
	var ms []journal.Message
	for i := range 50 {
		d := decision(fmt.Sprintf("ev-%d", i), "camp", "K1", true, "sms", t0)
		ds, ms = append(ds, d), append(ms, message(d, "sms"))
	}
	const engines = 4
	results := make(chan journal.Claimed, engines)
	errs := make(chan error, engines)
	for range engines {
		go func() {
			c, err := j.Claim(context.Background(), ds, ms)
			errs <- err
			results <- c
		}()
	}
	won := map[uuid.UUID]int{}
	for range engines {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		c := <-results
		for id := range c.Messages {
			won[id]++
		}
		for id := range c.Decisions {
			won[id]++
		}
	}
	if len(won) != 100 {
		t.Errorf("%d rows claimed, want 100", len(won))
	}
	for id, n := range won {
		if n != 1 {
			t.Errorf("row %s claimed %d times", id, n)
		}
	}
	if n := count(t, pool, "messages"); n != 50 {
		t.Errorf("%d messages, want 50", n)
	}
}

func TestPriorMessagesAndComplete(t *testing.T) {
	t.Parallel()
	j, pool := newJournal(t)
	ctx := t.Context()
	a := decision("ev-1", "camp", "K1", true, "email", t0)
	b := decision("ev-1", "camp", "K2", true, "sms", t0)
	none := decision("ev-1", "camp", "K3", false, "", t0)
	ma, mb := message(a, "email"), message(b, "sms")
	if _, err := j.Claim(ctx, []journal.Decision{a, b, none}, []journal.Message{ma, mb}); err != nil {
		t.Fatal(err)
	}
	prior := func() map[uuid.UUID]journal.PriorMessage {
		t.Helper()
		ps, err := j.PriorMessages(ctx, []uuid.UUID{a.ID, b.ID, none.ID, uuid.New()})
		if err != nil {
			t.Fatal(err)
		}
		m := map[uuid.UUID]journal.PriorMessage{}
		for _, p := range ps {
			m[p.ID] = p
		}
		return m
	}
	p := prior()
	if len(p) != 2 || p[ma.ID].Status != journal.StatusSending || p[mb.ID].Status != journal.StatusSending ||
		p[ma.ID].DecisionID != a.ID || !p[ma.ID].CreatedAt.Equal(ma.CreatedAt) {
		t.Fatalf("before dispatch: %+v", p)
	}

	out := journal.Outcome{MessageID: ma.ID, Status: journal.StatusSent, ProviderID: "<m1@x>", Attempts: 1, DispatchedAt: t0.Add(time.Second)}
	if err := j.Complete(ctx, []journal.Outcome{out}, nil); err != nil {
		t.Fatal(err)
	}
	p = prior()
	if p[ma.ID].Status != journal.StatusSent || p[mb.ID].Status != journal.StatusSending {
		t.Errorf("after one dispatch: a %s, b %s", p[ma.ID].Status, p[mb.ID].Status)
	}

	// A second outcome for the same message (a redelivery that resent,
	// or a late failure) does not overwrite the first.
	late := journal.Outcome{MessageID: ma.ID, Status: journal.StatusFailed, Error: "boom", Attempts: 5}
	fail := journal.Outcome{MessageID: mb.ID, Status: journal.StatusFailed, Segments: 2, Attempts: 3, Error: "21211 invalid number"}
	if err := j.Complete(ctx, []journal.Outcome{late, fail}, nil); err != nil {
		t.Fatal(err)
	}
	p = prior()
	if p[ma.ID].Status != journal.StatusSent || p[mb.ID].Status != journal.StatusFailed {
		t.Errorf("after the second outcome: a %s (want sent), b %s (want failed)", p[ma.ID].Status, p[mb.ID].Status)
	}
	if n := count(t, pool, "dispatches"); n != 2 {
		t.Errorf("%d dispatches, want one per message", n)
	}
	var status, provider string
	var errText, segs, dispatched any
	var attempts int
	if err := pool.QueryRow(ctx, `SELECT status, coalesce(provider_id, ''), error, segments, attempts, dispatched_at FROM dispatches WHERE message_id = $1`, ma.ID).
		Scan(&status, &provider, &errText, &segs, &attempts, &dispatched); err != nil {
		t.Fatal(err)
	}
	if status != "sent" || provider != "<m1@x>" || errText != nil || segs != nil || attempts != 1 || dispatched.(time.Time).Equal(out.DispatchedAt) != true {
		t.Errorf("dispatch a = %s %q %v %v %d %v", status, provider, errText, segs, attempts, dispatched)
	}
	if err := pool.QueryRow(ctx, `SELECT status, coalesce(provider_id, ''), error, segments, attempts, dispatched_at FROM dispatches WHERE message_id = $1`, mb.ID).
		Scan(&status, &provider, &errText, &segs, &attempts, &dispatched); err != nil {
		t.Fatal(err)
	}
	if status != "failed" || provider != "" || errText != "21211 invalid number" || segs != int32(2) || attempts != 3 || dispatched != nil {
		t.Errorf("dispatch b = %s %q %v %v %d %v", status, provider, errText, segs, attempts, dispatched)
	}

	if ps, err := j.PriorMessages(ctx, nil); err != nil || ps != nil {
		t.Errorf("PriorMessages(nil) = %v, %v", ps, err)
	}
	if err := j.Complete(ctx, nil, nil); err != nil {
		t.Errorf("empty Complete: %v", err)
	}
	if err := j.Complete(ctx, []journal.Outcome{{MessageID: uuid.New(), Status: journal.StatusSent}}, nil); err == nil {
		t.Error("outcome for an unknown message accepted")
	}
}

type eventRow struct {
	typ, source, subject, outcome, detail string
	occurred                              *time.Time
	stored                                time.Time
	data                                  *string
}

func readEvent(t *testing.T, pool *pgxpool.Pool, id string) eventRow {
	t.Helper()
	var r eventRow
	err := pool.QueryRow(t.Context(), `SELECT type, source, subject, outcome, detail, occurred_at, stored_at, data::text FROM events WHERE id = $1`, id).
		Scan(&r.typ, &r.source, &r.subject, &r.outcome, &r.detail, &r.occurred, &r.stored, &r.data)
	if err != nil {
		t.Fatalf("event %s: %v", id, err)
	}
	return r
}

func TestCompleteEvents(t *testing.T) {
	t.Parallel()
	j, pool := newJournal(t)
	ctx := t.Context()
	rec := journal.EventRecord{ID: "ev-1", Type: "contract.ending", Source: "/billing", Subject: "K1", OccurredAt: t0.Add(-time.Hour),
		StoredAt: t0, Outcome: journal.OutcomeProcessed, Data: []byte(`{"contract":"V-1"}`)}
	bare := journal.EventRecord{ID: "ev-2", Type: "x.y", Source: "/crm", Subject: "K2", StoredAt: t0, Outcome: journal.OutcomeNoCampaign}
	if err := j.Complete(ctx, nil, []journal.EventRecord{rec, bare}); err != nil {
		t.Fatal(err)
	}
	r := readEvent(t, pool, "ev-1")
	if r.typ != rec.Type || r.source != rec.Source || r.subject != "K1" || r.outcome != "processed" || r.detail != "" ||
		r.occurred == nil || !r.occurred.Equal(rec.OccurredAt) || !r.stored.Equal(t0) || r.data == nil || *r.data != `{"contract": "V-1"}` {
		t.Errorf("event row = %+v", r)
	}
	r = readEvent(t, pool, "ev-2")
	if r.occurred != nil || r.data != nil || r.outcome != "no_campaign" {
		t.Errorf("event without time and data = %+v", r)
	}

	tests := []struct {
		name        string
		first, then string
		want        string
	}{
		{"dead letter replaced by processed (replay)", journal.OutcomeDeadLetter, journal.OutcomeProcessed, journal.OutcomeProcessed},
		{"dead letter replaced by no_campaign", journal.OutcomeDeadLetter, journal.OutcomeNoCampaign, journal.OutcomeNoCampaign},
		{"processed kept over dead letter", journal.OutcomeProcessed, journal.OutcomeDeadLetter, journal.OutcomeProcessed},
		{"processed kept over no_campaign", journal.OutcomeProcessed, journal.OutcomeNoCampaign, journal.OutcomeProcessed},
		{"no_campaign kept over processed", journal.OutcomeNoCampaign, journal.OutcomeProcessed, journal.OutcomeNoCampaign},
		{"dead letter twice keeps the newer detail", journal.OutcomeDeadLetter, journal.OutcomeDeadLetter, journal.OutcomeDeadLetter},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("ev-outcome-%d", i)
			first := journal.EventRecord{ID: id, Type: "x.y", Source: "/s", Subject: "K1", StoredAt: t0, Outcome: tt.first, Detail: "first"}
			if err := j.Complete(ctx, nil, []journal.EventRecord{first}); err != nil {
				t.Fatal(err)
			}
			then := first
			then.Outcome, then.Detail, then.Type = tt.then, "then", "changed.type"
			if err := j.Complete(ctx, nil, []journal.EventRecord{then}); err != nil {
				t.Fatal(err)
			}
			r := readEvent(t, pool, id)
			if r.outcome != tt.want {
				t.Errorf("outcome = %s, want %s", r.outcome, tt.want)
			}
			wantDetail := "first"
			if tt.first == journal.OutcomeDeadLetter {
				wantDetail = "then"
			}
			if r.detail != wantDetail {
				t.Errorf("detail = %q, want %q", r.detail, wantDetail)
			}
			if r.typ != "x.y" {
				t.Errorf("type changed to %q", r.typ)
			}
		})
	}
	if n := count(t, pool, "events"); n != 2+len(tests) {
		t.Errorf("%d event rows, want %d", n, 2+len(tests))
	}
}

// Two deliveries of one event id in a batch (re-sent after the duplicate
// window) are written as one row, by the rule that applies across batches.
func TestCompleteSameEventTwiceInABatch(t *testing.T) {
	t.Parallel()
	j, pool := newJournal(t)
	tests := []struct {
		first, then, want string
	}{
		{journal.OutcomeProcessed, journal.OutcomeDeadLetter, journal.OutcomeProcessed},
		{journal.OutcomeDeadLetter, journal.OutcomeProcessed, journal.OutcomeProcessed},
		{journal.OutcomeNoCampaign, journal.OutcomeProcessed, journal.OutcomeNoCampaign},
		{journal.OutcomeDeadLetter, journal.OutcomeDeadLetter, journal.OutcomeDeadLetter},
	}
	for i, tt := range tests {
		id := fmt.Sprintf("ev-%d", i)
		a := journal.EventRecord{ID: id, Type: "x.y", Source: "/s", Subject: "K1", StoredAt: t0, Outcome: tt.first}
		b := a
		b.Subject, b.Outcome = "K2", tt.then
		if err := j.Complete(t.Context(), nil, []journal.EventRecord{a, b}); err != nil {
			t.Fatalf("%s then %s: %v", tt.first, tt.then, err)
		}
		if r := readEvent(t, pool, id); r.outcome != tt.want {
			t.Errorf("%s then %s: outcome %s, want %s", tt.first, tt.then, r.outcome, tt.want)
		}
	}
	if n := count(t, pool, "events"); n != len(tests) {
		t.Errorf("%d event rows, want %d", n, len(tests))
	}
}

// Outcomes and event rows are written together: a failing batch writes
// neither.
func TestCompleteIsOneTransaction(t *testing.T) {
	t.Parallel()
	j, pool := newJournal(t)
	ctx := t.Context()
	d := decision("ev-1", "camp", "K1", true, "email", t0)
	m := message(d, "email")
	if _, err := j.Claim(ctx, []journal.Decision{d}, []journal.Message{m}); err != nil {
		t.Fatal(err)
	}
	bad := journal.EventRecord{ID: "ev-1", Type: "x", Source: "/s", Subject: "K1", StoredAt: t0, Outcome: "exploded"}
	err := j.Complete(ctx, []journal.Outcome{{MessageID: m.ID, Status: journal.StatusSent}}, []journal.EventRecord{bad})
	if err == nil {
		t.Fatal("unknown outcome accepted")
	}
	if n := count(t, pool, "dispatches"); n != 0 {
		t.Errorf("failed Complete left %d dispatches", n)
	}
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	j, pool := newJournal(t)
	ctx := t.Context()
	store := profiles.NewStore(pool)
	if err := store.Import(ctx, []profiles.Profile{{ID: "K1", LastName: "Muster"}}); err != nil {
		t.Fatal(err)
	}
	consentID, err := store.RecordConsent(ctx, profiles.Consent{CustomerID: "K1", Channel: "sms", Purpose: profiles.PurposeMarketing, Granted: true, Touchpoint: "web"})
	if err != nil {
		t.Fatal(err)
	}

	// Oldest: sent by email and delivered. Then: not sent. Newest: SMS
	// under consent, handed over but without an outcome yet. Another
	// customer's decision must not show.
	oldest := decision("ev-1", "camp-a", "K1", true, "email", t0)
	skipped := decision("ev-2", "camp-b", "K1", false, "", t0.Add(time.Hour))
	newest := decision("ev-3", "camp-c", "K1", true, "sms", t0.Add(2*time.Hour))
	newest.Purpose, newest.LegalBasis, newest.ConsentID = profiles.PurposeMarketing, journal.BasisConsent, consentID
	foreign := decision("ev-4", "camp-a", "K2", true, "email", t0.Add(3*time.Hour))
	mo, mn, mf := message(oldest, "email"), message(newest, "sms"), message(foreign, "email")
	mn.Subject = ""
	if _, err := j.Claim(ctx, []journal.Decision{oldest, skipped, newest, foreign}, []journal.Message{mo, mn, mf}); err != nil {
		t.Fatal(err)
	}
	dispatched := t0.Add(time.Minute)
	if err := j.Complete(ctx, []journal.Outcome{{MessageID: mo.ID, Status: journal.StatusSent, ProviderID: "<p1>", Attempts: 2, DispatchedAt: dispatched}},
		[]journal.EventRecord{{ID: "ev-1", Type: "contract.ending", Source: "/b", Subject: "K1", StoredAt: t0, Outcome: journal.OutcomeProcessed}}); err != nil {
		t.Fatal(err)
	}

	got, err := j.Timeline(ctx, "K1", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []journal.Entry{
		{DecisionID: newest.ID, EventID: "ev-3", CampaignID: "camp-c", CampaignVersion: 2, Purpose: "marketing", Send: true, Channel: "sms",
			LegalBasis: "consent", ConsentID: consentID, Reason: newest.Reason, DecidedAt: newest.DecidedAt,
			Message: &journal.EntryMessage{ID: mn.ID, Channel: "sms", Status: journal.StatusSending, Text: "Hallo", CreatedAt: mn.CreatedAt}},
		{DecisionID: skipped.ID, EventID: "ev-2", CampaignID: "camp-b", CampaignVersion: 2, Purpose: "service", Reason: skipped.Reason, DecidedAt: skipped.DecidedAt},
		{DecisionID: oldest.ID, EventID: "ev-1", EventType: "contract.ending", CampaignID: "camp-a", CampaignVersion: 2, Purpose: "service", Send: true,
			Channel: "email", LegalBasis: "contract", Reason: oldest.Reason, DecidedAt: oldest.DecidedAt,
			Message: &journal.EntryMessage{ID: mo.ID, Channel: "email", Status: journal.StatusSent, Subject: "Betreff", Text: "Hallo",
				ProviderID: "<p1>", Attempts: 2, CreatedAt: mo.CreatedAt, DispatchedAt: &dispatched}},
	}
	if len(got) != len(want) {
		t.Fatalf("timeline has %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		normalise(&got[i])
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("entry %d:\n got %+v %+v\nwant %+v %+v", i, got[i], got[i].Message, want[i], want[i].Message)
		}
	}

	// Limit keeps the newest.
	got, err = j.Timeline(ctx, "K1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].DecisionID != newest.ID || got[1].DecisionID != skipped.ID {
		t.Errorf("limit 2 = %+v", got)
	}
	got, err = j.Timeline(ctx, "K404", 10)
	if err != nil || len(got) != 0 {
		t.Errorf("unknown customer: %v, %v", got, err)
	}
}

// normalise puts times in UTC so DeepEqual compares instants.
func normalise(e *journal.Entry) {
	e.DecidedAt = e.DecidedAt.UTC()
	if m := e.Message; m != nil {
		m.CreatedAt = m.CreatedAt.UTC()
		if m.DispatchedAt != nil {
			d := m.DispatchedAt.UTC()
			m.DispatchedAt = &d
		}
	}
}

// Decisions at the same instant come in a stable order.
func TestTimelineStableOrder(t *testing.T) {
	t.Parallel()
	j, _ := newJournal(t)
	ctx := t.Context()
	var ds []journal.Decision
	var ids []string
	for i := range 10 {
		d := decision(fmt.Sprintf("ev-%d", i), "camp", "K1", false, "", t0)
		ds = append(ds, d)
		ids = append(ids, d.ID.String())
	}
	if _, err := j.Claim(ctx, ds, nil); err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	for range 3 {
		got, err := j.Timeline(ctx, "K1", 100)
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, e := range got {
			gotIDs = append(gotIDs, e.DecisionID.String())
		}
		if !reflect.DeepEqual(gotIDs, ids) {
			t.Fatalf("order %v, want by id %v", gotIDs, ids)
		}
	}
}
