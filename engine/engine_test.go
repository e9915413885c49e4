package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/twiliosim"
	"github.com/dialogwerk/dialogwerk/engine/journal"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/triggers/eventbus"
	"github.com/dialogwerk/dialogwerk/triggers/events"
)

func TestDecisionsEndToEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.importProfiles(
		customer("K1", channels.SMS, true, true, channels.SMS, channels.Email), // preferred sms, consent
		customer("K2", channels.WhatsApp, true, true, channels.Email),          // preferred whatsapp w/o consent → email
		customer("K3", channels.Email, true, false),                            // no consent anywhere
		customer("K4", channels.WhatsApp, false, true, channels.WhatsApp),      // whatsapp
		customer("K5", channels.SMS, false, false),                             // service message, no address
		customer("K6", channels.Email, true, true),                             // service message, no consent needed
		customer("K7", "", true, true, channels.SMS, channels.WhatsApp),        // no preference: campaign order
	)
	h.publish(
		event("e1", events.TypeContractEnding, "K1"),
		event("e2", events.TypeContractEnding, "K2"),
		event("e3", events.TypeCancellationEnquiry, "K3"),
		event("e4", events.TypeCancellationEnquiry, "K4"),
		event("e5", events.TypeBackpaymentExpected, "K5"),
		event("e6", events.TypeBackpaymentExpected, "K6"),
		event("e7", events.TypeContractEnding, "K7"),
	)
	h.waitOutcomes(7)

	tests := []struct {
		cust, channel, status, basis, reason string
		send                                 bool
	}{
		{"K1", "sms", "sent", "consent", "preferred channel sms", true},
		{"K2", "email", "sent", "consent", "fallback to email (whatsapp: no consent)", true},
		{"K3", "", "", "", "not sent: email: no consent; sms: no address; whatsapp: no address", false},
		{"K4", "whatsapp", "sent", "consent", "preferred channel whatsapp", true},
		{"K5", "", "", "", "not sent: sms: no address; email: no address; whatsapp: no address", false},
		{"K6", "email", "sent", "contract", "preferred channel email", true},
		{"K7", "sms", "sent", "consent", "no preferred channel; first allowed in campaign order: sms", true},
	}
	for _, tt := range tests {
		t.Run(tt.cust, func(t *testing.T) {
			es := h.timeline(tt.cust)
			if len(es) != 1 {
				t.Fatalf("%d decisions, want 1", len(es))
			}
			e := es[0]
			if e.Send != tt.send || e.Channel != tt.channel || e.LegalBasis != tt.basis || e.Reason != tt.reason {
				t.Errorf("decision = send %v channel %q basis %q reason %q; want %v %q %q %q",
					e.Send, e.Channel, e.LegalBasis, e.Reason, tt.send, tt.channel, tt.basis, tt.reason)
			}
			if tt.basis == "consent" && e.ConsentID == 0 {
				t.Error("marketing message without a consent ledger id")
			}
			if !tt.send {
				if e.Message != nil {
					t.Errorf("suppressed decision has a message %+v", e.Message)
				}
				return
			}
			if e.Message == nil || e.Message.Status != tt.status || e.Message.ProviderID == "" || e.Message.DispatchedAt == nil {
				t.Fatalf("message = %+v", e.Message)
			}
			if !strings.Contains(e.Message.Text, "Mustermann-"+tt.cust) {
				t.Errorf("text not personalised: %q", e.Message.Text)
			}
		})
	}

	// What the providers got: exactly one message each, with our content.
	if got := h.sim.MessagesTo(mobileOf("K1")); len(got) != 1 || got[0].Channel != "sms" || !strings.Contains(got[0].Body, "Hallenbad") {
		t.Errorf("K1 sms at provider = %+v", got)
	}
	if got := h.sim.MessagesTo(mobileOf("K4")); len(got) != 1 || got[0].Channel != "whatsapp" {
		t.Errorf("K4 whatsapp at provider = %+v", got)
	}
	mails := h.sink.Received("kunde-K2@test.example")
	if len(mails) != 1 {
		t.Fatalf("K2 got %d mails", len(mails))
	}
	if !strings.Contains(mails[0].Subject, "endet am 31.01.2027") || !strings.Contains(mails[0].HTML, "<strong>31.01.2027</strong>") || mails[0].Text == "" {
		t.Errorf("K2 mail = subject %q, html %q", mails[0].Subject, mails[0].HTML)
	}
	if len(h.sink.Received("kunde-K3@test.example")) != 0 {
		t.Error("K3 without consent got a mail")
	}
}

func mobileOf(id string) string { return customer(id, "", false, true).Mobile }

func TestRedeliveredEventIsNotSentTwice(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.importProfiles(customer("K1", channels.Email, true, false, channels.Email))
	ev := event("dup-1", events.TypeContractEnding, "K1")
	h.publish(ev)
	h.waitOutcomes(1)
	// The same CloudEvent arrives again after JetStream's duplicate window
	// (published under another message id): the engine must recognise it.
	if _, err := h.bus.JetStream().Publish(context.Background(), h.bus.Subject(ev.Type), ev.Raw, jetstream.WithMsgID("other-id")); err != nil {
		t.Fatal(err)
	}
	waitConsumerIdle(t, h)
	if n := len(h.sink.Received("kunde-K1@test.example")); n != 1 {
		t.Fatalf("customer got %d mails, want 1", n)
	}
	var decisions, messages int
	_ = h.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM messages)`).Scan(&decisions, &messages)
	if decisions != 1 || messages != 1 {
		t.Errorf("decisions=%d messages=%d, want 1 and 1", decisions, messages)
	}
}

// waitConsumerIdle waits until the engine acked everything in the stream.
func waitConsumerIdle(t *testing.T, h *harness) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := h.bus.JetStream().Consumer(ctx, eventbus.EventsStream, "engine")
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer not idle: pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUnknownCustomerIsDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(event("ghost-1", events.TypeContractEnding, "K404"))
	h.waitOutcomes(1)
	outcome, detail := h.outcome("ghost-1")
	if outcome != journal.OutcomeDeadLetter || !strings.Contains(detail, "unknown customer K404") {
		t.Fatalf("outcome %q %q", outcome, detail)
	}
	ctx := context.Background()
	st, err := h.bus.JetStream().Stream(ctx, eventbus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "deadletter.test."+events.TypeContractEnding)
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if !strings.Contains(m.Header.Get(eventbus.HeaderReason), "unknown customer") || m.Header.Get(eventbus.HeaderEventID) != "ghost-1" {
		t.Errorf("dead letter headers %v", m.Header)
	}
	if !strings.Contains(string(m.Data), `"ghost-1"`) {
		t.Error("dead letter does not keep the event")
	}
}

func TestUnknownTypeIsStoredWithoutCampaign(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.publish(event("cc-1", "citycard.used", "K1"))
	h.waitOutcomes(1)
	if outcome, _ := h.outcome("cc-1"); outcome != journal.OutcomeNoCampaign {
		t.Fatalf("outcome = %q", outcome)
	}
	var data string
	_ = h.pool.QueryRow(context.Background(), `SELECT data->>'facility' FROM events WHERE id = 'cc-1'`).Scan(&data)
	if data != "pool" {
		t.Errorf("event data not stored: %q", data)
	}
}

func TestProviderFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.importProfiles(
		customer("K1", channels.SMS, false, true, channels.SMS),
		customer("K22", channels.SMS, false, true, channels.SMS),
		customer("K3", channels.Email, true, false, channels.Email),
	)
	h.sim.FailNext(mobileOf("K1"), twiliosim.RateLimited())
	h.sim.FailNext(mobileOf("K1"), twiliosim.Unavailable())
	h.sim.FailNext(mobileOf("K22"), twiliosim.InvalidNumber())
	h.sink.FailNext("kunde-K3@test.example", 451)
	h.publish(event("f1", events.TypeContractEnding, "K1"), event("f2", events.TypeContractEnding, "K22"),
		event("f3", events.TypeContractEnding, "K3"))
	h.waitOutcomes(3)

	k1 := h.timeline("K1")[0].Message
	if k1.Status != journal.StatusSent || k1.Attempts != 3 {
		t.Errorf("K1 after 429 and 503: status %s attempts %d, want sent after 3", k1.Status, k1.Attempts)
	}
	k2 := h.timeline("K22")[0].Message
	if k2.Status != journal.StatusFailed || !strings.Contains(k2.Error, "21211") || k2.Attempts != 1 {
		t.Errorf("K22 invalid number: %+v", k2)
	}
	k3 := h.timeline("K3")[0].Message
	if k3.Status != journal.StatusSent || k3.Attempts != 2 {
		t.Errorf("K3 after SMTP 451: status %s attempts %d", k3.Status, k3.Attempts)
	}
	if n := len(h.sim.MessagesTo(mobileOf("K1"))); n != 1 {
		t.Errorf("K1 received %d SMS, want 1", n)
	}
}

func TestInterruptedHandOffIsNotResent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.importProfiles(customer("K1", channels.SMS, false, true, channels.SMS))
	ev := event("crash-1", events.TypeContractEnding, "K1")
	// A previous engine claimed the message and died during the hand-off.
	did := journal.DecisionID(ev.ID, "contract-ending-retention", "K1")
	mid := journal.MessageID(did, "sms")
	old := time.Now().Add(-time.Minute)
	if _, err := h.journal.Claim(context.Background(),
		[]journal.Decision{{ID: did, EventID: ev.ID, CampaignID: "contract-ending-retention", CampaignVersion: 1, CustomerID: "K1",
			Purpose: "marketing", Send: true, Channel: "sms", LegalBasis: "consent", Reason: "preferred channel sms", DecidedAt: old}},
		[]journal.Message{{ID: mid, DecisionID: did, Channel: "sms", Address: mobileOf("K1"), Text: "…", CreatedAt: old}}); err != nil {
		t.Fatal(err)
	}
	h.publish(ev)
	h.waitOutcomes(1)
	m := h.timeline("K1")[0].Message
	if m.ID != mid || m.Status != journal.StatusInterrupted {
		t.Fatalf("message = %+v, want interrupted", m)
	}
	if n := len(h.sim.MessagesTo(mobileOf("K1"))); n != 0 {
		t.Errorf("interrupted message was sent again (%d)", n)
	}
}

func TestDeterministicIDs(t *testing.T) {
	t.Parallel()
	a := journal.DecisionID("e", "c", "k")
	if a != journal.DecisionID("e", "c", "k") || a == journal.DecisionID("e", "c", "k2") || a == uuid.Nil {
		t.Fatal("decision ids not deterministic and distinct")
	}
	if journal.MessageID(a, "sms") == journal.MessageID(a, "email") {
		t.Fatal("message ids of two channels collide")
	}
}

func TestCustomerEventsKeepTheirOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var ps []profiles.Profile
	for i := 1; i <= 10; i++ {
		ps = append(ps, customer(fmt.Sprintf("K%d", i), channels.SMS, false, true))
	}
	h.importProfiles(ps...)
	// 20 back-payment notices per customer, interleaved, published in one go.
	var evs []events.Event
	for n := 0; n < 20; n++ {
		for i := 1; i <= 10; i++ {
			ev := event(fmt.Sprintf("o-%d-%02d", i, n), events.TypeBackpaymentExpected, fmt.Sprintf("K%d", i))
			ev.Data = []byte(fmt.Sprintf(`{"amount_eur":%d,"due_on":"2027-02-15"}`, 100+n))
			ev.Raw = []byte(fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/t","type":%q,"subject":%q,"data":%s}`, ev.ID, ev.Type, ev.Subject, ev.Data))
			evs = append(evs, ev)
		}
	}
	h.publish(evs...)
	h.waitOutcomes(len(evs))
	for i := 1; i <= 10; i++ {
		got := h.sim.MessagesTo(mobileOf(fmt.Sprintf("K%d", i)))
		if len(got) != 20 {
			t.Fatalf("K%d received %d messages, want 20", i, len(got))
		}
		for n, m := range got {
			if want := fmt.Sprintf("%d,00 €", 100+n); !strings.Contains(m.Body, want) {
				t.Fatalf("K%d message %d out of order: %q does not mention %s", i, n, m.Body, want)
			}
		}
	}
}
