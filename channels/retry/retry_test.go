package retry_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/retry"
)

// script answers with the queued errors in turn, then succeeds. It is a
// scripted provider for the decorator alone; the adapters' own retry
// behaviour is tested against the real local servers.
type script struct {
	errs  []error
	calls atomic.Int32
}

func (s *script) Send(ctx context.Context, _ channels.Message) (channels.Receipt, error) {
	n := int(s.calls.Add(1)) - 1
	if n < len(s.errs) {
		return channels.Receipt{}, s.errs[n]
	}
	return channels.Receipt{ProviderID: "ok"}, nil
}

func TestRetry(t *testing.T) {
	t.Parallel()
	tr := channels.Transient("503", errors.New("unavailable"))
	perm := channels.Permanent("21211", errors.New("invalid number"))
	fast := retry.Policy{MaxAttempts: 4, Initial: time.Millisecond, Max: 2 * time.Millisecond}
	tests := []struct {
		name      string
		errs      []error
		wantCalls int32
		wantErr   error
	}{
		{"success first time", nil, 1, nil},
		{"transient then success", []error{tr, tr}, 3, nil},
		{"permanent stops at once", []error{perm}, 1, channels.ErrPermanent},
		{"transient exhausted", []error{tr, tr, tr, tr, tr}, 4, channels.ErrTransient},
		{"unclassified is not retried", []error{errors.New("?")}, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &script{errs: tt.errs}
			rc, err := retry.Wrap(s, fast).Send(context.Background(), channels.Message{Key: "k"})
			if got := s.calls.Load(); got != tt.wantCalls {
				t.Errorf("calls = %d, want %d", got, tt.wantCalls)
			}
			if tt.name == "unclassified is not retried" {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if rc.Attempts != int(tt.wantCalls) {
					t.Errorf("attempts = %d, want %d", rc.Attempts, tt.wantCalls)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var g *retry.GaveUp
			if !errors.As(err, &g) || g.Attempts() != int(tt.wantCalls) {
				t.Errorf("GaveUp attempts wrong: %v", err)
			}
		})
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	t.Parallel()
	tr := channels.Transient("429", errors.New("slow down"))
	s := &script{errs: []error{tr, tr, tr, tr, tr, tr, tr, tr}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := retry.Wrap(s, retry.Policy{MaxAttempts: 100, Initial: time.Second}).Send(ctx, channels.Message{})
	if err == nil {
		t.Fatal("want error")
	}
	if s.calls.Load() != 1 {
		t.Errorf("calls = %d, want 1 (cancelled during the first wait)", s.calls.Load())
	}
}
