package twiliosim

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"
)

func TestSegments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body string
		want int
	}{
		{"", 0},
		{"Hallo", 1},
		{strings.Repeat("a", 160), 1},
		{strings.Repeat("a", 161), 2},
		{strings.Repeat("a", 306), 2},
		{strings.Repeat("a", 307), 3},
		{strings.Repeat("Ä", 160), 1},
		{strings.Repeat("a", 159) + "€", 2},
		{strings.Repeat("€", 80), 1},
		{strings.Repeat("a", 152) + strings.Repeat("€", 77), 3},
		{strings.Repeat("–", 70), 1},
		{strings.Repeat("–", 71), 2},
		{strings.Repeat("–", 134), 2},
		{strings.Repeat("–", 135), 3},
		{strings.Repeat("😀", 35), 1},
		{strings.Repeat("ł", 66) + strings.Repeat("😀", 34), 3},
		{"\xff", 1},
	}
	for _, tt := range tests {
		if got := segments(tt.body); got != tt.want {
			t.Errorf("segments(%.20q…) = %d, want %d", tt.body, got, tt.want)
		}
	}
}

func FuzzValidate(f *testing.F) {
	for _, seed := range []url.Values{
		{"To": {"+4915112345678"}, "From": {"+4930123456"}, "Body": {"Hallo"}},
		{"To": {"whatsapp:+4915112345678"}, "From": {"whatsapp:+4930123456"}, "ContentSid": {"HX0123456789abcdef0123456789abcdef"}, "ContentVariables": {`{"1":"a"}`}},
		{"To": {"+4915112345678"}, "MessagingServiceSid": {"MG0123456789abcdef0123456789abcdef"}, "MediaUrl": {"https://example.org/x.png"}},
		{"To": {"whatsapp:+1"}, "From": {"Stadtwerk"}, "Body": {"€"}},
	} {
		f.Add(seed.Encode())
	}
	f.Fuzz(func(t *testing.T, raw string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, e := validate(form)
		if e != nil {
			if e.Status != http.StatusBadRequest || e.Code < 21000 || e.Code > 21999 || e.Message == "" {
				t.Fatalf("odd error %+v", e)
			}
			return
		}
		if !isE164(q.recipient) || q.to != form.Get("To") {
			t.Fatalf("accepted To %q", q.to)
		}
		if q.from == "" && q.service == "" {
			t.Fatal("accepted without sender")
		}
		if q.from != "" && strings.HasPrefix(q.from, "whatsapp:") != q.whatsapp {
			t.Fatalf("accepted channel mismatch %q → %q", q.from, q.to)
		}
		if q.body == "" && q.contentSID == "" && len(q.media) == 0 {
			t.Fatal("accepted without content")
		}
		if n := utf8.RuneCountInString(q.body); n > maxBody {
			t.Fatalf("accepted %d characters", n)
		}
		if n := segments(q.body); q.body != "" && (n < 1 || n > utf8.RuneCountInString(q.body)) {
			t.Fatalf("segments = %d for %d characters", n, utf8.RuneCountInString(q.body))
		}
	})
}

// BenchmarkServeHTTP measures the create handler alone, without a network.
func BenchmarkServeHTTP(b *testing.B) {
	s := New(Config{})
	path := "/2010-04-01/Accounts/" + s.AccountSID() + "/Messages.json"
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			form := url.Values{
				"To":   {fmt.Sprintf("+49151%08d", n.Add(1))},
				"From": {"+4930123456"},
				"Body": {"Hallo Frau Mustermann, Ihr Vertrag endet am 31.12. Grüße, Ihre Stadtwerke"},
			}
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(s.AccountSID(), s.AuthToken())
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code != http.StatusCreated {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
