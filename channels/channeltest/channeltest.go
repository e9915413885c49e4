// Package channeltest is the conformance suite every channel adapter must
// pass, run against the adapter's real (local) provider server.
package channeltest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
)

// Sender is the adapter under test (the same method set as engine.Sender).
type Sender interface {
	Send(ctx context.Context, msg channels.Message) (channels.Receipt, error)
}

// Received is what the provider server got, reduced to comparable fields.
type Received struct {
	// To as the adapter addressed it, without channel prefixes ("whatsapp:").
	To string
	// Subject (email) or "".
	Subject string
	// Text is the plain-text body as received (decoded from MIME for email).
	Text string
	// ProviderID the server assigned or saw (must match the receipt).
	ProviderID string
}

// Harness connects the suite to one adapter and its server.
type Harness struct {
	// Channel is the kind of message the adapter sends.
	Channel channels.Kind
	// Sender is the adapter, pointed at the server.
	Sender Sender
	// Address returns a distinct valid recipient for index i.
	Address func(i int) string
	// InvalidAddress is a recipient the adapter must refuse as a permanent
	// failure (ideally without contacting the server).
	InvalidAddress string
	// Received returns every message the server accepted for recipient to.
	Received func(t *testing.T, to string) []Received
	// FailNext makes the server fail the next send to recipient to,
	// transiently (rate limit, 5xx, SMTP 4xx) or permanently.
	FailNext func(t *testing.T, to string, transient bool)
}

// Run runs the conformance suite. Each subtest uses its own recipients so the
// harness's server can be shared.
func Run(t *testing.T, h Harness) {
	t.Helper()
	msg := func(i int, key string) channels.Message {
		return channels.Message{
			Key:     key,
			Channel: h.Channel,
			To:      h.Address(i),
			ToName:  "Erika Mustermann",
			Subject: "Ihr Vertrag endet bald – Grüße aus Musterstadt",
			Text:    fmt.Sprintf("Hallo Frau Mustermann, Ihr Vertrag endet am 31.12. Nachricht %d. Grüße, Ihre Stadtwerke", i),
			HTML:    fmt.Sprintf("<p>Hallo Frau Mustermann, Ihr Vertrag endet am 31.12. Nachricht %d.</p>", i),
		}
	}
	ctx := context.Background()

	t.Run("delivers once with content and receipt", func(t *testing.T) {
		m := msg(1, "conf-deliver-1")
		rc, err := h.Sender.Send(ctx, m)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if rc.ProviderID == "" {
			t.Fatal("receipt has no provider id")
		}
		got := waitReceived(t, h, m.To, 1)
		if len(got) != 1 {
			t.Fatalf("server received %d messages, want 1", len(got))
		}
		if got[0].Text == "" || !containsFold(got[0].Text, "Nachricht 1") {
			t.Errorf("received text %q does not carry the body", got[0].Text)
		}
		if h.Channel == channels.Email && got[0].Subject != m.Subject {
			t.Errorf("subject = %q, want %q", got[0].Subject, m.Subject)
		}
		if got[0].ProviderID != "" && got[0].ProviderID != rc.ProviderID {
			t.Errorf("server id %q != receipt id %q", got[0].ProviderID, rc.ProviderID)
		}
	})

	t.Run("transient failure is classified transient", func(t *testing.T) {
		m := msg(2, "conf-transient-2")
		h.FailNext(t, m.To, true)
		_, err := h.Sender.Send(ctx, m)
		if err == nil {
			t.Fatal("Send succeeded, want a transient failure")
		}
		if !channels.IsTransient(err) {
			t.Fatalf("error %v not classified transient", err)
		}
		// The server recovers: the next attempt goes through.
		if _, err := h.Sender.Send(ctx, m); err != nil {
			t.Fatalf("second Send: %v", err)
		}
		if got := waitReceived(t, h, m.To, 1); len(got) != 1 {
			t.Fatalf("server received %d messages, want 1", len(got))
		}
	})

	t.Run("permanent failure is classified permanent", func(t *testing.T) {
		m := msg(3, "conf-permanent-3")
		h.FailNext(t, m.To, false)
		_, err := h.Sender.Send(ctx, m)
		if err == nil {
			t.Fatal("Send succeeded, want a permanent failure")
		}
		if channels.IsTransient(err) || !errors.Is(err, channels.ErrPermanent) {
			t.Fatalf("error %v not classified permanent", err)
		}
	})

	t.Run("invalid address is permanent", func(t *testing.T) {
		m := msg(4, "conf-invalid-4")
		m.To = h.InvalidAddress
		_, err := h.Sender.Send(ctx, m)
		if err == nil || !errors.Is(err, channels.ErrPermanent) {
			t.Fatalf("Send to %q: err = %v, want permanent", h.InvalidAddress, err)
		}
	})

	t.Run("cancelled context stops the send", func(t *testing.T) {
		m := msg(5, "conf-cancel-5")
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := h.Sender.Send(cctx, m); err == nil {
			t.Fatal("Send with cancelled context succeeded")
		}
	})

	t.Run("concurrent sends all arrive once", func(t *testing.T) {
		const n = 40
		var wg sync.WaitGroup
		errs := make(chan error, n)
		ids := make(chan string, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				rc, err := h.Sender.Send(ctx, msg(100+i, fmt.Sprintf("conf-conc-%d", i)))
				if err != nil {
					errs <- err
					return
				}
				ids <- rc.ProviderID
			}(i)
		}
		wg.Wait()
		close(errs)
		close(ids)
		for err := range errs {
			t.Errorf("concurrent Send: %v", err)
		}
		seen := map[string]bool{}
		for id := range ids {
			if seen[id] {
				t.Errorf("provider id %q returned twice", id)
			}
			seen[id] = true
		}
		for i := 0; i < n; i++ {
			if got := waitReceived(t, h, h.Address(100+i), 1); len(got) != 1 {
				t.Errorf("recipient %d received %d messages, want 1", i, len(got))
			}
		}
	})
}

// waitReceived polls the harness until want messages arrived for to, or 5 s
// passed; it returns what arrived (SMTP servers may store asynchronously).
func waitReceived(t *testing.T, h Harness, to string, want int) []Received {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := h.Received(t, to)
		if len(got) >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
