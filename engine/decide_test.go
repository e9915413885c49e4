package engine_test

import (
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/engine"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	set, err := campaigns.LoadSeed()
	if err != nil {
		t.Fatal(err)
	}
	marketing := set.Match("contract.ending")[0]
	service := set.Match("billing.backpayment_expected")[0]
	all := func(channels.Kind) bool { return true }
	noWhatsApp := func(k channels.Kind) bool { return k != channels.WhatsApp }
	granted := func(ch channels.Kind, id int64) profiles.Consent {
		return profiles.Consent{ID: id, Channel: ch, Purpose: profiles.PurposeMarketing, Granted: true}
	}
	revoked := profiles.Consent{ID: 9, Channel: channels.SMS, Purpose: profiles.PurposeMarketing, Granted: false,
		RecordedAt: time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC)}
	tests := []struct {
		name      string
		c         *campaigns.Campaign
		p         profiles.Profile
		available func(channels.Kind) bool
		want      engine.Choice
	}{
		{"preferred with consent", marketing,
			profiles.Profile{PreferredChannel: channels.SMS, Mobile: "+4915100000001", Email: "a@b.example", Consents: []profiles.Consent{granted(channels.SMS, 4)}},
			all, engine.Choice{Send: true, Channel: channels.SMS, Address: "+4915100000001", LegalBasis: "consent", ConsentID: 4, Reason: "preferred channel sms"}},
		{"revoked preferred falls back", marketing,
			profiles.Profile{PreferredChannel: channels.SMS, Mobile: "+4915100000001", Email: "a@b.example", Consents: []profiles.Consent{revoked, granted(channels.Email, 5)}},
			all, engine.Choice{Send: true, Channel: channels.Email, Address: "a@b.example", LegalBasis: "consent", ConsentID: 5,
				Reason: "fallback to email (sms: consent revoked on 2026-10-01)"}},
		{"consent on whatsapp only, channel not configured", marketing,
			profiles.Profile{PreferredChannel: channels.WhatsApp, Mobile: "+4915100000001", Consents: []profiles.Consent{granted(channels.WhatsApp, 6)}},
			noWhatsApp, engine.Choice{Reason: "not sent: whatsapp: channel not configured; email: no address; sms: no consent"}},
		{"marketing consent for email does not cover sms", marketing,
			profiles.Profile{PreferredChannel: channels.SMS, Mobile: "+4915100000001", Consents: []profiles.Consent{granted(channels.Email, 7)}},
			all, engine.Choice{Reason: "not sent: sms: no consent; email: no address; whatsapp: no consent"}},
		{"service needs no consent", service,
			profiles.Profile{PreferredChannel: channels.WhatsApp, Mobile: "+4915100000001"},
			all, engine.Choice{Send: true, Channel: channels.WhatsApp, Address: "+4915100000001", LegalBasis: "contract", Reason: "preferred channel whatsapp"}},
		{"service without any address", service, profiles.Profile{},
			all, engine.Choice{Reason: "not sent: email: no address; sms: no address; whatsapp: no address"}},
		{"no preference takes campaign order", service, profiles.Profile{Mobile: "+4915100000001", Email: "a@b.example"},
			all, engine.Choice{Send: true, Channel: channels.Email, Address: "a@b.example", LegalBasis: "contract",
				Reason: "no preferred channel; first allowed in campaign order: email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := engine.Decide(tt.c, &tt.p, tt.available)
			if got != tt.want {
				t.Errorf("Decide =\n  %+v\nwant\n  %+v", got, tt.want)
			}
		})
	}
}
