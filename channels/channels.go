// Package channels holds what every channel adapter shares: the outbound
// message value, the provider's receipt, and the classification of send
// errors into transient (retry later) and permanent (record as failed).
//
// Adapters live in sub-packages (email, twilio); they know their provider,
// nothing about campaigns or consent. The engine decides, an adapter delivers.
package channels

import (
	"errors"
	"fmt"
)

// Kind names a channel.
type Kind string

// The channels Dialogwerk sends through.
const (
	Email    Kind = "email"
	SMS      Kind = "sms"
	WhatsApp Kind = "whatsapp"
)

// Valid reports whether k is a known channel.
func (k Kind) Valid() bool {
	switch k {
	case Email, SMS, WhatsApp:
		return true
	}
	return false
}

// Message is one rendered message ready for hand-off to a provider.
type Message struct {
	// Key is the message's idempotency key (unique per decision and channel).
	// Adapters pass it to the provider where the protocol allows (the email
	// Message-ID, for instance); it never contains personal data.
	Key string
	// Channel the message goes out on.
	Channel Kind
	// To is the recipient: an email address, or an E.164 phone number
	// (without the "whatsapp:" prefix; the adapter adds it).
	To string
	// ToName is the recipient's display name for email (optional).
	ToName string
	// Subject line (email only).
	Subject string
	// Text is the plain-text body (the SMS/WhatsApp body, the email text part).
	Text string
	// HTML is the HTML body of an email (already escaped by the renderer).
	HTML string
	// ContentSID names an approved WhatsApp template (Twilio Content API);
	// when set, ContentVariables fill it and Text is only the preview.
	ContentSID string
	// ContentVariables fill the template's numbered placeholders.
	ContentVariables map[string]string
	// Marketing marks advertising (adapters add unsubscribe headers where the
	// channel has them).
	Marketing bool
}

// Receipt is what the provider answered when it accepted a message.
type Receipt struct {
	// ProviderID is the provider's id for the message (Twilio's SM… sid, the
	// SMTP server's queue id or our Message-ID).
	ProviderID string
	// Segments is the number of billed SMS segments (0 for other channels).
	Segments int
	// Attempts is how many hand-offs it took (set by retrying decorators;
	// 0 means one).
	Attempts int
}

// ErrPermanent marks a failure that will not go away by retrying (invalid
// recipient, rejected content, authentication). ErrTransient marks one that
// may (rate limit, provider 5xx, timeout, SMTP 4xx).
var (
	ErrPermanent = errors.New("permanent delivery failure")
	ErrTransient = errors.New("transient delivery failure")
)

// Failure is a classified delivery error with the provider's code.
type Failure struct {
	// Transient is true when retrying may succeed.
	Transient bool
	// Code is the provider's error code ("21211", "550", "timeout").
	Code string
	// Err is the underlying error.
	Err error
}

func (f *Failure) Error() string {
	kind := "permanent"
	if f.Transient {
		kind = "transient"
	}
	if f.Code != "" {
		return fmt.Sprintf("%s failure (code %s): %v", kind, f.Code, f.Err)
	}
	return fmt.Sprintf("%s failure: %v", kind, f.Err)
}

// Unwrap exposes the cause and the class sentinel to errors.Is.
func (f *Failure) Unwrap() []error {
	if f.Transient {
		return []error{f.Err, ErrTransient}
	}
	return []error{f.Err, ErrPermanent}
}

// Transient wraps err as a transient failure with the provider's code.
func Transient(code string, err error) error {
	return &Failure{Transient: true, Code: code, Err: err}
}

// Permanent wraps err as a permanent failure with the provider's code.
func Permanent(code string, err error) error {
	return &Failure{Transient: false, Code: code, Err: err}
}

// IsTransient reports whether err is worth retrying. Unclassified errors are
// treated as permanent: an adapter that does not know must not cause doubles.
func IsTransient(err error) bool {
	return errors.Is(err, ErrTransient)
}

// Code returns the provider code of a classified failure, or "".
func Code(err error) string {
	var f *Failure
	if errors.As(err, &f) {
		return f.Code
	}
	return ""
}
