// Package eventbus is Dialogwerk's spine on NATS JetStream: it provisions the
// EVENTS and DEADLETTER streams, publishes events (the one way in, used by
// the webhook and by in-process sources alike) and hands the engine its
// durable consumer.
//
// Subjects: events.<tenant>.<type> and deadletter.<tenant>.<type>. Every
// event is published with Nats-Msg-Id = its CloudEvents id, so a re-sent
// event within the duplicate window is recognised and not stored twice.
package eventbus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dialogwerk/dialogwerk/triggers/events"
	"github.com/dialogwerk/dialogwerk/triggers/webhook"
)

// Stream names and headers.
const (
	EventsStream     = "EVENTS"
	DeadLetterStream = "DEADLETTER"
	// HeaderSender names the authenticated source system of an event.
	HeaderSender = "Dialogwerk-Sender"
	// HeaderReason says why an event was dead-lettered.
	HeaderReason = "Dialogwerk-Reason"
	// HeaderEventID repeats the CloudEvents id on dead letters.
	HeaderEventID = "Dialogwerk-Event-Id"
	// HeaderOrigSeq is the EVENTS sequence a dead letter came from.
	HeaderOrigSeq = "Dialogwerk-Stream-Seq"
)

var tenantRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Config configures the bus.
type Config struct {
	// URL of an external NATS server or cluster ("nats://a:4222,nats://b:4222").
	// Empty means Embedded must be set.
	URL string
	// Embedded is the in-process server to connect to when URL is empty.
	Embedded *Embedded
	// Tenant is the utility this deployment serves; one subject token.
	// Default "musterstadt".
	Tenant string
	// Replicas of the streams (3 on a cluster); default 1.
	Replicas int
	// Retention is how long events stay in the stream (for replay and for an
	// engine that was down); default 30 days.
	Retention time.Duration
	// DuplicateWindow is how long JetStream remembers event ids; default 10 min.
	// Older re-sends are still caught by the engine's unique keys.
	DuplicateWindow time.Duration
	// Name is the connection name shown by NATS monitoring; default "dialogwerk".
	Name string
}

// Bus is a connection to JetStream with the streams in place.
type Bus struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
}

// Connect connects and creates or updates the streams idempotently.
func Connect(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.Tenant == "" {
		cfg.Tenant = "musterstadt"
	}
	if !tenantRe.MatchString(cfg.Tenant) {
		return nil, fmt.Errorf("eventbus: tenant %q must be lower-case letters, digits, '-' or '_'", cfg.Tenant)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = 10 * time.Minute
	}
	if cfg.Name == "" {
		cfg.Name = "dialogwerk"
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
	url := cfg.URL
	switch {
	case url != "":
	case cfg.Embedded != nil:
		opts = append(opts, nats.InProcessServer(cfg.Embedded.Server()))
	default:
		return nil, errors.New("eventbus: neither URL nor embedded server configured")
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	b := &Bus{cfg: cfg, nc: nc, js: js}
	if err := b.provision(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return b, nil
}

func (b *Bus) provision(ctx context.Context) error {
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "Dialogwerk events: billing, CRM, agents, schedules, channel callbacks",
		Subjects:    []string{"events.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      b.cfg.Retention,
		Duplicates:  b.cfg.DuplicateWindow,
		Replicas:    b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("provisioning stream %s: %w", EventsStream, err)
	}
	_, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DeadLetterStream,
		Description: "Events that failed processing, with the reason; replayable",
		Subjects:    []string{"deadletter.>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  b.cfg.DuplicateWindow,
		Replicas:    b.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("provisioning stream %s: %w", DeadLetterStream, err)
	}
	return nil
}

// Tenant returns the configured tenant.
func (b *Bus) Tenant() string { return b.cfg.Tenant }

// JetStream exposes the JetStream context (for consumers and tests).
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn exposes the NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Subject is the subject an event of type typ is stored under.
func (b *Bus) Subject(typ string) string { return "events." + b.cfg.Tenant + "." + typ }

// Close drains the connection (flushing pending publishes) and closes it.
func (b *Bus) Close() {
	if err := b.nc.Drain(); err != nil {
		b.nc.Close()
	}
}

// Publish stores events on the EVENTS stream and returns once JetStream has
// acknowledged every one of them. sender names the authenticated source.
// It is safe for concurrent use.
func (b *Bus) Publish(ctx context.Context, sender string, evs []events.Event) (webhook.Stored, error) {
	var st webhook.Stored
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for i := range evs {
		m := nats.NewMsg(b.Subject(evs[i].Type))
		m.Data = evs[i].Raw
		if sender != "" {
			m.Header.Set(HeaderSender, sender)
		}
		f, err := b.js.PublishMsgAsync(m, jetstream.WithMsgID(evs[i].ID), jetstream.WithExpectStream(EventsStream))
		if err != nil {
			return st, fmt.Errorf("publishing event %d: %w", i, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				st.Duplicates++
			} else {
				st.Accepted++
			}
		case err := <-f.Err():
			return st, fmt.Errorf("storing event %d: %w", i, err)
		case <-ctx.Done():
			return st, fmt.Errorf("waiting for JetStream to store event %d: %w", i, ctx.Err())
		}
	}
	return st, nil
}

// DeadLetter stores a failed event with the reason on the DEADLETTER stream.
// seq is the event's EVENTS stream sequence; it makes a repeated dead-letter
// of the same delivery a duplicate.
func (b *Bus) DeadLetter(ctx context.Context, seq uint64, eventID, typ string, raw []byte, reason string) error {
	if typ == "" || !typeToken(typ) {
		typ = "invalid"
	}
	m := nats.NewMsg("deadletter." + b.cfg.Tenant + "." + typ)
	m.Data = raw
	m.Header.Set(HeaderReason, reason)
	m.Header.Set(HeaderEventID, eventID)
	m.Header.Set(HeaderOrigSeq, strconv.FormatUint(seq, 10))
	if _, err := b.js.PublishMsg(ctx, m, jetstream.WithMsgID("dl-"+strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("dead-lettering event: %w", err)
	}
	return nil
}

// typeToken reports whether s can follow "deadletter.<tenant>." in a
// subject: printable ASCII without wildcards, and no empty token (a leading,
// trailing or doubled '.'), which no stream would store.
func typeToken(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '*' || c == '>' || c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// ConsumerConfig configures the engine's durable consumer.
type ConsumerConfig struct {
	// Name of the durable consumer; default "engine". All engine processes
	// share it and so share the work.
	Name string
	// AckWait before an unacknowledged event is redelivered; default 30 s.
	AckWait time.Duration
	// MaxAckPending bounds events in flight across all engines; default 20,000.
	MaxAckPending int
}

// Consumer creates or updates the durable pull consumer on this tenant's
// events and returns it.
func (b *Bus) Consumer(ctx context.Context, cfg ConsumerConfig) (jetstream.Consumer, error) {
	if cfg.Name == "" {
		cfg.Name = "engine"
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.MaxAckPending <= 0 {
		cfg.MaxAckPending = 20000
	}
	c, err := b.js.CreateOrUpdateConsumer(ctx, EventsStream, jetstream.ConsumerConfig{
		Durable:       cfg.Name,
		Description:   "Dialogwerk engine",
		FilterSubject: "events." + b.cfg.Tenant + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("provisioning consumer %s: %w", cfg.Name, err)
	}
	return c, nil
}
