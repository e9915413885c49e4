package eventbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is an event kept on the DEADLETTER stream.
type DeadLetter struct {
	// Seq is the dead letter's sequence on the DEADLETTER stream.
	Seq uint64 `json:"seq"`
	// EventID is the CloudEvents id (empty when the bytes were no event).
	EventID string `json:"event_id"`
	// Type is the event type the subject names.
	Type string `json:"type"`
	// Reason processing failed.
	Reason string `json:"reason"`
	// At is when it was dead-lettered.
	At   time.Time `json:"at"`
	data []byte
}

// DeadLetters lists up to limit dead letters of this tenant, oldest first.
func (b *Bus) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	st, err := b.js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", DeadLetterStream, err)
	}
	prefix := "deadletter." + b.cfg.Tenant + "."
	var out []DeadLetter
	for seq := uint64(1); len(out) < limit; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(prefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("reading dead letters: %w", err)
		}
		out = append(out, DeadLetter{Seq: m.Sequence, EventID: m.Header.Get(HeaderEventID),
			Type: strings.TrimPrefix(m.Subject, prefix), Reason: m.Header.Get(HeaderReason), At: m.Time, data: m.Data})
		seq = m.Sequence + 1
	}
	return out, nil
}

// Replay puts up to limit dead letters back on the EVENTS stream, oldest
// first, and removes each from DEADLETTER once stored. The engine processes
// them as new deliveries of the same events (same ids, so nothing already
// decided is decided twice). It returns how many were replayed.
func (b *Bus) Replay(ctx context.Context, limit int) (int, error) {
	dls, err := b.DeadLetters(ctx, limit)
	if err != nil {
		return 0, err
	}
	st, err := b.js.Stream(ctx, DeadLetterStream)
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w", DeadLetterStream, err)
	}
	n := 0
	for _, dl := range dls {
		m := nats.NewMsg(b.Subject(dl.Type))
		m.Data = dl.data
		m.Header.Set("Dialogwerk-Replay-Of", strconv.FormatUint(dl.Seq, 10))
		// A fresh message id: the event's own id may still be inside the
		// duplicate window.
		if _, err := b.js.PublishMsg(ctx, m, jetstream.WithMsgID("replay-"+strconv.FormatUint(dl.Seq, 10))); err != nil {
			return n, fmt.Errorf("replaying dead letter %d: %w", dl.Seq, err)
		}
		if err := st.DeleteMsg(ctx, dl.Seq); err != nil {
			return n, fmt.Errorf("removing replayed dead letter %d: %w", dl.Seq, err)
		}
		n++
	}
	return n, nil
}
