// Package profiles holds what Dialogwerk knows about a customer — reduced to
// what triggers communication: contact addresses, preferred channel,
// contracts with their ends and notice periods, interests, churn index — and
// the consent ledger. The Store reads and writes them in PostgreSQL.
package profiles

import (
	"errors"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
)

// ErrNotFound is returned when a customer does not exist.
var ErrNotFound = errors.New("customer not found")

// Purposes of communication. Marketing needs a granted consent for the exact
// channel; service and legally required messages need a reachable address.
const (
	PurposeMarketing = "marketing"
	PurposeService   = "service"
	PurposeLegal     = "legal"
)

// Profile is one customer.
type Profile struct {
	ID               string
	Salutation       string // "Frau", "Herr" or "" (neutral)
	FirstName        string
	LastName         string
	Birthday         time.Time // zero when unknown
	Language         string
	Email            string // "" when none
	Mobile           string // E.164, "" when none
	Street           string
	Postcode         string
	City             string
	InSupplyArea     bool
	PreferredChannel channels.Kind // "" when the customer never said
	ChurnIndex       *float64      // 0..1, nil when unknown
	Contracts        []Contract
	Interests        []Interest
	// Consents holds the current state per channel × purpose (the newest
	// ledger entry of each).
	Consents []Consent
}

// Contract is one supply contract.
type Contract struct {
	ID                    string
	Product               string // strom, gas, wasser, waerme
	Tariff                string
	BasicSupply           bool // Grundversorgung
	StartsOn              time.Time
	EndsOn                time.Time // zero: open-ended
	NoticePeriodDays      int
	MonthlyInstallmentEUR float64
}

// Interest is a topic the customer cares about, with strength 0..1.
type Interest struct {
	Topic    string // pool, parking, transit, museum, …
	Strength float64
	Source   string // citycard, survey, agent
}

// Consent is one entry of the consent ledger.
type Consent struct {
	ID         int64
	CustomerID string
	Channel    channels.Kind
	Purpose    string
	Granted    bool
	RecordedAt time.Time
	Touchpoint string         // web, service_center, sms, api, …
	Evidence   map[string]any // wording version, double-opt-in times, agent id
}

// Address returns the customer's address for a channel ("" if none). SMS and
// WhatsApp both use the mobile number.
func (p *Profile) Address(ch channels.Kind) string {
	switch ch {
	case channels.Email:
		return p.Email
	case channels.SMS, channels.WhatsApp:
		return p.Mobile
	}
	return ""
}

// ConsentFor returns the current consent state for channel × purpose; ok is
// false when the ledger has no entry (which means: not granted).
func (p *Profile) ConsentFor(ch channels.Kind, purpose string) (Consent, bool) {
	for _, c := range p.Consents {
		if c.Channel == ch && c.Purpose == purpose {
			return c, true
		}
	}
	return Consent{}, false
}

// Contract returns the contract with the given id.
func (p *Profile) Contract(id string) (Contract, bool) {
	for _, c := range p.Contracts {
		if c.ID == id {
			return c, true
		}
	}
	return Contract{}, false
}

// Interest returns the strength of interest in topic (0 when none).
func (p *Profile) Interest(topic string) float64 {
	for _, in := range p.Interests {
		if in.Topic == topic {
			return in.Strength
		}
	}
	return 0
}
