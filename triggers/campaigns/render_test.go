package campaigns_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
	"github.com/dialogwerk/dialogwerk/triggers/events"
)

var utility = campaigns.Utility{Name: "Stadtwerke Test", Phone: "0800 1", Web: "https://stadtwerke-test.example"}

func seedCampaign(t *testing.T, id string) *campaigns.Campaign {
	t.Helper()
	set, err := campaigns.LoadSeed()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range set.All() {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("no seed campaign %s", id)
	return nil
}

func testEvent(t *testing.T, typ, data string) events.Event {
	t.Helper()
	return events.Event{ID: "ev-1", Type: typ, Subject: "K1", Data: json.RawMessage(data)}
}

func TestHTMLIsEscapedTextIsNot(t *testing.T) {
	t.Parallel()
	c := seedCampaign(t, "backpayment-preparation")
	const evil = `<script>alert("x")</script>`
	p := &profiles.Profile{ID: "K1", Salutation: "Herr", FirstName: "Max", LastName: evil,
		Contracts: []profiles.Contract{{ID: "V-1", Product: "strom", MonthlyInstallmentEUR: 80}}}
	d, err := campaigns.NewData(utility, p, testEvent(t, events.TypeBackpaymentExpected,
		`{"contract":"V-1","amount_eur":99.5,"due_on":"2027-02-15","period":"<b>2026</b>"}`), c)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Render(channels.Email, d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.HTML, "<script>") || strings.Contains(r.HTML, "<b>2026") {
		t.Errorf("HTML part carries markup from data:\n%s", r.HTML)
	}
	for _, want := range []string{"Sehr geehrter Herr &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", "&lt;b&gt;2026&lt;/b&gt;"} {
		if !strings.Contains(r.HTML, want) {
			t.Errorf("HTML part lacks the escaped %q:\n%s", want, r.HTML)
		}
	}
	if !strings.Contains(r.Text, "Sehr geehrter Herr "+evil) || !strings.Contains(r.Text, "für <b>2026</b>") {
		t.Errorf("text part is not the raw text:\n%s", r.Text)
	}
	if !strings.Contains(r.Text, "(derzeit 80,00 €)") {
		t.Errorf("text part lacks the contract's installment:\n%s", r.Text)
	}
	sms, err := c.Render(channels.SMS, d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sms.Text, "Hallo Herr "+evil+",") {
		t.Errorf("SMS = %q", sms.Text)
	}
}

func TestNewData(t *testing.T) {
	t.Parallel()
	contract := profiles.Contract{ID: "V-1", Product: "gas", Tariff: "Gas Fix"}
	tests := []struct {
		name          string
		p             profiles.Profile
		data          string
		greeting      string
		hello         string
		hasContract   bool
		wantOfferText string
	}{
		{"Frau", profiles.Profile{Salutation: "Frau", FirstName: "Erika", LastName: "Muster"}, `{"contract":"V-1"}`,
			"Sehr geehrte Frau Muster", "Hallo Frau Muster", true, "Monatskarte"},
		{"Herr", profiles.Profile{Salutation: "Herr", LastName: "Muster"}, `{"contract":"V-2"}`,
			"Sehr geehrter Herr Muster", "Hallo Herr Muster", false, "Monatskarte"},
		{"neutral", profiles.Profile{FirstName: "Kim", LastName: "Muster"}, `{}`,
			"Guten Tag Kim Muster", "Hallo Kim Muster", false, "Monatskarte"},
		{"no name", profiles.Profile{}, ``, "Guten Tag", "Hallo", false, "Monatskarte"},
		{"interest", profiles.Profile{Interests: []profiles.Interest{{Topic: "pool", Strength: 0.5}}}, `null`,
			"Guten Tag", "Hallo", false, "Freikarte"},
	}
	c, err := campaigns.Parse("base.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		p := tt.p
		p.Contracts = []profiles.Contract{contract}
		d, err := campaigns.NewData(utility, &p, testEvent(t, "x.y", tt.data), c)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if d.Greeting != tt.greeting || d.Hello != tt.hello {
			t.Errorf("%s: greeting %q / %q, want %q / %q", tt.name, d.Greeting, d.Hello, tt.greeting, tt.hello)
		}
		if d.HasContract != tt.hasContract || (tt.hasContract && d.Contract.Tariff != "Gas Fix") {
			t.Errorf("%s: contract %v %+v", tt.name, d.HasContract, d.Contract)
		}
		if !d.HasOffer || d.Offer.Title != tt.wantOfferText {
			t.Errorf("%s: offer %v %+v, want %s", tt.name, d.HasOffer, d.Offer, tt.wantOfferText)
		}
		if d.Data == nil || d.EventType != "x.y" || d.Customer != &p {
			t.Errorf("%s: data %+v", tt.name, d)
		}
	}
	if _, err := campaigns.NewData(utility, &profiles.Profile{}, testEvent(t, "x.y", `{"a":`), nil); err == nil {
		t.Error("broken data object accepted")
	}
	d, err := campaigns.NewData(utility, &profiles.Profile{}, testEvent(t, "x.y", `{}`), nil)
	if err != nil || d.HasOffer {
		t.Errorf("without a campaign: offer %v, %v", d.HasOffer, err)
	}
}

func TestChooseOffer(t *testing.T) {
	t.Parallel()
	c := seedCampaign(t, "contract-ending-retention")
	tests := []struct {
		name      string
		interests []profiles.Interest
		want      string // interest of the chosen offer; "" the default
	}{
		{"no interests: default", nil, ""},
		{"pool", []profiles.Interest{{Topic: "pool", Strength: 0.3}}, "pool"},
		{"strongest wins", []profiles.Interest{{Topic: "pool", Strength: 0.3}, {Topic: "parking", Strength: 0.8}}, "parking"},
		{"strongest wins, any order", []profiles.Interest{{Topic: "parking", Strength: 0.2}, {Topic: "pool", Strength: 0.9}}, "pool"},
		{"interest without an offer is ignored", []profiles.Interest{{Topic: "museum", Strength: 1}, {Topic: "parking", Strength: 0.1}}, "parking"},
		{"only interests without offers: default", []profiles.Interest{{Topic: "museum", Strength: 1}}, ""},
		{"zero strength: default", []profiles.Interest{{Topic: "pool", Strength: 0}}, ""},
		{"tie: first offer in the file", []profiles.Interest{{Topic: "parking", Strength: 0.5}, {Topic: "pool", Strength: 0.5}}, "pool"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, ok := c.ChooseOffer(&profiles.Profile{Interests: tt.interests})
			if !ok {
				t.Fatal("no offer")
			}
			if o.Interest != tt.want || o.Title == "" {
				t.Errorf("chose %+v, want the offer for %q", o, tt.want)
			}
		})
	}
	noOffers := seedCampaign(t, "backpayment-preparation")
	if o, ok := noOffers.ChooseOffer(&profiles.Profile{Interests: []profiles.Interest{{Topic: "pool", Strength: 1}}}); ok {
		t.Errorf("campaign without offers chose %+v", o)
	}
}

func TestGermanFormatsInTemplates(t *testing.T) {
	t.Parallel()
	y := strings.NewReplacer(
		"channels: [email, sms]", "channels: [sms]",
		`    text: "{{.Hello}}, etwa {{euro .Data.amount_eur}}."`,
		`    text: "{{euro .Data.amount_eur}}|{{date .Data.due_on}}|{{date .Contract.StartsOn}}|{{product .Contract.Product}}|{{euro .Contract.MonthlyInstallmentEUR}}|{{euro 7}}"`,
	).Replace(base)
	y = y[:strings.Index(y, "  email:")] + y[strings.Index(y, "  sms:"):]
	c, err := campaigns.Parse("fmt.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		amount, product string
		want            string
	}{
		{"1234.5", "strom", "1.234,50 €|15.02.2027|01.03.2024|Strom|1.234.567,89 €|7,00 €"},
		{"0.5", "gas", "0,50 €|15.02.2027|01.03.2024|Erdgas|1.234.567,89 €|7,00 €"},
		{"999999.999", "wasser", "1.000.000,00 €|15.02.2027|01.03.2024|Trinkwasser|1.234.567,89 €|7,00 €"},
		{"100", "waerme", "100,00 €|15.02.2027|01.03.2024|Fernwärme|1.234.567,89 €|7,00 €"},
		{"12", "telekom", "12,00 €|15.02.2027|01.03.2024|telekom|1.234.567,89 €|7,00 €"},
	}
	for _, tt := range tests {
		p := &profiles.Profile{Contracts: []profiles.Contract{{ID: "V-1", Product: tt.product,
			StartsOn: time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), MonthlyInstallmentEUR: 1234567.891}}}
		d, err := campaigns.NewData(utility, p, testEvent(t, events.TypeBackpaymentExpected,
			`{"contract":"V-1","amount_eur":`+tt.amount+`,"due_on":"2027-02-15"}`), c)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Render(channels.SMS, d)
		if err != nil {
			t.Fatal(err)
		}
		if r.Text != tt.want {
			t.Errorf("amount %s: %q, want %q", tt.amount, r.Text, tt.want)
		}
	}
	// A date that is not YYYY-MM-DD fails the render instead of printing junk.
	d, err := campaigns.NewData(utility, &profiles.Profile{Contracts: []profiles.Contract{{ID: "V-1"}}},
		testEvent(t, events.TypeBackpaymentExpected, `{"contract":"V-1","amount_eur":1,"due_on":"15.02.2027"}`), c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Render(channels.SMS, d); err == nil || !strings.Contains(err.Error(), "not YYYY-MM-DD") {
		t.Errorf("bad date rendered: %v", err)
	}
}
