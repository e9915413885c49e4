package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/engine/journal"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
)

// plan is what a batch will do with one event.
type plan struct {
	it       *item
	record   *journal.EventRecord // outcome row, written at the end
	deferred bool                 // another attempt is still in flight: redeliver later
	deadMsg  string               // dead-letter reason, if any
}

// dispatch is one message to hand off.
type dispatch struct {
	decision uuid.UUID
	msg      channels.Message
	outcome  journal.Outcome
	done     bool // outcome known (not cancelled mid-send)
}

// process runs one batch through the pipeline. Errors of the infrastructure
// (database) make the whole batch come back later; errors of an event (unknown
// customer, broken template) dead-letter that event only.
func (e *Engine) process(ctx context.Context, batch []item) {
	now := e.cfg.Now()
	plans := make([]*plan, 0, len(batch))
	for i := range batch {
		p := &plan{it: &batch[i]}
		if p.it.bad != nil {
			p.deadMsg = "invalid event: " + p.it.bad.Error()
		}
		plans = append(plans, p)
	}

	// Customers to load: those some campaign wants to talk to.
	var custIDs []string
	seenCust := map[string]bool{}
	for _, p := range plans {
		ev := &p.it.ev
		if p.deadMsg == "" && len(e.cfg.Campaigns.Match(ev.Type)) > 0 && !seenCust[ev.Subject] {
			seenCust[ev.Subject] = true
			custIDs = append(custIDs, ev.Subject)
		}
	}
	profs, err := e.cfg.Profiles.GetMany(ctx, custIDs)
	if err != nil {
		e.retryLater(ctx, plans, err)
		return
	}

	var decisions []journal.Decision
	var messages []journal.Message
	pending := map[uuid.UUID]*dispatch{}
	planOf := map[uuid.UUID]*plan{} // decision → its event
	for _, p := range plans {
		if p.deadMsg != "" {
			continue
		}
		ev := &p.it.ev
		rec := &journal.EventRecord{ID: ev.ID, Type: ev.Type, Source: ev.Source, Subject: ev.Subject,
			OccurredAt: ev.Time, StoredAt: now, Data: ev.Data}
		if p.it.meta != nil {
			rec.StoredAt = p.it.meta.Timestamp
			if int(p.it.meta.NumDelivered) > e.cfg.MaxDeliveries {
				p.deadMsg = fmt.Sprintf("no outcome after %d deliveries", p.it.meta.NumDelivered)
				continue
			}
		}
		cs := e.cfg.Campaigns.Match(ev.Type)
		if len(cs) == 0 {
			rec.Outcome, p.record = journal.OutcomeNoCampaign, rec
			continue
		}
		prof := profs[ev.Subject]
		if prof == nil {
			p.deadMsg = "unknown customer " + ev.Subject
			continue
		}
		var evDecisions []journal.Decision
		var evMessages []journal.Message
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID)
			did := journal.DecisionID(ev.ID, c.ID, prof.ID)
			d, m, disp, err := e.decide(c, prof, p.it, did, now)
			if err != nil {
				p.deadMsg = err.Error()
				break
			}
			evDecisions = append(evDecisions, d)
			if m != nil {
				evMessages = append(evMessages, *m)
				pending[m.ID] = disp
			}
			planOf[did] = p
		}
		if p.deadMsg != "" {
			continue
		}
		rec.Outcome, rec.Detail = journal.OutcomeProcessed, "campaigns: "+strings.Join(ids, ", ")
		p.record = rec
		decisions = append(decisions, evDecisions...)
		messages = append(messages, evMessages...)
	}

	// Dead letters first: once on the DEADLETTER stream, the event is kept.
	for _, p := range plans {
		if p.deadMsg == "" {
			continue
		}
		if err := e.deadLetter(ctx, p); err != nil {
			p.deferred = true
			continue
		}
		if p.it.bad == nil {
			ev := &p.it.ev
			p.record = &journal.EventRecord{ID: ev.ID, Type: ev.Type, Source: ev.Source, Subject: ev.Subject,
				OccurredAt: ev.Time, StoredAt: now, Outcome: journal.OutcomeDeadLetter, Detail: p.deadMsg, Data: ev.Data}
			if p.it.meta != nil {
				p.record.StoredAt = p.it.meta.Timestamp
			}
		}
	}

	claimed, err := e.cfg.Journal.Claim(ctx, decisions, messages)
	if err != nil {
		e.retryLater(ctx, plans, err)
		return
	}

	// Decisions that existed already: an earlier delivery of the event got
	// that far. Its messages are never sent again; one still without outcome
	// is either in flight elsewhere (wait) or was cut short by a crash
	// (record it as interrupted).
	var outs []journal.Outcome
	var priorIDs []uuid.UUID
	for did := range planOf {
		if !claimed.Decisions[did] {
			priorIDs = append(priorIDs, did)
		}
	}
	if len(priorIDs) > 0 {
		prior, err := e.cfg.Journal.PriorMessages(ctx, priorIDs)
		if err != nil {
			e.retryLater(ctx, plans, err)
			return
		}
		for _, pm := range prior {
			if pm.Status != journal.StatusSending {
				continue
			}
			if now.Sub(pm.CreatedAt) < e.cfg.AckWait {
				planOf[pm.DecisionID].deferred = true
				continue
			}
			outs = append(outs, journal.Outcome{MessageID: pm.ID, Status: journal.StatusInterrupted,
				Error: "hand-off interrupted by a stop or crash; not resent, so the customer gets it at most once"})
		}
	}

	stopKeepAlive := e.keepAlive(plans)
	e.dispatchAll(ctx, pending, claimed.Messages)
	stopKeepAlive()

	cut := map[*plan]bool{} // events with a hand-off cut short by a hard stop
	for id, d := range pending {
		if !claimed.Messages[id] {
			continue
		}
		if !d.done {
			cut[planOf[d.decision]] = true
			continue
		}
		outs = append(outs, d.outcome)
	}
	var records []journal.EventRecord
	for _, p := range plans {
		if p.record != nil && !p.deferred && !cut[p] {
			records = append(records, *p.record)
		}
	}
	if err := e.complete(ctx, outs, records); err != nil {
		e.retryLater(ctx, plans, err)
		return
	}
	for _, p := range plans {
		switch {
		case cut[p]:
			// Stopping hard: leave it unacked; the redelivery records the
			// cut-short hand-off as interrupted.
		case p.deferred:
			if err := p.it.msg.NakWithDelay(e.cfg.AckWait / 2); err != nil {
				e.log.LogAttrs(ctx, slog.LevelWarn, "nak failed", slog.Any("error", err))
			}
		default:
			if err := p.it.msg.Ack(); err != nil {
				e.log.LogAttrs(ctx, slog.LevelWarn, "ack failed; the event will be redelivered and recognised", slog.Any("error", err))
			}
		}
	}
}

// decide runs the rules for one campaign and customer and renders the message.
func (e *Engine) decide(c *campaigns.Campaign, prof *profiles.Profile, it *item, did uuid.UUID, now time.Time) (journal.Decision, *journal.Message, *dispatch, error) {
	choice := Decide(c, prof, func(k channels.Kind) bool { return e.cfg.Senders[k] != nil })
	d := journal.Decision{ID: did, EventID: it.ev.ID, CampaignID: c.ID, CampaignVersion: c.Version, CustomerID: prof.ID,
		Purpose: c.Purpose, Send: choice.Send, Reason: choice.Reason, DecidedAt: now}
	if !choice.Send {
		return d, nil, nil, nil
	}
	d.Channel, d.LegalBasis, d.ConsentID = string(choice.Channel), choice.LegalBasis, choice.ConsentID
	data, err := campaigns.NewData(e.cfg.Utility, prof, it.ev, c)
	if err != nil {
		return d, nil, nil, fmt.Errorf("campaign %s: %w", c.ID, err)
	}
	r, err := c.Render(choice.Channel, data)
	if err != nil {
		return d, nil, nil, fmt.Errorf("campaign %s: rendering %s: %w", c.ID, choice.Channel, err)
	}
	mid := journal.MessageID(did, d.Channel)
	m := &journal.Message{ID: mid, DecisionID: did, Channel: d.Channel, Address: choice.Address,
		Subject: r.Subject, Text: r.Text, HTML: r.HTML, CreatedAt: now}
	disp := &dispatch{decision: did, msg: channels.Message{Key: mid.String(), Channel: choice.Channel, To: choice.Address,
		ToName: strings.TrimSpace(prof.FirstName + " " + prof.LastName), Subject: r.Subject, Text: r.Text, HTML: r.HTML,
		ContentSID: r.ContentSID, ContentVariables: r.ContentVariables, Marketing: c.Purpose == profiles.PurposeMarketing}}
	disp.outcome.MessageID = mid
	return d, m, disp, nil
}

// dispatchAll hands the claimed messages to their senders in parallel,
// bounded per channel.
func (e *Engine) dispatchAll(ctx context.Context, pending map[uuid.UUID]*dispatch, claimed map[uuid.UUID]bool) {
	var wg sync.WaitGroup
	for id, d := range pending {
		if !claimed[id] {
			continue // another delivery of the same event owns it
		}
		sem := e.sem[d.msg.Channel]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func(d *dispatch) {
			defer wg.Done()
			defer func() { <-sem }()
			e.send(ctx, d)
		}(d)
	}
	wg.Wait()
}

func (e *Engine) send(ctx context.Context, d *dispatch) {
	s := e.cfg.Senders[d.msg.Channel]
	if s == nil {
		d.outcome.Status, d.outcome.Error, d.outcome.Attempts, d.done = journal.StatusFailed, "no sender configured for channel "+string(d.msg.Channel), 0, true
		return
	}
	sctx, cancel := context.WithTimeout(ctx, e.cfg.SendTimeout)
	defer cancel()
	rc, err := s.Send(sctx, d.msg)
	d.outcome.Attempts = attempts(rc, err)
	switch {
	case err == nil:
		d.outcome.Status, d.outcome.ProviderID, d.outcome.Segments = journal.StatusSent, rc.ProviderID, rc.Segments
		d.outcome.DispatchedAt = e.cfg.Now()
		d.done = true
	case ctx.Err() != nil:
		// Stopped mid-send: the provider may or may not have it. No outcome.
	default:
		d.outcome.Status, d.outcome.Error = journal.StatusFailed, err.Error()
		d.done = true
		e.log.LogAttrs(ctx, slog.LevelWarn, "message failed", slog.String("message", d.msg.Key),
			slog.String("channel", string(d.msg.Channel)), slog.String("code", channels.Code(err)), slog.Bool("transient", channels.IsTransient(err)))
	}
}

// attempts reads how often a retrying sender tried.
func attempts(rc channels.Receipt, err error) int {
	var a interface{ Attempts() int }
	if err != nil && errors.As(err, &a) {
		return a.Attempts()
	}
	if rc.Attempts > 0 {
		return rc.Attempts
	}
	return 1
}

// complete records outcomes, retrying database errors until ctx ends: the
// messages are out, their outcome must not be lost to a blip.
func (e *Engine) complete(ctx context.Context, outs []journal.Outcome, records []journal.EventRecord) error {
	wait := 100 * time.Millisecond
	for {
		err := e.cfg.Journal.Complete(ctx, outs, records)
		if err == nil || ctx.Err() != nil {
			return err
		}
		e.log.LogAttrs(ctx, slog.LevelError, "recording outcomes failed; retrying", slog.Any("error", err), slog.Duration("wait", wait))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		}
		if wait < 10*time.Second {
			wait *= 2
		}
	}
}

// deadLetter stores a failed event on the DEADLETTER stream.
func (e *Engine) deadLetter(ctx context.Context, p *plan) error {
	var seq uint64
	if p.it.meta != nil {
		seq = p.it.meta.Sequence.Stream
	}
	err := e.cfg.DeadLetters.DeadLetter(ctx, seq, p.it.ev.ID, p.it.ev.Type, p.it.msg.Data(), p.deadMsg)
	if err != nil {
		e.log.LogAttrs(ctx, slog.LevelError, "dead-lettering failed; event will be redelivered", slog.Uint64("seq", seq), slog.Any("error", err))
		return err
	}
	e.log.LogAttrs(ctx, slog.LevelWarn, "event dead-lettered", slog.Uint64("seq", seq), slog.String("event", p.it.ev.ID), slog.String("type", p.it.ev.Type), slog.String("reason", p.deadMsg))
	return nil
}

// retryLater hands the batch back to JetStream with a growing delay.
func (e *Engine) retryLater(ctx context.Context, plans []*plan, cause error) {
	e.log.LogAttrs(ctx, slog.LevelError, "batch failed; redelivering", slog.Int("events", len(plans)), slog.Any("error", cause))
	for _, p := range plans {
		delay := time.Second
		if p.it.meta != nil {
			for i := uint64(1); i < p.it.meta.NumDelivered && delay < 30*time.Second; i++ {
				delay *= 2
			}
		}
		if err := p.it.msg.NakWithDelay(delay); err != nil {
			e.log.LogAttrs(ctx, slog.LevelWarn, "nak failed", slog.Any("error", err))
		}
	}
}

// keepAlive tells JetStream the batch is still being worked on while the
// hand-offs run, so slow providers do not cause redeliveries.
func (e *Engine) keepAlive(plans []*plan) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(e.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, p := range plans {
					_ = p.it.msg.InProgress()
				}
			}
		}
	}()
	return func() { close(done) }
}
