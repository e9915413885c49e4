package journal

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Entry is one decision with its message, for the customer timeline.
type Entry struct {
	DecisionID      uuid.UUID     `json:"decision_id"`
	EventID         string        `json:"event_id"`
	EventType       string        `json:"event_type"`
	CampaignID      string        `json:"campaign"`
	CampaignVersion int           `json:"campaign_version"`
	Purpose         string        `json:"purpose"`
	Send            bool          `json:"send"`
	Channel         string        `json:"channel,omitempty"`
	LegalBasis      string        `json:"legal_basis,omitempty"`
	ConsentID       int64         `json:"consent_id,omitempty"`
	Reason          string        `json:"reason"`
	DecidedAt       time.Time     `json:"decided_at"`
	Message         *EntryMessage `json:"message,omitempty"`
}

// EntryMessage is the message part of a timeline entry.
type EntryMessage struct {
	ID           uuid.UUID  `json:"id"`
	Channel      string     `json:"channel"`
	Status       string     `json:"status"`
	Subject      string     `json:"subject,omitempty"`
	Text         string     `json:"text"`
	ProviderID   string     `json:"provider_id,omitempty"`
	Segments     int        `json:"segments,omitempty"`
	Attempts     int        `json:"attempts"`
	Error        string     `json:"error,omitempty"`
	CreatedAt    time.Time  `json:"created_at"`
	DispatchedAt *time.Time `json:"dispatched_at,omitempty"`
}

// Timeline lists a customer's decisions with their messages, newest first.
func (j *Journal) Timeline(ctx context.Context, customerID string, limit int) ([]Entry, error) {
	if limit <= 0 || limit > 1000 {
		limit = 200
	}
	rows, err := j.pool.Query(ctx, `SELECT d.id, d.event_id, coalesce(e.type, ''), d.campaign_id, d.campaign_version, d.purpose,
	d.send, coalesce(d.channel, ''), coalesce(d.legal_basis, ''), coalesce(d.consent_id, 0), d.reason, d.decided_at,
	m.id, m.channel, coalesce(x.status, 'sending'), m.subject, m.body_text, coalesce(x.provider_id, ''), coalesce(x.segments, 0),
	coalesce(x.attempts, 0), coalesce(x.error, ''), m.created_at, x.dispatched_at
FROM decisions d
LEFT JOIN events e ON e.id = d.event_id
LEFT JOIN messages m ON m.decision_id = d.id
LEFT JOIN dispatches x ON x.message_id = m.id
WHERE d.customer_id = $1
ORDER BY d.decided_at DESC, d.id, m.created_at
LIMIT $2`, customerID, limit)
	if err != nil {
		return nil, fmt.Errorf("loading timeline: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var mid *uuid.UUID
		var mch, mstatus, msubj, mtext *string
		var pid, merr string
		var attempts *int32
		var created, dispatched *time.Time
		var ver int32
		var segsV int32
		if err := rows.Scan(&e.DecisionID, &e.EventID, &e.EventType, &e.CampaignID, &ver, &e.Purpose,
			&e.Send, &e.Channel, &e.LegalBasis, &e.ConsentID, &e.Reason, &e.DecidedAt,
			&mid, &mch, &mstatus, &msubj, &mtext, &pid, &segsV, &attempts, &merr, &created, &dispatched); err != nil {
			return nil, fmt.Errorf("reading timeline: %w", err)
		}
		e.CampaignVersion = int(ver)
		if mid != nil {
			e.Message = &EntryMessage{ID: *mid, Channel: *mch, Status: *mstatus, Subject: *msubj, Text: *mtext,
				ProviderID: pid, Segments: int(segsV), Error: merr, CreatedAt: *created, DispatchedAt: dispatched}
			if attempts != nil {
				e.Message.Attempts = int(*attempts)
			}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading timeline: %w", err)
	}
	return out, nil
}
