package twiliosim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels/twiliosim"
)

const (
	hx = "HX0123456789abcdef0123456789abcdef"
	mg = "MG0123456789abcdef0123456789abcdef"
)

var sidRE = regexp.MustCompile(`^SM[0-9a-f]{32}$`)

// newSim mounts a fresh sim in an httptest server.
func newSim(t *testing.T, cfg twiliosim.Config) (*twiliosim.Server, string) {
	t.Helper()
	sim := twiliosim.New(cfg)
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	return sim, ts.URL
}

type answer struct {
	status int
	raw    string
	fields map[string]any
}

func (a answer) code() int {
	c, _ := a.fields["code"].(float64)
	return int(c)
}

func (a answer) str(k string) string {
	s, _ := a.fields[k].(string)
	return s
}

// create posts form to the sim's create route with the sim's credentials.
func create(t *testing.T, sim *twiliosim.Server, base string, form url.Values) answer {
	t.Helper()
	return createAs(t, base, sim.AccountSID(), sim.AccountSID(), sim.AuthToken(), form)
}

func createAs(t *testing.T, base, pathSID, user, pass string, form url.Values) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		base+"/2010-04-01/Accounts/"+pathSID+"/Messages.json", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) answer {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: res.StatusCode, raw: string(b)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &a.fields); err != nil {
			t.Fatalf("answer is not JSON: %v: %s", err, b)
		}
	}
	return a
}

func get(t *testing.T, u string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

func sms(to, body string) url.Values {
	return url.Values{"To": {to}, "From": {"+4930123456"}, "Body": {body}}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	with := func(f url.Values, kv ...string) url.Values {
		g := url.Values{}
		for k, v := range f {
			g[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				g.Del(kv[i])
			} else {
				g.Set(kv[i], kv[i+1])
			}
		}
		return g
	}
	ok := sms("+4915112345678", "Hallo")
	wa := url.Values{"To": {"whatsapp:+4915112345678"}, "From": {"whatsapp:+4930123456"}, "Body": {"Hallo"}}
	tests := []struct {
		name       string
		form       url.Values
		status     int
		code       int
		wantStatus string // message status when accepted
	}{
		{"sms accepted", ok, 201, 0, "queued"},
		{"alphanumeric sender", with(ok, "From", "Stadtwerk"), 201, 0, "queued"},
		{"whatsapp accepted", wa, 201, 0, "queued"},
		{"whatsapp template", with(wa, "Body", "", "ContentSid", hx, "ContentVariables", `{"1":"Erika"}`), 201, 0, "queued"},
		{"media only", with(ok, "Body", "", "MediaUrl", "https://example.org/a.png"), 201, 0, "queued"},
		{"messaging service", with(ok, "From", "", "MessagingServiceSid", mg), 201, 0, "accepted"},
		{"missing To", with(ok, "To", ""), 400, 21604, ""},
		{"To not E.164", with(ok, "To", "0151 12345678"), 400, 21211, ""},
		{"To too short", with(ok, "To", "+49151"), 400, 21211, ""},
		{"To leading zero", with(ok, "To", "+0151123456"), 400, 21211, ""},
		{"missing From and service", with(ok, "From", ""), 400, 21603, ""},
		{"bad service sid", with(ok, "From", "", "MessagingServiceSid", "MG123"), 400, 21701, ""},
		{"bad From", with(ok, "From", "Stadtwerke Musterstadt"), 400, 21212, ""},
		{"whatsapp To, sms From", with(wa, "From", "+4930123456"), 400, 21910, ""},
		{"sms To, whatsapp From", with(ok, "From", "whatsapp:+4930123456"), 400, 21910, ""},
		{"missing body", with(ok, "Body", ""), 400, 21619, ""},
		{"body too long", with(ok, "Body", strings.Repeat("ä", 1601)), 400, 21617, ""},
		{"body at limit", with(ok, "Body", strings.Repeat("ä", 1600)), 201, 0, "queued"},
		{"bad content sid", with(wa, "ContentSid", "HXnope"), 400, 21655, ""},
		{"content variables not JSON", with(wa, "ContentSid", hx, "ContentVariables", "{1:"), 400, 21656, ""},
		{"content variables not strings", with(wa, "ContentSid", hx, "ContentVariables", `{"1":2}`), 400, 21656, ""},
		{"content variables array", with(wa, "ContentSid", hx, "ContentVariables", `["a"]`), 400, 21656, ""},
		{"bad media url", with(ok, "MediaUrl", "ftp://example.org/a.png"), 400, 21620, ""},
		{"bad status callback", with(ok, "StatusCallback", "/relative"), 400, 21609, ""},
		{"magic invalid number", with(ok, "To", "+15005550001"), 400, 21211, ""},
		{"magic unsubscribed", with(ok, "To", "+15005550004"), 400, 21610, ""},
		{"magic not mobile", with(ok, "To", "+15005550009"), 400, 21614, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := create(t, sim, base, tt.form)
			if a.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", a.status, tt.status, a.raw)
			}
			if tt.code != 0 {
				if a.code() != tt.code || int(a.fields["status"].(float64)) != tt.status ||
					a.str("message") == "" || !strings.HasSuffix(a.str("more_info"), "/errors/"+itoa(tt.code)) {
					t.Errorf("error answer = %s, want code %d in Twilio's shape", a.raw, tt.code)
				}
				return
			}
			if !sidRE.MatchString(a.str("sid")) {
				t.Errorf("sid = %q", a.str("sid"))
			}
			if a.str("status") != tt.wantStatus || a.str("direction") != "outbound-api" ||
				a.str("api_version") != "2010-04-01" || a.str("account_sid") != sim.AccountSID() ||
				a.str("to") != tt.form.Get("To") {
				t.Errorf("resource fields wrong: %s", a.raw)
			}
			if _, err := time.Parse(time.RFC1123Z, a.str("date_created")); err != nil {
				t.Errorf("date_created: %v", err)
			}
			for _, null := range []string{"price", "error_code", "error_message", "date_sent"} {
				if v, ok := a.fields[null]; !ok || v != nil {
					t.Errorf("%s = %v, want null", null, v)
				}
			}
			if !strings.HasSuffix(a.str("uri"), "/Messages/"+a.str("sid")+".json") {
				t.Errorf("uri = %q", a.str("uri"))
			}
			if m, ok := sim.Message(a.str("sid")); !ok || m.To != tt.form.Get("To") {
				t.Errorf("message not retained under its sid: %+v %v", m, ok)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{AccountSID: "ACabc", AuthToken: "secret1"})
	form := sms("+4915112345678", "Hallo")
	tests := []struct {
		name, path, user, pass string
	}{
		{"no auth", "ACabc", "", ""},
		{"wrong token", "ACabc", "ACabc", "secret2"},
		{"wrong user", "ACabc", "ACxyz", "secret1"},
		{"other account in path", "ACxyz", "ACabc", "secret1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := createAs(t, base, tt.path, tt.user, tt.pass, form)
			if a.status != 401 || a.code() != 20003 {
				t.Errorf("got %d %s, want 401 code 20003", a.status, a.raw)
			}
		})
	}
	if a := createAs(t, base, "ACabc", "ACabc", "secret1", form); a.status != 201 {
		t.Fatalf("right credentials: %d %s", a.status, a.raw)
	}
	if sim.Count() != 1 {
		t.Errorf("Count = %d, want 1 (rejected requests are not messages)", sim.Count())
	}
}

func TestSegmentsInAnswer(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	tests := []struct {
		body string
		want string
	}{
		{"Hallo Frau Müller, Grüße aus Straßburg", "1"},
		{strings.Repeat("a", 160), "1"},
		{strings.Repeat("a", 161), "2"},
		{strings.Repeat("€", 80), "1"},
		{strings.Repeat("€", 81), "2"},
		{strings.Repeat("a", 152) + strings.Repeat("€", 77), "3"}, // € is not split across parts
		{"Vertrag endet – bitte melden", "1"},                     // en dash: UCS-2
		{strings.Repeat("–", 71), "2"},
		{strings.Repeat("😀", 36), "2"},
	}
	for _, tt := range tests {
		a := create(t, sim, base, sms("+4915112345678", tt.body))
		if a.status != 201 || a.str("num_segments") != tt.want {
			t.Errorf("%.20q…: %d num_segments %q, want %q", tt.body, a.status, a.str("num_segments"), tt.want)
		}
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	const to = "+4915100000001"
	sim.FailNext(to, twiliosim.RateLimited())
	sim.FailNext("whatsapp:"+to, twiliosim.Failure{Status: 503}) // same recipient, queued behind
	sim.FailNext(to, twiliosim.InvalidNumber())
	other := create(t, sim, base, sms("+4915100000002", "x"))
	if other.status != 201 {
		t.Fatalf("other recipient failed: %s", other.raw)
	}
	for _, want := range []struct{ status, code int }{{429, 20429}, {503, 20500}, {400, 21211}, {201, 0}} {
		a := create(t, sim, base, sms(to, "x"))
		if a.status != want.status || a.code() != want.code {
			t.Fatalf("got %d %s, want %d code %d", a.status, a.raw, want.status, want.code)
		}
	}
	if got := len(sim.MessagesTo(to)); got != 1 {
		t.Errorf("MessagesTo = %d messages, want 1", got)
	}
}

func TestFailNextNAndEvery(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	sim.FailNextN(2, twiliosim.ServerError())
	var got []int
	for range 3 {
		got = append(got, create(t, sim, base, sms("+4915100000003", "x")).status)
	}
	if want := []int{500, 500, 201}; !slices.Equal(got, want) {
		t.Errorf("FailNextN: statuses %v, want %v", got, want)
	}

	sim.FailEvery(3, twiliosim.RateLimited())
	got = got[:0]
	for range 7 {
		got = append(got, create(t, sim, base, sms("+4915100000004", "x")).status)
	}
	if want := []int{201, 201, 429, 201, 201, 429, 201}; !slices.Equal(got, want) {
		t.Errorf("FailEvery: statuses %v, want %v", got, want)
	}
	sim.ClearFailures()
	for range 3 {
		if a := create(t, sim, base, sms("+4915100000004", "x")); a.status != 201 {
			t.Fatalf("after ClearFailures: %s", a.raw)
		}
	}
}

func TestFailuresOverHTTP(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	postForm := func(form url.Values) int {
		res, err := http.PostForm(base+"/sim/failures", form)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := postForm(url.Values{"to": {"+4915100000005"}, "status": {"429"}, "count": {"2"}}); s != 204 {
		t.Fatalf("POST /sim/failures = %d", s)
	}
	for i, want := range []int{429, 429, 201} {
		if a := create(t, sim, base, sms("+4915100000005", "x")); a.status != want {
			t.Errorf("request %d: %d, want %d", i, a.status, want)
		}
	}
	if s := postForm(url.Values{"count": {"1"}, "status": {"400"}, "code": {"21614"}}); s != 204 {
		t.Fatalf("POST /sim/failures = %d", s)
	}
	if a := create(t, sim, base, sms("+4915100000006", "x")); a.status != 400 || a.code() != 21614 {
		t.Errorf("global failure: %s", a.raw)
	}
	if s := postForm(url.Values{"every": {"1"}}); s != 204 {
		t.Fatalf("POST /sim/failures = %d", s)
	}
	if a := create(t, sim, base, sms("+4915100000006", "x")); a.status != 500 {
		t.Errorf("every=1: %d", a.status)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, base+"/sim/failures", nil)
	if a := do(t, req); a.status != 204 {
		t.Fatalf("DELETE /sim/failures = %d", a.status)
	}
	if a := create(t, sim, base, sms("+4915100000006", "x")); a.status != 201 {
		t.Errorf("after DELETE: %d", a.status)
	}
	for _, bad := range []url.Values{{"status": {"200"}}, {"count": {"-1"}}, {"every": {"x"}}} {
		if s := postForm(bad); s != 400 {
			t.Errorf("POST %v = %d, want 400", bad, s)
		}
	}
}

func TestPage(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	create(t, sim, base, sms("+4915100000010", "erste Nachricht"))
	create(t, sim, base, sms("+4915100000011", `<script>alert("x")</script> zweite`))
	create(t, sim, base, url.Values{"To": {"whatsapp:+4915100000012"}, "From": {"whatsapp:+4930123456"},
		"ContentSid": {hx}, "ContentVariables": {`{"1":"Erika <b>"}`}})
	sim.FailNext("+4915100000013", twiliosim.RateLimited())
	create(t, sim, base, sms("+4915100000013", "x"))

	a := get(t, base+"/")
	if a.status != 200 {
		t.Fatalf("GET / = %d", a.status)
	}
	page := a.raw
	for _, want := range []string{
		"Versendete SMS &amp; WhatsApp",
		"&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; zweite",
		"Vorlage " + hx, "1 = Erika &lt;b&gt;",
		"WhatsApp", "4915100000012", // html/template writes + as &#43;
		"Abgelehnte Anfragen", "Too Many Requests", "(simuliert)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") || strings.Contains(page, "Erika <b>") {
		t.Error("page carries unescaped HTML from a message")
	}
	if i, j := strings.Index(page, "zweite"), strings.Index(page, "erste Nachricht"); i < 0 || j < 0 || i > j {
		t.Error("page is not newest first")
	}
	filtered := get(t, base+"/?to="+url.QueryEscape("+4915100000010")).raw
	if !strings.Contains(filtered, "erste Nachricht") || strings.Contains(filtered, "zweite") {
		t.Error("?to= does not filter the page")
	}
}

func TestPageLimitAndKeep(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{Keep: 4, PageLimit: 2})
	var sids []string
	for i, to := range []string{"+4915100000020", "+4915100000021", "+4915100000020", "+4915100000022", "+4915100000020", "+4915100000023"} {
		a := create(t, sim, base, sms(to, "Nachricht "+itoa(i)))
		sids = append(sids, a.str("sid"))
	}
	if sim.Count() != 6 {
		t.Errorf("Count = %d, want 6", sim.Count())
	}
	msgs := sim.Messages()
	if len(msgs) != 4 || msgs[0].SID != sids[2] || msgs[3].SID != sids[5] {
		t.Errorf("Messages kept the wrong ones: %d %v", len(msgs), msgs)
	}
	if got := sim.MessagesTo("+4915100000020"); len(got) != 2 || got[0].SID != sids[2] || got[1].SID != sids[4] {
		t.Errorf("MessagesTo after drop = %v", got)
	}
	if got := sim.MessagesTo("+4915100000021"); len(got) != 0 {
		t.Errorf("dropped recipient still indexed: %v", got)
	}
	if _, ok := sim.Message(sids[0]); ok {
		t.Error("dropped message still found by sid")
	}
	page := get(t, base+"/").raw
	if !strings.Contains(page, sids[5]) || !strings.Contains(page, sids[4]) || strings.Contains(page, sids[3]) {
		t.Error("page does not show exactly the newest 2")
	}
}

func TestListAndFetch(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	first := create(t, sim, base, sms("+4915100000030", "eins"))
	create(t, sim, base, sms("+4915100000031", "zwei"))
	create(t, sim, base, sms("+4915100000030", "drei"))

	var list struct {
		Count    int                 `json:"count"`
		Messages []twiliosim.Message `json:"messages"`
	}
	a := get(t, base+"/sim/messages.json?to="+url.QueryEscape("+4915100000030"))
	if err := json.Unmarshal([]byte(a.raw), &list); err != nil {
		t.Fatal(err)
	}
	if list.Count != 3 || len(list.Messages) != 2 || list.Messages[0].Body != "eins" || list.Messages[1].Body != "drei" {
		t.Errorf("list = %+v", list)
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet,
		base+"/2010-04-01/Accounts/"+sim.AccountSID()+"/Messages/"+first.str("sid")+".json", nil)
	req.SetBasicAuth(sim.AccountSID(), sim.AuthToken())
	if f := do(t, req); f.status != 200 || f.str("sid") != first.str("sid") || f.str("body") != "eins" {
		t.Errorf("fetch = %d %s", f.status, f.raw)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet,
		base+"/2010-04-01/Accounts/"+sim.AccountSID()+"/Messages/SMffff.json", nil)
	req.SetBasicAuth(sim.AccountSID(), sim.AuthToken())
	if f := do(t, req); f.status != 404 || f.code() != 20404 {
		t.Errorf("fetch unknown = %d %s", f.status, f.raw)
	}

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/sim/reset", nil)
	do(t, req)
	if sim.Count() != 0 || len(sim.Messages()) != 0 || len(sim.MessagesTo("+4915100000030")) != 0 {
		t.Error("reset kept messages")
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	sim := twiliosim.New(twiliosim.Config{})
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(ctx); err == nil {
		t.Error("second Start succeeded")
	}
	base := sim.URL()
	if a := create(t, sim, base, sms("+4915100000040", "x")); a.status != 201 {
		t.Fatalf("create: %s", a.raw)
	}
	cancel() // a done ctx closes the server
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.Get(base + "/")
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if err == nil {
			res.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("server still answers after its ctx was cancelled")
		}
	}
	if err := sim.Stop(context.Background()); err != nil {
		t.Errorf("Stop after close: %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
