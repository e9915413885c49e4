// Package journal is the engine's durable record in PostgreSQL: one row per
// accepted event with its outcome, one decision per event × campaign ×
// customer (sent or not, and why), one message per decision and channel with
// its delivery status. Unique keys make redelivered events harmless.
package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
	StatusSending     = "sending"     // claimed, handed to the provider
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

// PriorMessage is a message already in the journal for a redelivered event.
type PriorMessage struct {
	ID        uuid.UUID
	Status    string
	CreatedAt time.Time
}

// Prior is what the journal already holds for a set of events.
type Prior struct {
	// Done holds events that already have their final outcome row (a
	// dead-lettered event is not done: a replay processes it again).
	Done map[string]bool
	// Decisions holds the decisions already recorded, with their messages.
	Decisions map[uuid.UUID][]PriorMessage
}

// Prior loads what is already recorded for eventIDs (normally nothing; on a
// redelivery, what the previous attempt got to).
func (j *Journal) Prior(ctx context.Context, eventIDs []string) (Prior, error) {
	p := Prior{Done: map[string]bool{}, Decisions: map[uuid.UUID][]PriorMessage{}}
	if len(eventIDs) == 0 {
		return p, nil
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT id FROM events WHERE id = ANY($1) AND outcome <> 'dead_letter'`, eventIDs)
	b.Queue(`SELECT d.id, m.id, m.status, m.created_at FROM decisions d
LEFT JOIN messages m ON m.decision_id = d.id WHERE d.event_id = ANY($1)`, eventIDs)
	br := j.pool.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return p, fmt.Errorf("loading processed events: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return p, fmt.Errorf("reading processed event: %w", err)
		}
		p.Done[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("loading processed events: %w", err)
	}
	rows, err = br.Query()
	if err != nil {
		return p, fmt.Errorf("loading prior decisions: %w", err)
	}
	for rows.Next() {
		var did uuid.UUID
		var mid *uuid.UUID
		var status *string
		var created *time.Time
		if err := rows.Scan(&did, &mid, &status, &created); err != nil {
			rows.Close()
			return p, fmt.Errorf("reading prior decision: %w", err)
		}
		ms := p.Decisions[did]
		if mid != nil {
			ms = append(ms, PriorMessage{ID: *mid, Status: *status, CreatedAt: *created})
		}
		p.Decisions[did] = ms
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return p, fmt.Errorf("loading prior decisions: %w", err)
	}
	return p, nil
}

// Claim records decisions and their messages (status sending) in one
// transaction. Rows that already exist are left alone; the returned set holds
// the ids of the messages this call inserted — only those may be dispatched.
func (j *Journal) Claim(ctx context.Context, ds []Decision, ms []Message) (map[uuid.UUID]bool, error) {
	claimed := make(map[uuid.UUID]bool, len(ms))
	if len(ds) == 0 && len(ms) == 0 {
		return claimed, nil
	}
	err := pgx.BeginFunc(ctx, j.pool, func(tx pgx.Tx) error {
		if len(ds) > 0 {
			n := len(ds)
			ids := make([]uuid.UUID, n)
			evs, camps, custs, purps, chans, bases, reasons := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]*string, n), make([]*string, n), make([]string, n)
			vers := make([]int32, n)
			sends := make([]bool, n)
			consents := make([]*int64, n)
			at := make([]time.Time, n)
			for i := range ds {
				d := &ds[i]
				ids[i], evs[i], camps[i], custs[i], purps[i], reasons[i] = d.ID, d.EventID, d.CampaignID, d.CustomerID, d.Purpose, d.Reason
				vers[i], sends[i], at[i] = int32(d.CampaignVersion), d.Send, d.DecidedAt
				chans[i], bases[i] = nullable(d.Channel), nullable(d.LegalBasis)
				if d.ConsentID != 0 {
					v := d.ConsentID
					consents[i] = &v
				}
			}
			_, err := tx.Exec(ctx, `INSERT INTO decisions (id, event_id, campaign_id, campaign_version, customer_id, purpose, send, channel, legal_basis, consent_id, reason, decided_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $7::bool[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::timestamptz[])
ON CONFLICT DO NOTHING`, ids, evs, camps, vers, custs, purps, sends, chans, bases, consents, reasons, at)
			if err != nil {
				return fmt.Errorf("inserting decisions: %w", err)
			}
		}
		if len(ms) > 0 {
			n := len(ms)
			ids, dids := make([]uuid.UUID, n), make([]uuid.UUID, n)
			chans, addrs, subjs, texts, htmls := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			at := make([]time.Time, n)
			for i := range ms {
				m := &ms[i]
				ids[i], dids[i], chans[i], addrs[i], subjs[i], texts[i], htmls[i], at[i] = m.ID, m.DecisionID, m.Channel, m.Address, m.Subject, m.Text, m.HTML, m.CreatedAt
			}
			rows, err := tx.Query(ctx, `INSERT INTO messages (id, decision_id, channel, address, subject, body_text, body_html, status, created_at)
SELECT id, did, ch, addr, subj, txt, html, 'sending', at
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[]) AS u(id, did, ch, addr, subj, txt, html, at)
ON CONFLICT DO NOTHING RETURNING id`, ids, dids, chans, addrs, subjs, texts, htmls, at)
			if err != nil {
				return fmt.Errorf("inserting messages: %w", err)
			}
			for rows.Next() {
				var id uuid.UUID
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return fmt.Errorf("reading claimed message: %w", err)
				}
				claimed[id] = true
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("inserting messages: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claiming messages: %w", err)
	}
	return claimed, nil
}

// Complete records dispatch outcomes and the events' outcome rows in one
// transaction. Only messages still in status sending are updated, so a late
// writer cannot overwrite a final status.
func (j *Journal) Complete(ctx context.Context, outs []Outcome, evs []EventRecord) error {
	if len(outs) == 0 && len(evs) == 0 {
		return nil
	}
	err := pgx.BeginFunc(ctx, j.pool, func(tx pgx.Tx) error {
		if len(outs) > 0 {
			n := len(outs)
			ids := make([]uuid.UUID, n)
			status, pids, errs := make([]string, n), make([]*string, n), make([]*string, n)
			segs, attempts := make([]*int32, n), make([]int32, n)
			at := make([]*time.Time, n)
			for i := range outs {
				o := &outs[i]
				ids[i], status[i], attempts[i] = o.MessageID, o.Status, int32(o.Attempts)
				pids[i], errs[i] = nullable(o.ProviderID), nullable(o.Error)
				if o.Segments > 0 {
					v := int32(o.Segments)
					segs[i] = &v
				}
				if !o.DispatchedAt.IsZero() {
					t := o.DispatchedAt
					at[i] = &t
				}
			}
			_, err := tx.Exec(ctx, `UPDATE messages m SET status = u.status, provider_id = u.pid, segments = u.segs,
	attempts = m.attempts + u.attempts, error = u.err, dispatched_at = u.at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[], $7::timestamptz[]) AS u(id, status, pid, segs, attempts, err, at)
WHERE m.id = u.id AND m.status = 'sending'`, ids, status, pids, segs, attempts, errs, at)
			if err != nil {
				return fmt.Errorf("recording outcomes: %w", err)
			}
		}
		if len(evs) > 0 {
			n := len(evs)
			ids, types, sources, subjects, outcomes, details := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			occurred := make([]*time.Time, n)
			stored := make([]time.Time, n)
			data := make([]*string, n)
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
			_, err := tx.Exec(ctx, `INSERT INTO events (id, type, source, subject, occurred_at, stored_at, outcome, detail, data)
SELECT id, type, source, subject, occurred, stored, outcome, detail, data::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::text[], $9::text[])
	AS u(id, type, source, subject, occurred, stored, outcome, detail, data)
ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, processed_at = now()
	WHERE events.outcome = 'dead_letter'`, ids, types, sources, subjects, occurred, stored, outcomes, details, data)
			if err != nil {
				return fmt.Errorf("recording events: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("completing batch: %w", err)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ErrNoCustomer is returned by reads for a customer without records.
var ErrNoCustomer = errors.New("no records for customer")
