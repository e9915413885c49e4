// Package retry wraps a channel adapter so transient failures (rate limits,
// provider 5xx, timeouts, SMTP 4xx) are retried with exponential backoff and
// jitter; permanent failures return at once.
package retry

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/dialogwerk/dialogwerk/channels"
)

// Sender is the adapter being wrapped.
type Sender interface {
	Send(ctx context.Context, msg channels.Message) (channels.Receipt, error)
}

// Policy says how to retry. Zero values take the defaults.
type Policy struct {
	// MaxAttempts including the first; default 5.
	MaxAttempts int
	// Initial wait before the second attempt; default 200 ms.
	Initial time.Duration
	// Max wait between attempts; default 5 s.
	Max time.Duration
	// MaxElapsed bounds the whole hand-off; default 30 s.
	MaxElapsed time.Duration
}

// GaveUp is the error after the last attempt; it carries the attempt count.
type GaveUp struct {
	Tries int
	Err   error
}

func (g *GaveUp) Error() string { return fmt.Sprintf("after %d attempt(s): %v", g.Tries, g.Err) }

// Unwrap keeps the classification visible to errors.Is.
func (g *GaveUp) Unwrap() error { return g.Err }

// Attempts reports the number of attempts made.
func (g *GaveUp) Attempts() int { return g.Tries }

// Wrapped is a retrying sender.
type Wrapped struct {
	next Sender
	p    Policy
}

// Wrap returns s with retries.
func Wrap(s Sender, p Policy) *Wrapped {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.Initial <= 0 {
		p.Initial = 200 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 5 * time.Second
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = 30 * time.Second
	}
	return &Wrapped{next: s, p: p}
}

// Send hands msg to the wrapped sender, retrying transient failures.
func (w *Wrapped) Send(ctx context.Context, msg channels.Message) (channels.Receipt, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = w.p.Initial, w.p.Max
	tries := 0
	rc, err := backoff.Retry(ctx, func() (channels.Receipt, error) {
		tries++
		rc, err := w.next.Send(ctx, msg)
		if err != nil && !channels.IsTransient(err) {
			return rc, backoff.Permanent(err)
		}
		return rc, err
	}, backoff.WithBackOff(b), backoff.WithMaxTries(uint(w.p.MaxAttempts)), backoff.WithMaxElapsedTime(w.p.MaxElapsed))
	if err != nil {
		return rc, &GaveUp{Tries: tries, Err: err}
	}
	rc.Attempts = tries
	return rc, nil
}
