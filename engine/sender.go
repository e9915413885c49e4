package engine

import (
	"context"

	"github.com/dialogwerk/dialogwerk/channels"
)

// Sender hands one rendered message to a provider. Implementations must be
// safe for concurrent use, honour ctx, and classify errors with
// channels.Transient / channels.Permanent.
type Sender interface {
	Send(ctx context.Context, msg channels.Message) (channels.Receipt, error)
}
