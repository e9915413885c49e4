// Package musterstadt generates the demo town: synthetic customers of the
// Stadtwerke Musterstadt with contracts, interests, preferred channels and
// consents, and a realistic day of billing and service-center events for
// them. Everything is generated from a seed; no real people. Email addresses
// use the reserved .example domain.
package musterstadt

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/triggers/events"
)

var (
	womenNames = []string{"Anna", "Maria", "Ursula", "Monika", "Petra", "Sabine", "Claudia", "Julia", "Laura", "Lena", "Sophie", "Katharina", "Erika", "Heike", "Birgit", "Emma", "Mia", "Hannah", "Ingrid", "Renate", "Jana", "Nadine", "Aylin", "Elif", "Fatma"}
	menNames   = []string{"Peter", "Michael", "Thomas", "Andreas", "Stefan", "Klaus", "Jürgen", "Wolfgang", "Frank", "Markus", "Jan", "Lukas", "Felix", "Jonas", "Max", "Paul", "Uwe", "Dieter", "Günter", "Tobias", "Mehmet", "Ali", "Piotr", "Ahmet", "Sven"}
	neutral    = []string{"Alex", "Kim", "Robin", "Sascha", "Charlie", "Luca"}
	lastNames  = []string{"Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt", "Werner", "Krause", "Meier", "Lehmann", "Yılmaz", "Kaya", "Nowak", "Kowalski", "Öztürk", "Jung", "Hahn", "Vogel", "Friedrich", "Keller"}
	streets    = []string{"Hauptstraße", "Bahnhofstraße", "Am Stadtpark", "Lindenallee", "Schillerstraße", "Goethestraße", "Kirchweg", "Mühlenweg", "Am Hallenbad", "Rathausplatz", "Gartenstraße", "Bergstraße", "Wiesenweg", "Am Wasserturm", "Ringstraße"}
	tariffs    = map[string][]string{
		"strom":  {"MusterStrom Fix 24", "MusterStrom Öko", "MusterStrom Flex", "MusterStrom Wärmepumpe"},
		"gas":    {"MusterGas Fix 12", "MusterGas Klima"},
		"wasser": {"Trinkwasser Standard"},
		"waerme": {"Fernwärme Komfort"},
	}
)

// Town is the generated demo data.
type Town struct {
	Profiles []profiles.Profile
}

// Generate builds n customers deterministically from seed; today anchors
// contract ends and birthdays.
func Generate(n int, seed uint64, today time.Time) Town {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	today = time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, time.UTC)
	ps := make([]profiles.Profile, 0, n)
	for i := 0; i < n; i++ {
		ps = append(ps, person(r, i, today))
	}
	return Town{Profiles: ps}
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func person(r *rand.Rand, i int, today time.Time) profiles.Profile {
	p := profiles.Profile{ID: fmt.Sprintf("K%06d", 100001+i), Language: "de", City: "Musterstadt"}
	switch x := r.IntN(100); {
	case x < 48:
		p.Salutation, p.FirstName = "Frau", pick(r, womenNames)
	case x < 95:
		p.Salutation, p.FirstName = "Herr", pick(r, menNames)
	default:
		p.FirstName = pick(r, neutral)
	}
	p.LastName = pick(r, lastNames)
	age := 18 + r.IntN(72)
	p.Birthday = today.AddDate(-age, 0, -r.IntN(365))
	p.Street = fmt.Sprintf("%s %d", pick(r, streets), 1+r.IntN(120))
	p.Postcode = fmt.Sprintf("1234%d", r.IntN(10))
	p.InSupplyArea = r.IntN(100) < 95
	if r.IntN(100) < 88 {
		p.Email = fmt.Sprintf("%s.%s.%d@musterstadt.example", ascii(p.FirstName), ascii(p.LastName), 100001+i)
	}
	if r.IntN(100) < 80 {
		p.Mobile = fmt.Sprintf("+49151%08d", 10000000+r.IntN(89999999))
	}
	switch x := r.IntN(100); {
	case x < 50:
		p.PreferredChannel = channels.Email
	case x < 70:
		p.PreferredChannel = channels.SMS
	case x < 90:
		p.PreferredChannel = channels.WhatsApp
	}
	churn := float64(r.IntN(1000)) / 1000 * float64(r.IntN(1000)) / 1000 // skewed low
	p.ChurnIndex = &churn

	// Contracts: almost everyone has electricity.
	cn := 0
	addContract := func(product string) {
		cn++
		c := profiles.Contract{
			ID:                    fmt.Sprintf("V-%s-%d", p.ID[1:], cn),
			Product:               product,
			Tariff:                pick(r, tariffs[product]),
			StartsOn:              today.AddDate(-1-r.IntN(7), -r.IntN(12), 0),
			NoticePeriodDays:      30,
			MonthlyInstallmentEUR: float64(30+r.IntN(170)) + float64(r.IntN(100))/100,
		}
		if product == "strom" && r.IntN(100) < 10 {
			c.BasicSupply, c.Tariff = true, "Grundversorgung Strom"
			c.NoticePeriodDays = 14
		} else if product == "strom" || product == "gas" {
			c.EndsOn = today.AddDate(0, 1+r.IntN(14), r.IntN(28))
			if r.IntN(4) == 0 {
				c.NoticePeriodDays = 90
			}
		}
		p.Contracts = append(p.Contracts, c)
	}
	if r.IntN(100) < 96 {
		addContract("strom")
	}
	if r.IntN(100) < 45 {
		addContract("gas")
	}
	if r.IntN(100) < 30 {
		addContract("wasser")
	}
	if r.IntN(100) < 8 {
		addContract("waerme")
	}
	if len(p.Contracts) == 0 {
		addContract("strom")
	}

	for _, t := range []struct {
		topic string
		pct   int
	}{{"pool", 30}, {"parking", 25}, {"transit", 35}, {"museum", 10}} {
		if r.IntN(100) < t.pct {
			src := "citycard"
			if r.IntN(4) == 0 {
				src = "survey"
			}
			p.Interests = append(p.Interests, profiles.Interest{Topic: t.topic, Strength: 0.2 + float64(r.IntN(80))/100, Source: src})
		}
	}

	// Consents: likelier on the preferred channel; some later revoked.
	for _, ch := range []channels.Kind{channels.Email, channels.SMS, channels.WhatsApp} {
		pct := 30
		if ch == p.PreferredChannel {
			pct = 75
		}
		if p.Address(ch) == "" || r.IntN(100) >= pct {
			continue
		}
		at := today.AddDate(0, -1-r.IntN(36), -r.IntN(28)).Add(time.Duration(8+r.IntN(12)) * time.Hour)
		tp := pick(r, []string{"web", "service_center", "letter", "order"})
		ev := map[string]any{"wording": "einwilligung-werbung-v3"}
		if tp == "web" || tp == "order" {
			ev["doi_requested_at"] = at.Format(time.RFC3339)
			ev["doi_confirmed_at"] = at.Add(time.Duration(5+r.IntN(300)) * time.Minute).Format(time.RFC3339)
		}
		if tp == "service_center" {
			ev["agent"] = fmt.Sprintf("A-%02d", 1+r.IntN(40))
		}
		p.Consents = append(p.Consents, profiles.Consent{Channel: ch, Purpose: profiles.PurposeMarketing, Granted: true, RecordedAt: at, Touchpoint: tp, Evidence: ev})
		if r.IntN(100) < 6 {
			p.Consents = append(p.Consents, profiles.Consent{Channel: ch, Purpose: profiles.PurposeMarketing, Granted: false,
				RecordedAt: at.AddDate(0, r.IntN(6), 1), Touchpoint: "web", Evidence: map[string]any{"route": "unsubscribe"}})
		}
	}
	return p
}

func ascii(s string) string {
	r := strings.NewReplacer("ä", "ae", "ö", "oe", "ü", "ue", "ß", "ss", "Ä", "Ae", "Ö", "Oe", "Ü", "Ue", "ı", "i", "İ", "I")
	return strings.ToLower(r.Replace(s))
}

// Events returns a realistic day of the three seed events for the town:
// contract.ending for every fixed-term contract ending within 90 days,
// billing.backpayment_expected for about one customer in ten, and
// service.cancellation_enquiry for about one in thirty. Ids are
// deterministic, so sending them twice is recognised as a re-send.
func Events(t Town, seed uint64, today time.Time) [][]byte {
	r := rand.New(rand.NewPCG(seed^0x51ed, seed))
	today = time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, time.UTC)
	var out [][]byte
	now := time.Now().UTC().Truncate(time.Second)
	add := func(id, typ, source, subject string, data any) {
		b, _ := json.Marshal(map[string]any{
			"specversion": "1.0", "id": id, "source": source, "type": typ, "subject": subject,
			"time": now.Format(time.RFC3339), "datacontenttype": "application/json", "data": data,
		})
		out = append(out, b)
	}
	for _, p := range t.Profiles {
		for _, c := range p.Contracts {
			if c.EndsOn.IsZero() || c.EndsOn.Sub(today) > 90*24*time.Hour {
				continue
			}
			notice := c.EndsOn.AddDate(0, 0, -c.NoticePeriodDays)
			add(fmt.Sprintf("contract-ending-%s-%s", c.ID, c.EndsOn.Format("20060102")), events.TypeContractEnding, "/billing/sap-isu", p.ID,
				map[string]any{"contract": c.ID, "product": c.Product, "ends_on": c.EndsOn.Format(time.DateOnly), "notice_until": notice.Format(time.DateOnly)})
		}
		if r.IntN(10) == 0 {
			c := p.Contracts[0]
			add(fmt.Sprintf("backpayment-%s-%s", c.ID, today.Format("2006")), events.TypeBackpaymentExpected, "/billing/sap-isu", p.ID,
				map[string]any{"contract": c.ID, "amount_eur": float64(150+r.IntN(750)) + float64(r.IntN(100))/100,
					"due_on": today.AddDate(0, 2, 0).Format(time.DateOnly), "period": fmt.Sprint(today.Year() - 1)})
		}
		if r.IntN(30) == 0 {
			c := p.Contracts[r.IntN(len(p.Contracts))]
			add(fmt.Sprintf("enquiry-%s-%s", p.ID, today.Format("20060102")), events.TypeCancellationEnquiry, "/crm/service-center", p.ID,
				map[string]any{"contract": c.ID, "agent": fmt.Sprintf("A-%02d", 1+r.IntN(40)), "touchpoint": pick(r, []string{"phone", "phone", "counter", "web"})})
		}
	}
	return out
}
