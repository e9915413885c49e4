package campaigns

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/triggers/events"
)

// Utility is the sending Stadtwerk, for signatures and contact lines.
type Utility struct {
	// Name, e.g. "Stadtwerke Musterstadt".
	Name string
	// Phone of the service center.
	Phone string
	// Web address of the customer portal.
	Web string
}

// Data is what a template sees.
type Data struct {
	// Utility is the sender.
	Utility Utility
	// Greeting is the formal opening: "Sehr geehrte Frau Schneider".
	Greeting string
	// Hello is the short opening for SMS/WhatsApp: "Hallo Frau Schneider".
	Hello string
	// FirstName and LastName of the customer.
	FirstName, LastName string
	// Customer is the whole profile.
	Customer *profiles.Profile
	// EventType that started the campaign.
	EventType string
	// Data is the event's data object (dates as "YYYY-MM-DD" strings).
	Data map[string]any
	// Contract is the customer's contract named by data.contract, if any.
	Contract profiles.Contract
	// HasContract says whether Contract was found.
	HasContract bool
	// Offer chosen by interest, if the campaign has offers.
	Offer Offer
	// HasOffer says whether Offer is set.
	HasOffer bool
}

// NewData assembles the template data for one customer and event.
func NewData(u Utility, p *profiles.Profile, ev events.Event, c *Campaign) (Data, error) {
	d := Data{
		Utility:   u,
		FirstName: p.FirstName,
		LastName:  p.LastName,
		Customer:  p,
		EventType: ev.Type,
		Data:      map[string]any{},
	}
	d.Greeting, d.Hello = greetings(p)
	if len(ev.Data) > 0 && ev.Data[0] == '{' {
		if err := json.Unmarshal(ev.Data, &d.Data); err != nil {
			return d, fmt.Errorf("decoding event data: %w", err)
		}
	}
	if id, ok := d.Data["contract"].(string); ok {
		d.Contract, d.HasContract = p.Contract(id)
	}
	if c != nil {
		d.Offer, d.HasOffer = c.ChooseOffer(p)
	}
	return d, nil
}

func greetings(p *profiles.Profile) (formal, short string) {
	switch p.Salutation {
	case "Frau":
		return "Sehr geehrte Frau " + p.LastName, "Hallo Frau " + p.LastName
	case "Herr":
		return "Sehr geehrter Herr " + p.LastName, "Hallo Herr " + p.LastName
	}
	name := strings.TrimSpace(p.FirstName + " " + p.LastName)
	if name == "" {
		return "Guten Tag", "Hallo"
	}
	return "Guten Tag " + name, "Hallo " + name
}

// SampleData is used to check templates at load: a plausible customer and
// event data for the known event types.
func SampleData(eventType string) Data {
	churn := 0.4
	p := &profiles.Profile{
		ID: "K000000", Salutation: "Frau", FirstName: "Erika", LastName: "Mustermann",
		Email: "erika@example.invalid", Mobile: "+4915100000000", City: "Musterstadt", ChurnIndex: &churn,
		Contracts: []profiles.Contract{{ID: "V-000000-1", Product: "strom", Tariff: "MusterStrom Fix 24",
			StartsOn: time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC), EndsOn: time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC),
			NoticePeriodDays: 30, MonthlyInstallmentEUR: 84}},
		Interests: []profiles.Interest{{Topic: "pool", Strength: 0.8, Source: "citycard"}},
	}
	var data map[string]any
	switch eventType {
	case events.TypeContractEnding:
		data = map[string]any{"contract": "V-000000-1", "product": "strom", "ends_on": "2027-01-31", "notice_until": "2026-12-31"}
	case events.TypeBackpaymentExpected:
		data = map[string]any{"contract": "V-000000-1", "amount_eur": 312.5, "due_on": "2027-02-15", "period": "2026"}
	case events.TypeCancellationEnquiry:
		data = map[string]any{"contract": "V-000000-1", "agent": "A-17", "touchpoint": "phone"}
	}
	raw, _ := json.Marshal(data)
	d, _ := NewData(Utility{Name: "Stadtwerke Musterstadt", Phone: "0800 123 456", Web: "https://www.stadtwerke-musterstadt.example"},
		p, events.Event{Type: eventType, Data: raw}, nil)
	d.Offer, d.HasOffer = Offer{Interest: "pool", Title: "Freikarte fürs Hallenbad", Text: "Eine Tageskarte für das Hallenbad."}, true
	return d
}

// funcs are the template helpers, German formats.
var funcs = texttemplate.FuncMap{
	"date":    formatDate,
	"euro":    formatEuro,
	"product": productName,
	"days":    daysUntil,
}

// formatDate renders "YYYY-MM-DD" strings or times as "31.01.2027".
func formatDate(v any) (string, error) {
	switch t := v.(type) {
	case time.Time:
		return t.Format("02.01.2006"), nil
	case string:
		pt, err := time.Parse(time.DateOnly, t)
		if err != nil {
			return "", fmt.Errorf("date: %q is not YYYY-MM-DD", t)
		}
		return pt.Format("02.01.2006"), nil
	}
	return "", fmt.Errorf("date: cannot format %T", v)
}

// daysUntil counts days from today (Europe/Berlin) to a date.
func daysUntil(v any) (int, error) {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case string:
		pt, err := time.Parse(time.DateOnly, x)
		if err != nil {
			return 0, fmt.Errorf("days: %q is not YYYY-MM-DD", x)
		}
		t = pt
	default:
		return 0, fmt.Errorf("days: cannot use %T", v)
	}
	now := time.Now().In(berlin)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	return int(math.Round(t.Sub(today).Hours() / 24)), nil
}

var berlin = mustLoc("Europe/Berlin")

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		return time.FixedZone("CET", 3600)
	}
	return l
}

// formatEuro renders 1234.5 as "1.234,50 €".
func formatEuro(v any) (string, error) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return "", fmt.Errorf("euro: %w", err)
		}
	default:
		return "", fmt.Errorf("euro: cannot format %T", v)
	}
	cents := int64(math.Round(math.Abs(f) * 100))
	neg := f < 0 && cents > 0 // no "-0,00 €"
	whole := strconv.FormatInt(cents/100, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte('.')
		}
		b.WriteRune(r)
	}
	fmt.Fprintf(&b, ",%02d €", cents%100)
	return b.String(), nil
}

func productName(v any) string {
	s, _ := v.(string)
	switch s {
	case "strom":
		return "Strom"
	case "gas":
		return "Erdgas"
	case "wasser":
		return "Trinkwasser"
	case "waerme":
		return "Fernwärme"
	}
	return s
}
