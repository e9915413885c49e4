// Package engine turns stored events into decisions and messages: a durable
// JetStream pull consumer feeds per-customer-serialised workers that process
// batches — load profiles and consents, match campaigns, decide per customer,
// render, claim the message in PostgreSQL under a unique key, dispatch
// through the channel adapters, record the outcome — and only then ack.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/engine/journal"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
	"github.com/dialogwerk/dialogwerk/triggers/events"
)

// ProfileLoader loads customer profiles with their current consents.
type ProfileLoader interface {
	GetMany(ctx context.Context, ids []string) (map[string]*profiles.Profile, error)
}

// DeadLetterer keeps an event that failed processing, with the reason.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, seq uint64, eventID, typ string, raw []byte, reason string) error
}

// Config configures the engine. Zero values take the defaults.
type Config struct {
	// Consumer is the durable JetStream pull consumer on the EVENTS stream.
	Consumer jetstream.Consumer
	// DeadLetters receives events that cannot be processed.
	DeadLetters DeadLetterer
	// Profiles loads customers.
	Profiles ProfileLoader
	// Journal records events, decisions and messages.
	Journal *journal.Journal
	// Campaigns are matched against events.
	Campaigns *campaigns.Set
	// Senders per channel; a channel without sender fails its messages.
	Senders map[channels.Kind]Sender
	// Utility is the sender's name and contacts for the templates.
	Utility campaigns.Utility
	// Workers is how many batches are in flight at once (being decided,
	// dispatched or recorded). A customer is in at most one batch at a
	// time, so a customer's events are processed in order. Default 4.
	Workers int
	// BatchSize is the most events one batch holds; default 500.
	BatchSize int
	// Linger is how long the batcher waits to fill a batch after its first
	// event when a worker is free; default 5 ms.
	Linger time.Duration
	// AckWait must equal the consumer's AckWait; a message found still
	// "sending" after it is taken as interrupted by a crash. Default 30 s.
	AckWait time.Duration
	// MaxDeliveries after which an event without outcome is dead-lettered
	// (poison protection); default 50.
	MaxDeliveries int
	// DispatchConcurrency bounds parallel hand-offs per channel; default 32.
	DispatchConcurrency int
	// SendTimeout bounds one message's hand-off including retries; default 60 s.
	SendTimeout time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) validate() error {
	switch {
	case c.Consumer == nil:
		return errors.New("engine: Consumer is required")
	case c.DeadLetters == nil:
		return errors.New("engine: DeadLetters is required")
	case c.Profiles == nil:
		return errors.New("engine: Profiles is required")
	case c.Journal == nil:
		return errors.New("engine: Journal is required")
	case c.Campaigns == nil:
		return errors.New("engine: Campaigns is required")
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliveries <= 0 {
		c.MaxDeliveries = 50
	}
	if c.DispatchConcurrency <= 0 {
		c.DispatchConcurrency = 32
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Engine is the consumer loop and the decision pipeline.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	sem  map[channels.Kind]chan struct{}
	iter jetstream.MessagesContext

	in      chan item
	cancel  context.CancelFunc
	stopped chan struct{}
}

// item is one delivered event.
type item struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	ev   events.Event
	bad  *events.FieldError // the stored bytes are not a valid event
}

// customer is the serialisation key of an item.
func (it *item) customer() string {
	if it.bad != nil {
		return ""
	}
	return it.ev.Subject
}

// New validates cfg and returns an engine; Start runs it.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: cfg.Logger.With(slog.String("component", "engine")), sem: map[channels.Kind]chan struct{}{}}
	for _, k := range []channels.Kind{channels.Email, channels.SMS, channels.WhatsApp} {
		e.sem[k] = make(chan struct{}, cfg.DispatchConcurrency)
	}
	return e, nil
}

// Start begins consuming. It returns once the consumer is subscribed.
func (e *Engine) Start(ctx context.Context) error {
	iter, err := e.cfg.Consumer.Messages(jetstream.PullMaxMessages(e.cfg.Workers * e.cfg.BatchSize * 2))
	if err != nil {
		return fmt.Errorf("engine: subscribing to events: %w", err)
	}
	e.iter = iter
	// Processing gets its own context: Stop lets in-flight batches finish.
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.stopped = make(chan struct{})
	e.in = make(chan item, e.cfg.BatchSize)
	go e.pump()
	go func() {
		e.batch(pctx)
		close(e.stopped)
	}()
	e.log.LogAttrs(ctx, slog.LevelInfo, "engine started", slog.Int("workers", e.cfg.Workers), slog.Int("batch", e.cfg.BatchSize))
	return nil
}

// Stop drains: no new events are pulled, buffered and in-flight events are
// processed and acked. If ctx ends first, processing is cancelled (unacked
// events are redelivered later) and ctx's error returned.
func (e *Engine) Stop(ctx context.Context) error {
	if e.iter == nil {
		return nil
	}
	e.iter.Drain()
	select {
	case <-e.stopped:
		e.cancel()
		return nil
	case <-ctx.Done():
		e.iter.Stop()
		e.cancel()
		<-e.stopped
		return fmt.Errorf("engine: stop: %w", ctx.Err())
	}
}

// pump reads the consumer and parses each event.
func (e *Engine) pump() {
	defer close(e.in)
	for {
		msg, err := e.iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			e.log.LogAttrs(context.Background(), slog.LevelWarn, "pulling events", slog.Any("error", err))
			continue
		}
		it := item{msg: msg}
		it.meta, _ = msg.Metadata()
		it.ev, it.bad = events.ParseStored(msg.Data())
		e.in <- it
	}
}

// batch forms batches and runs up to Workers of them at once. A customer
// with an event in flight has later events held back until it completes,
// in arrival order, so one customer's events never overtake each other.
func (e *Engine) batch(ctx context.Context) {
	var (
		held     []item             // events waiting for their customer
		heldBy   = map[string]int{} // held events per customer
		inflight = map[string]bool{}
		free     = e.cfg.Workers
		done     = make(chan []string, e.cfg.Workers)
		in       = e.in
		timer    = time.NewTimer(time.Hour)
	)
	timer.Stop()
	release := func(custs []string) {
		for _, c := range custs {
			delete(inflight, c)
		}
		free++
	}
	for {
		for drained := false; !drained; {
			select {
			case c := <-done:
				release(c)
			default:
				drained = true
			}
		}
		if in == nil && len(held) == 0 && free == e.cfg.Workers {
			return // drained and idle
		}
		if free == 0 || (in == nil && len(held) > 0) {
			if free == e.cfg.Workers && in == nil {
				// Held customers are all free now; take them below.
			} else {
				release(<-done)
				continue
			}
		}

		b := make([]item, 0, min(e.cfg.BatchSize, 64))
		inBatch := map[string]bool{}
		// Held events whose customer is free go first, in order.
		if len(held) > 0 {
			keep := held[:0]
			skipped := map[string]bool{}
			for _, it := range held {
				c := it.customer()
				if len(b) < e.cfg.BatchSize && !skipped[c] && !inflight[c] && !inBatch[c] {
					if heldBy[c]--; heldBy[c] == 0 {
						delete(heldBy, c)
					}
					inBatch[c] = true
					b = append(b, it)
					continue
				}
				skipped[c] = true
				keep = append(keep, it)
			}
			clear(held[len(keep):])
			held = keep
		}
		place := func(it item) {
			c := it.customer()
			if c == "" {
				b = append(b, it) // unparseable: no customer to order by
				return
			}
			if inflight[c] || inBatch[c] || heldBy[c] > 0 {
				held = append(held, it)
				heldBy[c]++
				return
			}
			inBatch[c] = true
			b = append(b, it)
		}
		if in != nil && len(held) < 4*e.cfg.BatchSize {
			if len(b) == 0 {
				select {
				case it, ok := <-in:
					if !ok {
						in = nil
						continue
					}
					place(it)
				case c := <-done:
					release(c)
					continue
				}
			}
			if len(b) > 0 {
				timer.Reset(e.cfg.Linger)
			linger:
				for len(b) < e.cfg.BatchSize && len(held) < 4*e.cfg.BatchSize {
					select {
					case it, ok := <-in:
						if !ok {
							in = nil
							break linger
						}
						place(it)
					case c := <-done:
						release(c)
					case <-timer.C:
						break linger
					}
				}
				if !timer.Stop() {
					select {
					case <-timer.C:
					default:
					}
				}
			}
		}
		if len(b) == 0 {
			if len(held) >= 4*e.cfg.BatchSize && free < e.cfg.Workers {
				release(<-done) // backpressure: wait for a batch to finish
			}
			continue
		}
		custs := make([]string, 0, len(inBatch))
		for c := range inBatch {
			inflight[c] = true
			custs = append(custs, c)
		}
		free--
		go func(b []item) {
			e.process(ctx, b)
			done <- custs
		}(b)
	}
}
