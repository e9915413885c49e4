package engine

import (
	"fmt"
	"strings"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/engine/journal"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
)

// Choice is the outcome of the decision rules for one campaign and customer:
// which channel, to which address, on which legal basis — or why not.
type Choice struct {
	Send       bool
	Channel    channels.Kind
	Address    string
	LegalBasis string
	ConsentID  int64
	// Reason explains the choice in words an agent understands.
	Reason string
}

// candidate is one channel under consideration, with the veto that ruled it
// out ("" while it is still allowed).
type candidate struct {
	channel   channels.Kind
	address   string
	consentID int64
	veto      string
}

// A rule vetoes candidates. Rules run in order; later issues add contact
// pressure, quiet hours and the WhatsApp window as further rules.
type rule func(c *campaigns.Campaign, p *profiles.Profile, cand *candidate)

// ruleAvailable: the deployment must have the channel configured.
func ruleAvailable(available func(channels.Kind) bool) rule {
	return func(_ *campaigns.Campaign, _ *profiles.Profile, cand *candidate) {
		if !available(cand.channel) {
			cand.veto = "channel not configured"
		}
	}
}

// ruleAddress: a channel needs an address.
func ruleAddress(_ *campaigns.Campaign, p *profiles.Profile, cand *candidate) {
	cand.address = p.Address(cand.channel)
	if cand.address == "" {
		cand.veto = "no address"
	}
}

// ruleConsent: marketing needs a granted marketing consent for this exact
// channel; service and legal messages need none.
func ruleConsent(c *campaigns.Campaign, p *profiles.Profile, cand *candidate) {
	if c.Purpose != profiles.PurposeMarketing {
		return
	}
	con, ok := p.ConsentFor(cand.channel, profiles.PurposeMarketing)
	switch {
	case !ok:
		cand.veto = "no consent"
	case !con.Granted:
		cand.veto = "consent revoked on " + con.RecordedAt.Format("2006-01-02")
	default:
		cand.consentID = con.ID
	}
}

// Decide applies the rules to the customer's preferred channel first, then to
// the campaign's fallback order, and returns the first allowed channel.
// available says which channels this deployment can send on.
func Decide(c *campaigns.Campaign, p *profiles.Profile, available func(channels.Kind) bool) Choice {
	rules := []rule{ruleAvailable(available), ruleAddress, ruleConsent}
	order := make([]channels.Kind, 0, len(c.Channels)+1)
	offered := func(ch channels.Kind) bool {
		for _, x := range c.Channels {
			if x == ch {
				return true
			}
		}
		return false
	}
	if p.PreferredChannel != "" && offered(p.PreferredChannel) {
		order = append(order, p.PreferredChannel)
	}
	for _, ch := range c.Channels {
		if ch != p.PreferredChannel {
			order = append(order, ch)
		}
	}
	var vetoes []string
	for i, ch := range order {
		cand := candidate{channel: ch}
		for _, r := range rules {
			if r(c, p, &cand); cand.veto != "" {
				break
			}
		}
		if cand.veto != "" {
			vetoes = append(vetoes, fmt.Sprintf("%s: %s", ch, cand.veto))
			continue
		}
		ch := Choice{Send: true, Channel: ch, Address: cand.address, ConsentID: cand.consentID}
		switch c.Purpose {
		case profiles.PurposeMarketing:
			ch.LegalBasis = journal.BasisConsent
		case profiles.PurposeLegal:
			ch.LegalBasis = journal.BasisLegalObligation
		default:
			ch.LegalBasis = journal.BasisContract
		}
		switch {
		case i == 0 && p.PreferredChannel == ch.Channel:
			ch.Reason = "preferred channel " + string(ch.Channel)
		case p.PreferredChannel == "":
			ch.Reason = fmt.Sprintf("no preferred channel; first allowed in campaign order: %s", ch.Channel)
		case !offered(p.PreferredChannel):
			ch.Reason = fmt.Sprintf("campaign does not use preferred channel %s; fallback to %s", p.PreferredChannel, ch.Channel)
		default:
			ch.Reason = fmt.Sprintf("fallback to %s (%s)", ch.Channel, strings.Join(vetoes, "; "))
		}
		return ch
	}
	return Choice{Reason: "not sent: " + strings.Join(vetoes, "; ")}
}
