package campaigns_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
)

// base is a valid campaign; the cases below break one thing each.
const base = `id: test-campaign
version: 3
name: Testkampagne
purpose: marketing
trigger:
  event: billing.backpayment_expected
channels: [email, sms]
offers:
  - interest: pool
    title: Freikarte
    text: Eine Freikarte fürs Bad.
  - title: Monatskarte
    text: Ein Monat Bus und Bahn.
templates:
  email:
    subject: "Nachzahlung {{euro .Data.amount_eur}}"
    text: "{{.Greeting}}, etwa {{euro .Data.amount_eur}}."
    html: "<p>{{.Greeting}}, etwa {{euro .Data.amount_eur}}.</p>"
  sms:
    text: "{{.Hello}}, etwa {{euro .Data.amount_eur}}."
`

// edit replaces old (which must occur in base) with new.
func edit(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(base, old) {
		t.Fatalf("base has no %q", old)
	}
	return strings.Replace(base, old, new, 1)
}

func TestParseBase(t *testing.T) {
	t.Parallel()
	c, err := campaigns.Parse("base.yaml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "test-campaign" || c.Version != 3 || c.Purpose != "marketing" || c.Trigger.Event != "billing.backpayment_expected" ||
		c.Origin != "base.yaml" || len(c.Channels) != 2 || c.Channels[0] != channels.Email || len(c.Offers) != 2 {
		t.Errorf("parsed %+v", c.File)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	whatsapp := func(tmpl string) string {
		return edit(t, "channels: [email, sms]", "channels: [email, sms, whatsapp]") + "  whatsapp:\n" + tmpl
	}
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, beside the file name
	}{
		{"bad id", edit(t, "id: test-campaign", "id: Test_Campaign"), []string{"id: must be lower-case", "Test_Campaign"}},
		{"id with trailing dash", edit(t, "id: test-campaign", "id: test-"), []string{"id:"}},
		{"missing id", edit(t, "id: test-campaign\n", ""), []string{"id:"}},
		{"version 0", edit(t, "version: 3", "version: 0"), []string{"version: must be 1 or higher"}},
		{"negative version", edit(t, "version: 3", "version: -2"), []string{"version"}},
		{"version not a number", edit(t, "version: 3", "version: drei"), []string{"[2:", "Version"}},
		{"missing name", edit(t, "name: Testkampagne", "name: '  '"), []string{"name: is required"}},
		{"unknown purpose", edit(t, "purpose: marketing", "purpose: spam"), []string{"purpose", `"spam"`}},
		{"missing trigger", edit(t, "trigger:\n  event: billing.backpayment_expected\n", ""), []string{"trigger.event: is required"}},
		{"empty trigger event", edit(t, "event: billing.backpayment_expected", "event: ''"), []string{"trigger.event"}},
		{"no channels", edit(t, "channels: [email, sms]", "channels: []"), []string{"channels: name at least one"}},
		{"unknown channel", edit(t, "channels: [email, sms]", "channels: [email, sms, fax]"), []string{"channels[2]", `unknown channel "fax"`}},
		{"channel twice", edit(t, "channels: [email, sms]", "channels: [email, sms, email]"), []string{"channels[2]", "twice"}},
		{"channel without template", edit(t, "channels: [email, sms]", "channels: [email, sms, whatsapp]"), []string{"templates.whatsapp: missing"}},
		{"template for unlisted channel", edit(t, "channels: [email, sms]", "channels: [email]"), []string{"templates.sms: channel not listed"}},
		{"email without subject", edit(t, `    subject: "Nachzahlung {{euro .Data.amount_eur}}"`+"\n", ""), []string{"templates.email.subject: is required"}},
		{"email without html", edit(t, `    html: "<p>{{.Greeting}}, etwa {{euro .Data.amount_eur}}.</p>"`+"\n", ""), []string{"templates.email.html: is required"}},
		{"email without text", edit(t, `    text: "{{.Greeting}}, etwa {{euro .Data.amount_eur}}."`+"\n", ""), []string{"templates.email.text: is required"}},
		{"subject on sms", edit(t, "  sms:\n", "  sms:\n    subject: Hallo\n"), []string{"templates.sms.subject/html: only email"}},
		{"html on sms", edit(t, "  sms:\n", "  sms:\n    html: <p>x</p>\n"), []string{"templates.sms.subject/html"}},
		{"content_sid on sms", edit(t, "  sms:\n", "  sms:\n    content_sid: HX0123456789abcdef0123456789abcdef\n"), []string{"templates.sms.content_sid: only WhatsApp"}},
		{"bad content_sid", whatsapp("    text: Hallo\n    content_sid: HX123\n"), []string{"templates.whatsapp.content_sid: must be HX"}},
		{"upper-case content_sid", whatsapp("    text: Hallo\n    content_sid: HX0123456789ABCDEF0123456789ABCDEF\n"), []string{"content_sid: must be HX"}},
		{"content_variables without content_sid", whatsapp("    text: Hallo\n    content_variables: {\"1\": x}\n"), []string{"templates.whatsapp.content_variables: need content_sid"}},
		{"content variable with unknown field", whatsapp("    text: Hallo\n    content_sid: HX0123456789abcdef0123456789abcdef\n    content_variables: {\"1\": \"{{.Nachname}}\"}\n"),
			[]string{"templates.whatsapp", "content_variables.1", "Nachname"}},
		{"offers without default", edit(t, "  - title: Monatskarte\n", "  - interest: transit\n    title: Monatskarte\n"), []string{"offers: need exactly one default", "found 0"}},
		{"offers with two defaults", edit(t, "  - interest: pool\n", "  - interest: ''\n"), []string{"offers: need exactly one default", "found 2"}},
		{"offer without text", edit(t, "    text: Eine Freikarte fürs Bad.\n", ""), []string{"offers[0]: title and text are required"}},
		{"template parse error", edit(t, `"{{.Hello}}, etwa`, `"{{.Hello}, etwa`), []string{"templates.sms.text"}},
		{"unknown function", edit(t, `"{{.Hello}}, etwa`, `"{{upper .Hello}}, etwa`), []string{"templates.sms.text", "upper"}},
		{"unknown field", edit(t, `"{{.Hello}}, etwa`, `"{{.Hallo}}, etwa`), []string{"templates.sms", "Hallo"}},
		{"unknown field in html", edit(t, "<p>{{.Greeting}}", "<p>{{.Customer.Vorname}}"), []string{"templates.email", "html", "Vorname"}},
		{"unknown data key", edit(t, `"{{.Hello}}, etwa {{euro .Data.amount_eur}}."`, `"{{.Hello}}, etwa {{euro .Data.betrag}}."`), []string{"templates.sms", "betrag"}},
		{"wrong argument type", edit(t, `"{{.Hello}}, etwa {{euro .Data.amount_eur}}."`, `"{{.Hello}}, etwa {{euro .Data.due_on}}."`), []string{"templates.sms", "euro"}},
		{"unknown YAML key", edit(t, "purpose: marketing", "purpose: marketing\nzweck: werbung"), []string{"[5:1]", `unknown field "zweck"`}},
		{"unknown YAML key in a template", edit(t, "  sms:\n", "  sms:\n    txt: x\n"), []string{`unknown field "txt"`}},
		{"YAML syntax error", edit(t, "channels: [email, sms]", "channels: [email, sms"), []string{"[8:"}},
		{"YAML tab indentation", edit(t, "  event: billing", "\tevent: billing"), []string{"[6:"}},
		{"not a mapping", "- a\n- b\n", []string{"f.yaml"}},
		// goccy/go-yaml v1.19.2 panics here (issue #735); Parse reports it.
		{"tagged scalar where a list belongs", "id: x\nchannels: !a\n  -b\n", []string{"invalid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := campaigns.Parse("dir/f.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", c.File)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "dir/f.yaml: ") {
				t.Errorf("error %q does not start with the file name", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// Errors found after decoding name the campaign, and all of them are
// reported at once.
func TestParseErrorsNameCampaignAndAreJoined(t *testing.T) {
	t.Parallel()
	y := strings.NewReplacer("version: 3", "version: 0", "purpose: marketing", "purpose: werbung").Replace(base)
	_, err := campaigns.Parse("f.yaml", []byte(y))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range []string{`campaign "test-campaign"`, "version:", "purpose:"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	_, err = campaigns.Parse("f.yaml", []byte(edit(t, `"{{.Hello}}, etwa`, `"{{.Hallo}}, etwa`)))
	if err == nil || !strings.Contains(err.Error(), `campaign "test-campaign"`) {
		t.Errorf("template error %v does not name the campaign", err)
	}
}

func TestWhatsAppContentTemplate(t *testing.T) {
	t.Parallel()
	y := edit(t, "channels: [email, sms]", "channels: [whatsapp, email, sms]") +
		"  whatsapp:\n    text: \"{{.Hello}}, Vorschau\"\n    content_sid: HX0123456789abcdef0123456789abcdef\n" +
		"    content_variables:\n      \"1\": \"{{.LastName}}\"\n      \"2\": \"{{euro .Data.amount_eur}}\"\n"
	c, err := campaigns.Parse("f.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Render(channels.WhatsApp, campaigns.SampleData(c.Trigger.Event))
	if err != nil {
		t.Fatal(err)
	}
	if r.ContentSID != "HX0123456789abcdef0123456789abcdef" || r.ContentVariables["1"] != "Mustermann" || r.ContentVariables["2"] != "312,50 €" {
		t.Errorf("rendered %+v", r)
	}
	if r.Text != "Hallo Frau Mustermann, Vorschau" || r.Subject != "" || r.HTML != "" {
		t.Errorf("rendered %+v", r)
	}
	if _, err := c.Render(channels.Kind("letter"), campaigns.SampleData(c.Trigger.Event)); err == nil {
		t.Error("rendered a channel the campaign has no template for")
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func withID(id, event string) string {
	return strings.NewReplacer("id: test-campaign", "id: "+id, "event: billing.backpayment_expected", "event: "+event).Replace(base)
}

func TestLoadDir(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"a.yaml":         withID("alpha", "billing.backpayment_expected"),
		"b.yml":          withID("beta", "billing.backpayment_expected"),
		"c.yaml":         strings.ReplaceAll(withID("gamma", "contract.ending"), "{{euro .Data.amount_eur}}", "{{date .Data.ends_on}}"),
		"notes.txt":      "not a campaign",
		"README.md":      "# nope",
		"sub/d.yaml":     withID("delta", "contract.ending"),
		"old.yaml.bak":   "id: [",
		"x.yaml.d/e.yml": "id: [",
	})
	set, err := campaigns.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range set.All() {
		ids = append(ids, c.ID)
	}
	if strings.Join(ids, ",") != "alpha,beta,gamma" {
		t.Errorf("loaded %v, want alpha,beta,gamma (sorted by file name, top level only)", ids)
	}
	if m := set.Match("billing.backpayment_expected"); len(m) != 2 || m[0].ID != "alpha" || m[1].ID != "beta" {
		t.Errorf("Match(backpayment) = %d campaigns", len(m))
	}
	if m := set.Match("contract.ending"); len(m) != 1 || m[0].Origin != filepath.Join(dir, "c.yaml") {
		t.Errorf("Match(contract.ending) = %v", m)
	}
	if m := set.Match("nobody.listens"); len(m) != 0 {
		t.Errorf("Match(unknown) = %v", m)
	}

	empty, err := campaigns.LoadDir(t.TempDir())
	if err != nil || len(empty.All()) != 0 {
		t.Errorf("empty dir: %v, %v", empty, err)
	}
	if _, err := campaigns.LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing dir loaded")
	}
}

func TestLoadDirErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{
			name:  "duplicate id across files",
			files: map[string]string{"a.yaml": withID("same", "billing.backpayment_expected"), "b.yaml": withID("same", "billing.backpayment_expected")},
			want:  []string{"b.yaml", `campaign id "same" already defined in`, "a.yaml"},
		},
		{
			name:  "errors of every file reported",
			files: map[string]string{"a.yaml": "id: [", "b.yaml": withID("ok", "billing.backpayment_expected"), "c.yaml": strings.Replace(base, "version: 3", "version: 0", 1)},
			want:  []string{"a.yaml: [1:", "c.yaml: campaign \"test-campaign\": version"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set, err := campaigns.LoadDir(writeFiles(t, tt.files))
			if err == nil {
				t.Fatalf("loaded %d campaigns", len(set.All()))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// FuzzParseCampaign: Parse never panics, and what it accepts renders on
// every listed channel.
func FuzzParseCampaign(f *testing.F) {
	f.Add([]byte(base))
	seeds, _ := filepath.Glob("seed/*.yaml")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("id: [\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("id: a\nversion: 1\nname: n\npurpose: service\ntrigger: {event: a.b}\nchannels: [sms]\ntemplates: {sms: {text: \"{{.Hello}}\"}}\n"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("? - a\n: b"))
	f.Add([]byte("templates: {whatsapp: {content_variables: {1: '{{'}}}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := campaigns.Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("campaign returned with an error")
			}
			return
		}
		if c.ID == "" || c.Version < 1 || len(c.Channels) == 0 {
			t.Fatalf("accepted an invalid campaign: %+v", c.File)
		}
		for _, ch := range c.Channels {
			if _, err := c.Render(ch, campaigns.SampleData(c.Trigger.Event)); err != nil {
				t.Fatalf("accepted campaign does not render on %s: %v", ch, err)
			}
		}
	})
}
