// Package journal is the engine's durable record in PostgreSQL: one row per
// accepted event with its outcome, one decision per event × campaign ×
// customer (sent or not, and why), one message per decision and channel with
// its delivery status. Unique keys make redelivered events harmless.
package journal

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Event outcomes.
const (
	OutcomeProcessed  = "processed"   // campaigns matched and decided
	OutcomeNoCampaign = "no_campaign" // stored, nothing to do (yet)
	OutcomeDeadLetter = "dead_letter" // failed processing; see detail and the DEADLETTER stream
)

// Message statuses.
const (
	StatusSending     = "sending"     // claimed, being handed to the provider (no dispatch row yet)
	StatusSent        = "sent"        // the provider accepted it
	StatusFailed      = "failed"      // permanently failed (or retries exhausted)
	StatusInterrupted = "interrupted" // a crash hit during hand-off; not resent (at most once)
)

// Legal bases of a sent message.
const (
	BasisConsent         = "consent"
	BasisContract        = "contract"
	BasisLegalObligation = "legal_obligation"
)

// Decision is what the engine decided for one event × campaign × customer.
type Decision struct {
	ID              uuid.UUID
	EventID         string
	CampaignID      string
	CampaignVersion int
	CustomerID      string
	Purpose         string
	Send            bool
	Channel         string // chosen channel when Send
	LegalBasis      string // when Send
	ConsentID       int64  // ledger entry when LegalBasis is consent
	Reason          string
	DecidedAt       time.Time
}

// Message is a rendered message for a decision.
type Message struct {
	ID         uuid.UUID
	DecisionID uuid.UUID
	Channel    string
	Address    string
	Subject    string
	Text       string
	HTML       string
	CreatedAt  time.Time
}

// Outcome is the result of dispatching a message.
type Outcome struct {
	MessageID    uuid.UUID
	Status       string
	ProviderID   string
	Segments     int
	Attempts     int
	Error        string
	DispatchedAt time.Time
}

// EventRecord is the one row per accepted event.
type EventRecord struct {
	ID         string
	Type       string
	Source     string
	Subject    string
	OccurredAt time.Time // zero when unknown
	StoredAt   time.Time
	Outcome    string
	Detail     string
	Data       []byte // JSON or nil
}

// Namespace for deterministic decision ids.
var decisionNS = uuid.MustParse("6f1f7a52-3f4e-4d8e-9a51-5a0f2d0c7e11")

// DecisionID is the deterministic id of event × campaign × customer.
func DecisionID(eventID, campaignID, customerID string) uuid.UUID {
	return uuid.NewSHA1(decisionNS, []byte(eventID+"\x00"+campaignID+"\x00"+customerID))
}

// MessageID is the deterministic id of a decision's message on a channel.
func MessageID(decision uuid.UUID, channel string) uuid.UUID {
	return uuid.NewSHA1(decision, []byte(channel))
}

// Journal reads and writes the engine's records.
type Journal struct {
	pool *pgxpool.Pool
}

// New returns a journal on pool.
func New(pool *pgxpool.Pool) *Journal { return &Journal{pool: pool} }

// PriorMessage is a message an earlier delivery of the same event recorded.
type PriorMessage struct {
	ID         uuid.UUID
	DecisionID uuid.UUID
	// Status is the dispatch status, or StatusSending when the message has
	// no dispatch row yet.
	Status    string
	CreatedAt time.Time
}

// Claimed says which rows a Claim inserted.
type Claimed struct {
	// Decisions newly recorded; a decision not in here existed before (the
	// event was delivered before) and its messages must not be sent again.
	Decisions map[uuid.UUID]bool
	// Messages newly recorded: only these may be dispatched.
	Messages map[uuid.UUID]bool
}

// Claim records decisions and their messages in one statement (one
// transaction). A message is only inserted together with its decision; rows
// that exist already are left alone.
func (j *Journal) Claim(ctx context.Context, ds []Decision, ms []Message) (Claimed, error) {
	c := Claimed{Decisions: make(map[uuid.UUID]bool, len(ds)), Messages: make(map[uuid.UUID]bool, len(ms))}
	if len(ds) == 0 {
		return c, nil
	}
	n := len(ds)
	ids := make([]pgtype.UUID, n)
	evs, camps, custs, purps, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	chans, bases := make([]*string, n), make([]*string, n)
	vers := make([]int32, n)
	sends := make([]bool, n)
	consents := make([]*int64, n)
	at := make([]time.Time, n)
	for i := range ds {
		d := &ds[i]
		ids[i], evs[i], camps[i], custs[i], purps[i], reasons[i] = pgUUID(d.ID), d.EventID, d.CampaignID, d.CustomerID, d.Purpose, d.Reason
		vers[i], sends[i], at[i] = int32(d.CampaignVersion), d.Send, d.DecidedAt
		chans[i], bases[i] = nullable(d.Channel), nullable(d.LegalBasis)
		if d.ConsentID != 0 {
			v := d.ConsentID
			consents[i] = &v
		}
	}
	m := len(ms)
	mids, dids := make([]pgtype.UUID, m), make([]pgtype.UUID, m)
	mchans, addrs, subjs, texts, htmls := make([]string, m), make([]string, m), make([]string, m), make([]string, m), make([]string, m)
	mat := make([]time.Time, m)
	for i := range ms {
		x := &ms[i]
		mids[i], dids[i], mchans[i], addrs[i], subjs[i], texts[i], htmls[i], mat[i] = pgUUID(x.ID), pgUUID(x.DecisionID), x.Channel, x.Address, x.Subject, x.Text, x.HTML, x.CreatedAt
	}
	rows, err := j.pool.Query(ctx, `WITH d AS (
	INSERT INTO decisions (id, event_id, campaign_id, campaign_version, customer_id, purpose, send, channel, legal_basis, consent_id, reason, decided_at)
	SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::bool[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::timestamptz[])
	ON CONFLICT DO NOTHING
	RETURNING id
), m AS (
	INSERT INTO messages (id, decision_id, channel, address, subject, body_text, body_html, created_at)
	SELECT u.* FROM unnest($13::uuid[], $14::uuid[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::timestamptz[])
		AS u(id, did, ch, addr, subj, txt, html, at)
	WHERE u.did IN (SELECT id FROM d)
	ON CONFLICT DO NOTHING
	RETURNING id
)
SELECT id, true FROM d UNION ALL SELECT id, false FROM m`,
		ids, evs, camps, vers, custs, purps, sends, chans, bases, consents, reasons, at,
		mids, dids, mchans, addrs, subjs, texts, htmls, mat)
	if err != nil {
		return c, fmt.Errorf("claiming messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var isDecision bool
		if err := rows.Scan(&id, &isDecision); err != nil {
			return c, fmt.Errorf("reading claim: %w", err)
		}
		if isDecision {
			c.Decisions[id] = true
		} else {
			c.Messages[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		return c, fmt.Errorf("claiming messages: %w", err)
	}
	return c, nil
}

// PriorMessages loads the messages (with their dispatch status) of
// decisions recorded by an earlier delivery.
func (j *Journal) PriorMessages(ctx context.Context, decisionIDs []uuid.UUID) ([]PriorMessage, error) {
	if len(decisionIDs) == 0 {
		return nil, nil
	}
	rows, err := j.pool.Query(ctx, `SELECT m.id, m.decision_id, coalesce(x.status, 'sending'), m.created_at
FROM messages m LEFT JOIN dispatches x ON x.message_id = m.id
WHERE m.decision_id = ANY($1)`, pgUUIDs(decisionIDs))
	if err != nil {
		return nil, fmt.Errorf("loading prior messages: %w", err)
	}
	defer rows.Close()
	var out []PriorMessage
	for rows.Next() {
		var p PriorMessage
		if err := rows.Scan(&p.ID, &p.DecisionID, &p.Status, &p.CreatedAt); err != nil {
			return nil, fmt.Errorf("reading prior message: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading prior messages: %w", err)
	}
	return out, nil
}

// Complete records dispatch outcomes and the events' outcome rows in one
// statement (one transaction). A message has at most one outcome: the first
// recorded wins. A dead-lettered event that is processed again (a replay)
// gets its new outcome.
func (j *Journal) Complete(ctx context.Context, outs []Outcome, evs []EventRecord) error {
	if len(outs) == 0 && len(evs) == 0 {
		return nil
	}
	n := len(outs)
	mids := make([]pgtype.UUID, n)
	status, pids, errs := make([]string, n), make([]*string, n), make([]*string, n)
	segs, attempts := make([]*int32, n), make([]int32, n)
	dat := make([]*time.Time, n)
	for i := range outs {
		o := &outs[i]
		mids[i], status[i], attempts[i] = pgUUID(o.MessageID), o.Status, int32(max(o.Attempts, 0))
		pids[i], errs[i] = nullable(o.ProviderID), nullable(o.Error)
		if o.Segments > 0 {
			v := int32(o.Segments)
			segs[i] = &v
		}
		if !o.DispatchedAt.IsZero() {
			t := o.DispatchedAt
			dat[i] = &t
		}
	}
	evs = uniqueEvents(evs)
	k := len(evs)
	ids, types, sources, subjects, outcomes, details := make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k)
	occurred := make([]*time.Time, k)
	stored := make([]time.Time, k)
	data := make([]*string, k)
	for i := range evs {
		e := &evs[i]
		ids[i], types[i], sources[i], subjects[i], outcomes[i], details[i], stored[i] = e.ID, e.Type, e.Source, e.Subject, e.Outcome, e.Detail, e.StoredAt
		if !e.OccurredAt.IsZero() {
			t := e.OccurredAt
			occurred[i] = &t
		}
		if len(e.Data) > 0 {
			s := string(e.Data)
			data[i] = &s
		}
	}
	_, err := j.pool.Exec(ctx, `WITH o AS (
	INSERT INTO dispatches (message_id, status, provider_id, segments, attempts, error, dispatched_at)
	SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::timestamptz[])
	ON CONFLICT (message_id) DO NOTHING
)
INSERT INTO events (id, type, source, subject, occurred_at, stored_at, outcome, detail, data)
SELECT id, type, source, subject, occurred, stored, outcome, detail, data::jsonb
FROM unnest($8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[], $14::text[], $15::text[], $16::text[])
	AS u(id, type, source, subject, occurred, stored, outcome, detail, data)
ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, processed_at = now()
	WHERE events.outcome = 'dead_letter'`,
		mids, status, pids, segs, attempts, errs, dat,
		ids, types, sources, subjects, occurred, stored, outcomes, details, data)
	if err != nil {
		return fmt.Errorf("completing batch: %w", err)
	}
	return nil
}

// uniqueEvents keeps one record per event id. A batch may hold two
// deliveries of one id (re-sent after the duplicate window, say for another
// customer), and one INSERT … ON CONFLICT DO UPDATE cannot touch a row twice:
// the whole batch would fail, again on every retry. As against a stored row,
// the first record wins unless it is a dead letter.
func uniqueEvents(evs []EventRecord) []EventRecord {
	seen := make(map[string]int, len(evs))
	out := make([]EventRecord, 0, len(evs))
	for _, e := range evs {
		if i, dup := seen[e.ID]; dup {
			if out[i].Outcome == OutcomeDeadLetter {
				out[i] = e
			}
			continue
		}
		seen[e.ID] = len(out)
		out = append(out, e)
	}
	return out
}

// pgUUID avoids uuid.UUID's driver.Valuer, which makes pgx format and
// parse every id as text.
func pgUUID(id uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: true} }

func pgUUIDs(ids []uuid.UUID) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		out[i] = pgUUID(id)
	}
	return out
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
