package campaigns_test

import (
	"strings"
	"testing"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
	"github.com/dialogwerk/dialogwerk/triggers/events"
)

func TestSeedLoadsAndRenders(t *testing.T) {
	t.Parallel()
	set, err := campaigns.LoadSeed()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{events.TypeContractEnding, events.TypeBackpaymentExpected, events.TypeCancellationEnquiry} {
		cs := set.Match(typ)
		if len(cs) != 1 {
			t.Fatalf("%s: %d campaigns", typ, len(cs))
		}
		for _, ch := range []channels.Kind{channels.Email, channels.SMS, channels.WhatsApp} {
			r, err := cs[0].Render(ch, campaigns.SampleData(typ))
			if err != nil {
				t.Fatalf("%s/%s: %v", typ, ch, err)
			}
			if !strings.Contains(r.Text, "Mustermann") {
				t.Errorf("%s/%s: text not personalised: %q", typ, ch, r.Text)
			}
			if strings.Contains(r.Text, "<no value>") || strings.Contains(r.HTML, "<no value>") {
				t.Errorf("%s/%s: missing value rendered", typ, ch)
			}
		}
	}
}
