// Package campaigns loads campaign files — which event starts a campaign, its
// purpose (marketing, service, legal), the channel fallback order, the offers
// chosen by interest and the German templates per channel — validates them,
// compiles their templates once and renders personalised messages.
//
// The seed campaigns of the core ship embedded (seed/*.yaml); a directory of
// files can replace them.
package campaigns

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	texttemplate "text/template"

	"github.com/goccy/go-yaml"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/profiles"
)

//go:embed seed/*.yaml
var seedFS embed.FS

// File is the YAML shape of a campaign file.
type File struct {
	// ID is stable across versions: lower-case words joined by '-'.
	ID string `yaml:"id"`
	// Version increases with every change; the deciding version is stored
	// with each decision.
	Version int `yaml:"version"`
	// Name shown to marketing and agents.
	Name string `yaml:"name"`
	// Description: what the campaign is for (phase, touchpoint).
	Description string `yaml:"description"`
	// Purpose: marketing (needs consent per channel), service or legal
	// (need a reachable address only).
	Purpose string `yaml:"purpose"`
	// Trigger names the event type that starts the campaign.
	Trigger Trigger `yaml:"trigger"`
	// Channels is the fallback order after the customer's preferred channel.
	Channels []channels.Kind `yaml:"channels"`
	// Offers are value-added content chosen by the customer's strongest
	// interest; an offer without interest is the default.
	Offers []Offer `yaml:"offers"`
	// Templates per channel.
	Templates map[channels.Kind]Template `yaml:"templates"`
}

// Trigger says when a campaign starts.
type Trigger struct {
	// Event is the CloudEvents type, e.g. "contract.ending".
	Event string `yaml:"event"`
}

// Offer is one value-added offer.
type Offer struct {
	// Interest the offer fits ("pool", "parking", …); empty for the default.
	Interest string `yaml:"interest"`
	// Title, short (fits an SMS).
	Title string `yaml:"title"`
	// Text, one or two sentences.
	Text string `yaml:"text"`
}

// Template is the content for one channel.
type Template struct {
	// Subject of an email.
	Subject string `yaml:"subject"`
	// Text: the SMS/WhatsApp body or the plain-text part of an email.
	Text string `yaml:"text"`
	// HTML part of an email (html/template: values are escaped).
	HTML string `yaml:"html"`
	// ContentSID of an approved WhatsApp template (optional).
	ContentSID string `yaml:"content_sid"`
	// ContentVariables map the template's placeholders ("1", "2", …) to
	// text templates.
	ContentVariables map[string]string `yaml:"content_variables"`
}

// Campaign is a validated campaign with compiled templates.
type Campaign struct {
	File
	// Origin is the file the campaign came from.
	Origin string
	tmpl   map[channels.Kind]*compiled
}

type compiled struct {
	subject, text *texttemplate.Template
	html          *htmltemplate.Template
	vars          map[string]*texttemplate.Template
	contentSID    string
}

// Set is the loaded campaigns, indexed by trigger event.
type Set struct {
	all     []*Campaign
	byEvent map[string][]*Campaign
}

var (
	idRe         = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)
	purposes     = map[string]bool{profiles.PurposeMarketing: true, profiles.PurposeService: true, profiles.PurposeLegal: true}
	contentSIDRe = regexp.MustCompile(`^HX[0-9a-f]{32}$`)
)

// LoadSeed loads the embedded seed campaigns.
func LoadSeed() (*Set, error) {
	sub, err := fs.Sub(seedFS, "seed")
	if err != nil {
		return nil, fmt.Errorf("opening seed campaigns: %w", err)
	}
	return LoadFS(sub, "seed")
}

// LoadDir loads every *.yaml / *.yml file in dir.
func LoadDir(dir string) (*Set, error) {
	return LoadFS(os.DirFS(dir), dir)
}

// LoadFS loads every *.yaml / *.yml file at the root of fsys; label prefixes
// file names in errors. All errors are reported, joined.
func LoadFS(fsys fs.FS, label string) (*Set, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("reading campaigns in %s: %w", label, err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	var errs []error
	var cs []*Campaign
	for _, name := range files {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Join(label, name), err))
			continue
		}
		c, err := Parse(filepath.Join(label, name), data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cs = append(cs, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return NewSet(cs)
}

// NewSet indexes campaigns; ids must be unique.
func NewSet(cs []*Campaign) (*Set, error) {
	s := &Set{byEvent: map[string][]*Campaign{}}
	ids := map[string]string{}
	for _, c := range cs {
		if prev, dup := ids[c.ID]; dup {
			return nil, fmt.Errorf("%s: campaign id %q already defined in %s", c.Origin, c.ID, prev)
		}
		ids[c.ID] = c.Origin
		s.all = append(s.all, c)
		s.byEvent[c.Trigger.Event] = append(s.byEvent[c.Trigger.Event], c)
	}
	return s, nil
}

// Match returns the campaigns an event type starts.
func (s *Set) Match(eventType string) []*Campaign { return s.byEvent[eventType] }

// All returns every campaign.
func (s *Set) All() []*Campaign { return s.all }

// Parse decodes, validates and compiles one campaign file.
func Parse(origin string, data []byte) (*Campaign, error) {
	f, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", origin, err)
	}
	c := &Campaign{File: f, Origin: origin}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: campaign %q: %w", origin, f.ID, err)
	}
	return c, nil
}

// decode unmarshals a campaign file strictly. The YAML decoder panics on
// some malformed input (a tagged scalar where a sequence is expected, found
// by FuzzParseCampaign); that is reported as an error like any other.
func decode(data []byte) (f File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = File{}, fmt.Errorf("invalid YAML: the decoder failed: %v", r)
		}
	}()
	if err := yaml.UnmarshalWithOptions(data, &f, yaml.DisallowUnknownField()); err != nil {
		return File{}, errors.New(yaml.FormatError(err, false, false))
	}
	return f, nil
}

func (c *Campaign) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if !idRe.MatchString(c.ID) {
		bad("id", "must be lower-case words joined by '-', got %q", c.ID)
	}
	if c.Version < 1 {
		bad("version", "must be 1 or higher")
	}
	if strings.TrimSpace(c.Name) == "" {
		bad("name", "is required")
	}
	if !purposes[c.Purpose] {
		bad("purpose", "must be marketing, service or legal, got %q", c.Purpose)
	}
	if c.Trigger.Event == "" {
		bad("trigger.event", "is required (an event type such as contract.ending)")
	}
	if len(c.Channels) == 0 {
		bad("channels", "name at least one channel (email, sms, whatsapp)")
	}
	seen := map[channels.Kind]bool{}
	for i, ch := range c.Channels {
		if !ch.Valid() {
			bad(fmt.Sprintf("channels[%d]", i), "unknown channel %q (email, sms, whatsapp)", ch)
		}
		if seen[ch] {
			bad(fmt.Sprintf("channels[%d]", i), "%q listed twice", ch)
		}
		seen[ch] = true
		if _, ok := c.Templates[ch]; !ok {
			bad("templates."+string(ch), "missing: every listed channel needs a template")
		}
	}
	for ch := range c.Templates {
		if !seen[ch] {
			bad("templates."+string(ch), "channel not listed in channels")
		}
	}
	defaults := 0
	for i, o := range c.Offers {
		if o.Interest == "" {
			defaults++
		}
		if o.Title == "" || o.Text == "" {
			bad(fmt.Sprintf("offers[%d]", i), "title and text are required")
		}
	}
	if len(c.Offers) > 0 && defaults != 1 {
		bad("offers", "need exactly one default offer (without interest), found %d", defaults)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	c.tmpl = map[channels.Kind]*compiled{}
	for _, ch := range c.Channels {
		t, err := compile(ch, c.Templates[ch])
		if err != nil {
			errs = append(errs, fmt.Errorf("templates.%s.%w", ch, err))
			continue
		}
		c.tmpl[ch] = t
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Render once with sample data so a typo in a field name fails at load,
	// not at a customer.
	sample := SampleData(c.Trigger.Event)
	for _, ch := range c.Channels {
		if _, err := c.Render(ch, sample); err != nil {
			errs = append(errs, fmt.Errorf("templates.%s: rendering sample: %w", ch, err))
		}
	}
	return errors.Join(errs...)
}

func compile(ch channels.Kind, t Template) (*compiled, error) {
	out := &compiled{contentSID: t.ContentSID}
	var err error
	if strings.TrimSpace(t.Text) == "" {
		return nil, errors.New("text: is required")
	}
	if out.text, err = texttemplate.New("text").Option("missingkey=error").Funcs(funcs).Parse(t.Text); err != nil {
		return nil, fmt.Errorf("text: %w", err)
	}
	switch ch {
	case channels.Email:
		if strings.TrimSpace(t.Subject) == "" {
			return nil, errors.New("subject: is required for email")
		}
		if strings.TrimSpace(t.HTML) == "" {
			return nil, errors.New("html: is required for email")
		}
		if out.subject, err = texttemplate.New("subject").Option("missingkey=error").Funcs(funcs).Parse(t.Subject); err != nil {
			return nil, fmt.Errorf("subject: %w", err)
		}
		if out.html, err = htmltemplate.New("html").Option("missingkey=error").Funcs(htmltemplate.FuncMap(funcs)).Parse(t.HTML); err != nil {
			return nil, fmt.Errorf("html: %w", err)
		}
	default:
		if t.Subject != "" || t.HTML != "" {
			return nil, errors.New("subject/html: only email has a subject and HTML")
		}
	}
	if t.ContentSID != "" {
		if ch != channels.WhatsApp {
			return nil, errors.New("content_sid: only WhatsApp has content templates")
		}
		if !contentSIDRe.MatchString(t.ContentSID) {
			return nil, errors.New("content_sid: must be HX followed by 32 hex digits")
		}
		out.vars = map[string]*texttemplate.Template{}
		for k, v := range t.ContentVariables {
			vt, err := texttemplate.New(k).Option("missingkey=error").Funcs(funcs).Parse(v)
			if err != nil {
				return nil, fmt.Errorf("content_variables.%s: %w", k, err)
			}
			out.vars[k] = vt
		}
	} else if len(t.ContentVariables) > 0 {
		return nil, errors.New("content_variables: need content_sid")
	}
	return out, nil
}

// Rendered is a personalised message body.
type Rendered struct {
	Subject          string
	Text             string
	HTML             string
	ContentSID       string
	ContentVariables map[string]string
}

// Render personalises the campaign's template for channel ch.
func (c *Campaign) Render(ch channels.Kind, d Data) (Rendered, error) {
	t, ok := c.tmpl[ch]
	if !ok {
		return Rendered{}, fmt.Errorf("campaign %s has no %s template", c.ID, ch)
	}
	var r Rendered
	var buf bytes.Buffer
	exec := func(tt *texttemplate.Template) (string, error) {
		buf.Reset()
		if err := tt.Execute(&buf, d); err != nil {
			return "", err
		}
		return strings.TrimSpace(buf.String()), nil
	}
	var err error
	if r.Text, err = exec(t.text); err != nil {
		return r, fmt.Errorf("text: %w", err)
	}
	if t.subject != nil {
		if r.Subject, err = exec(t.subject); err != nil {
			return r, fmt.Errorf("subject: %w", err)
		}
		r.Subject = strings.Join(strings.Fields(r.Subject), " ")
	}
	if t.html != nil {
		buf.Reset()
		if err := t.html.Execute(&buf, d); err != nil {
			return r, fmt.Errorf("html: %w", err)
		}
		r.HTML = buf.String()
	}
	if t.contentSID != "" {
		r.ContentSID = t.contentSID
		r.ContentVariables = make(map[string]string, len(t.vars))
		for k, vt := range t.vars {
			if r.ContentVariables[k], err = exec(vt); err != nil {
				return r, fmt.Errorf("content_variables.%s: %w", k, err)
			}
		}
	}
	return r, nil
}

// ChooseOffer picks the offer for the customer's strongest interest that has
// one, else the default; ok is false when the campaign has no offers.
func (c *Campaign) ChooseOffer(p *profiles.Profile) (Offer, bool) {
	if len(c.Offers) == 0 {
		return Offer{}, false
	}
	var def Offer
	best, bestStrength := -1, 0.0
	for i, o := range c.Offers {
		if o.Interest == "" {
			def = o
			continue
		}
		if s := p.Interest(o.Interest); s > bestStrength {
			best, bestStrength = i, s
		}
	}
	if best >= 0 {
		return c.Offers[best], true
	}
	return def, true
}
