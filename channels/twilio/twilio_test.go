package twilio_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/channeltest"
	"github.com/dialogwerk/dialogwerk/channels/twilio"
	"github.com/dialogwerk/dialogwerk/channels/twiliosim"
	"github.com/dialogwerk/dialogwerk/engine"
)

var _ engine.Sender = (*twilio.Sender)(nil)

const (
	hx = "HX0123456789abcdef0123456789abcdef"
	mg = "MG0123456789abcdef0123456789abcdef"
)

// newSim mounts a fresh sim in an httptest server and returns it with its
// URL.
func newSim(t testing.TB, cfg twiliosim.Config) (*twiliosim.Server, string) {
	t.Helper()
	sim := twiliosim.New(cfg)
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	return sim, ts.URL
}

// newSender returns a Sender pointed at base with the sim's default
// credentials, after edit changed the config.
func newSender(t testing.TB, base string, edit func(*twilio.Config)) *twilio.Sender {
	t.Helper()
	cfg := twilio.Config{
		AccountSID:   twiliosim.DefaultAccountSID,
		AuthToken:    twiliosim.DefaultAuthToken,
		From:         "+4930123456",
		WhatsAppFrom: "+4930654321",
		BaseURL:      base,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := twilio.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind   channels.Kind
		prefix string
	}{
		{channels.SMS, "+4915100"},
		{channels.WhatsApp, "+4917000"},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			t.Parallel()
			sim := twiliosim.New(twiliosim.Config{})
			if err := sim.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sim.Stop(context.Background()) })
			channeltest.Run(t, channeltest.Harness{
				Channel:        tt.kind,
				Sender:         newSender(t, sim.URL(), nil),
				Address:        func(i int) string { return fmt.Sprintf("%s%06d", tt.prefix, i) },
				InvalidAddress: "0151 1234567",
				Received: func(t *testing.T, to string) []channeltest.Received {
					var out []channeltest.Received
					for _, m := range sim.MessagesTo(to) {
						if m.Channel != string(tt.kind) {
							t.Errorf("message to %s went out as %s", m.SID, m.Channel)
						}
						out = append(out, channeltest.Received{To: m.Recipient(), Text: m.Body, ProviderID: m.SID})
					}
					return out
				},
				FailNext: func(t *testing.T, to string, transient bool) {
					f := twiliosim.InvalidNumber()
					if transient {
						f = twiliosim.Unavailable()
					}
					sim.FailNext(to, f)
				},
			})
		})
	}
}

func TestWhatsAppTemplate(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	s := newSender(t, base, nil)
	rc, err := s.Send(t.Context(), channels.Message{
		Key:              "tpl-1",
		Channel:          channels.WhatsApp,
		To:               "+4917000000001",
		Text:             "Vorschau, wird nicht gesendet",
		ContentSID:       hx,
		ContentVariables: map[string]string{"1": "Erika", "2": "31.12.2026"},
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	m, ok := sim.Message(rc.ProviderID)
	if !ok {
		t.Fatalf("sim has no message %s", rc.ProviderID)
	}
	if m.Channel != "whatsapp" || m.To != "whatsapp:+4917000000001" || m.From != "whatsapp:+4930654321" {
		t.Errorf("addressing: channel %s to %s from %s", m.Channel, m.To, m.From)
	}
	if m.ContentSID != hx || m.ContentVariables["1"] != "Erika" || m.ContentVariables["2"] != "31.12.2026" || len(m.ContentVariables) != 2 {
		t.Errorf("template: %s %v", m.ContentSID, m.ContentVariables)
	}
	if m.Body != "" {
		t.Errorf("template message carried a Body %q", m.Body)
	}
	if rc.Segments != 0 {
		t.Errorf("WhatsApp receipt has %d segments, want 0", rc.Segments)
	}
}

func TestMessagingService(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	s := newSender(t, base, func(c *twilio.Config) { c.From, c.WhatsAppFrom, c.MessagingServiceSID = "", "", mg })
	body := strings.Repeat("Ihr Abschlag ändert sich. ", 8) // 208 GSM-7 characters: 2 segments
	for _, kind := range []channels.Kind{channels.SMS, channels.WhatsApp} {
		rc, err := s.Send(t.Context(), channels.Message{Key: "mg-" + string(kind), Channel: kind, To: "+4915100000002", Text: body})
		if err != nil {
			t.Fatalf("%s: Send: %v", kind, err)
		}
		m, _ := sim.Message(rc.ProviderID)
		if m.MessagingServiceSID != mg || m.From != "" || m.Channel != string(kind) {
			t.Errorf("%s: sim got service %q from %q channel %s", kind, m.MessagingServiceSID, m.From, m.Channel)
		}
		// Through a service Twilio answers num_segments "0"; the adapter counts.
		if want := map[channels.Kind]int{channels.SMS: 2, channels.WhatsApp: 0}[kind]; rc.Segments != want {
			t.Errorf("%s: receipt segments = %d, want %d", kind, rc.Segments, want)
		}
	}
}

// TestSegmentsAgreeWithSim sends bodies through the sim, whose segment count
// is an independent implementation, and compares.
func TestSegmentsAgreeWithSim(t *testing.T) {
	t.Parallel()
	_, base := newSim(t, twiliosim.Config{})
	s := newSender(t, base, nil)
	for i, body := range segmentBodies() {
		rc, err := s.Send(t.Context(), channels.Message{Key: fmt.Sprint("seg-", i), Channel: channels.SMS, To: "+4915100000003", Text: body.body})
		if err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		if rc.Segments != body.want || twilio.Segments(body.body) != body.want {
			t.Errorf("body %d (%.20q…): sim says %d, Segments says %d, want %d",
				i, body.body, rc.Segments, twilio.Segments(body.body), body.want)
		}
	}
}

func TestClassification(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	s := newSender(t, base, nil)
	tests := []struct {
		name      string
		to        string
		fail      *twiliosim.Failure
		transient bool
		code      string
	}{
		{"rate limited", "+4915100000010", &twiliosim.Failure{Status: 429}, true, "20429"},
		{"server error", "+4915100000011", &twiliosim.Failure{Status: 500}, true, "20500"},
		{"unavailable", "+4915100000012", &twiliosim.Failure{Status: 503}, true, "20500"},
		{"invalid number", "+4915100000013", &twiliosim.Failure{Status: 400, Code: 21211}, false, "21211"},
		{"not found", "+4915100000014", &twiliosim.Failure{Status: 404}, false, "20404"},
		{"magic not mobile", "+15005550009", nil, false, "21614"},
		{"magic unsubscribed", "+15005550004", nil, false, "21610"},
		{"invalid before sending", "+49 151 000", nil, false, "21211"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.fail != nil {
				sim.FailNext(tt.to, *tt.fail)
			}
			_, err := s.Send(t.Context(), channels.Message{Key: "cls-1", Channel: channels.SMS, To: tt.to, Text: "Hallo"})
			checkFailure(t, err, tt.transient, tt.code)
			if strings.Contains(err.Error(), strings.TrimPrefix(tt.to, "+")) || strings.Contains(err.Error(), "Hallo") {
				t.Errorf("error leaks the number or body: %v", err)
			}
			if !strings.Contains(err.Error(), "cls-1") {
				t.Errorf("error does not name the message key: %v", err)
			}
		})
	}
}

func TestRateLimitThenServerErrorThenSuccess(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	s := newSender(t, base, nil)
	const to = "+4915100000020"
	sim.FailNext(to, twiliosim.RateLimited())
	sim.FailNext(to, twiliosim.ServerError())
	msg := channels.Message{Key: "seq-1", Channel: channels.SMS, To: to, Text: "Hallo"}
	_, err := s.Send(t.Context(), msg)
	checkFailure(t, err, true, "20429")
	_, err = s.Send(t.Context(), msg)
	checkFailure(t, err, true, "20500")
	if _, err := s.Send(t.Context(), msg); err != nil {
		t.Fatalf("third Send: %v", err)
	}
	if len(sim.MessagesTo(to)) != 1 {
		t.Errorf("sim has %d messages, want 1", len(sim.MessagesTo(to)))
	}
}

func TestAPIErrorExposed(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	s := newSender(t, base, nil)
	sim.FailNext("+4915100000021", twiliosim.RateLimited())
	_, err := s.Send(t.Context(), channels.Message{Key: "k", Channel: channels.SMS, To: "+4915100000021", Text: "x"})
	var apiErr *twilio.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 429 || apiErr.Code != 20429 {
		t.Fatalf("errors.As APIError: %v (%+v)", err, apiErr)
	}
}

func TestTimeoutIsTransient(t *testing.T) {
	t.Parallel()
	_, base := newSim(t, twiliosim.Config{Latency: 5 * time.Second})
	s := newSender(t, base, func(c *twilio.Config) { c.Timeout = 50 * time.Millisecond })
	start := time.Now()
	_, err := s.Send(t.Context(), channels.Message{Key: "slow-1", Channel: channels.SMS, To: "+4915100000030", Text: "x"})
	checkFailure(t, err, true, "timeout")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Send took %v with a 50ms timeout", d)
	}
}

func TestCallerCancelStopsSend(t *testing.T) {
	t.Parallel()
	sim := twiliosim.New(twiliosim.Config{Latency: 10 * time.Second})
	arrived := make(chan struct{}, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	s := newSender(t, ts.URL, nil)

	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived // the request is at the server
		cancel()
	}()
	start := time.Now()
	_, err := s.Send(ctx, channels.Message{Key: "cancel-1", Channel: channels.SMS, To: "+4915100000031", Text: "x"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if channels.IsTransient(err) || errors.Is(err, channels.ErrPermanent) {
		t.Errorf("cancellation was classified: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send returned after %v", d)
	}

	dctx, dcancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer dcancel()
	_, err = s.Send(dctx, channels.Message{Key: "cancel-2", Channel: channels.SMS, To: "+4915100000031", Text: "x"})
	if !errors.Is(err, context.DeadlineExceeded) || channels.IsTransient(err) {
		t.Errorf("caller deadline: err = %v, want unclassified context.DeadlineExceeded", err)
	}
}

func TestBadCredentialsArePermanent(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	s := newSender(t, base, func(c *twilio.Config) { c.AuthToken = "wrongtoken0000000000000000000000" })
	_, err := s.Send(t.Context(), channels.Message{Key: "auth-1", Channel: channels.SMS, To: "+4915100000040", Text: "x"})
	checkFailure(t, err, false, "20003")
	if sim.Count() != 0 {
		t.Error("sim accepted a message with a wrong token")
	}
}

func TestNonTwilioAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		body      string
		transient bool
		code      string
	}{
		{"proxy 502 page", 502, "<html>Bad Gateway</html>", true, "502"},
		{"proxy 403 page", 403, "<html>Forbidden</html>", false, "403"},
		{"unreadable success", 201, `{"sid": "SM`, false, "response"},
		{"success without sid", 201, `{"status":"queued"}`, false, "response"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var hits atomic.Int32
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}))
			t.Cleanup(ts.Close)
			s := newSender(t, ts.URL, nil)
			_, err := s.Send(t.Context(), channels.Message{Key: "odd-1", Channel: channels.SMS, To: "+4915100000050", Text: "x"})
			checkFailure(t, err, tt.transient, tt.code)
			if hits.Load() != 1 {
				t.Errorf("server saw %d requests, want 1", hits.Load())
			}
		})
	}
}

func TestConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSender(t, "http://"+addr, nil)
	_, err = s.Send(t.Context(), channels.Message{Key: "net-1", Channel: channels.SMS, To: "+4915100000060", Text: "x"})
	checkFailure(t, err, true, "network")
}

func TestBaseURLWithPathPrefix(t *testing.T) {
	t.Parallel()
	sim := twiliosim.New(twiliosim.Config{})
	mux := http.NewServeMux()
	mux.Handle("/twilio/", http.StripPrefix("/twilio", sim))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	s := newSender(t, ts.URL+"/twilio/", nil)
	rc, err := s.Send(t.Context(), channels.Message{Key: "prefix-1", Channel: channels.SMS, To: "+4915100000070", Text: "x"})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if _, ok := sim.Message(rc.ProviderID); !ok {
		t.Error("sim behind the prefix did not get the message")
	}
}

func TestRefusedWithoutRequest(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	smsOnly := newSender(t, base, func(c *twilio.Config) { c.WhatsAppFrom = "" })
	tests := []struct {
		name string
		msg  channels.Message
		code string
	}{
		{"email channel", channels.Message{Channel: channels.Email, To: "+4915100000080", Text: "x"}, "channel"},
		{"empty body", channels.Message{Channel: channels.SMS, To: "+4915100000080"}, "21619"},
		{"body too long", channels.Message{Channel: channels.SMS, To: "+4915100000080", Text: strings.Repeat("x", 1601)}, "21617"},
		{"whatsapp prefix in To", channels.Message{Channel: channels.WhatsApp, To: "whatsapp:+4915100000080", Text: "x"}, "21211"},
		{"no whatsapp sender", channels.Message{Channel: channels.WhatsApp, To: "+4915100000080", Text: "x"}, "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.msg.Key = "refuse-1"
			s := newSender(t, base, nil)
			if tt.code == "config" {
				s = smsOnly
			}
			_, err := s.Send(t.Context(), tt.msg)
			checkFailure(t, err, false, tt.code)
		})
	}
	if sim.Count() != 0 {
		t.Errorf("sim got %d messages, want none", sim.Count())
	}
	if smsOnly.Supports(channels.WhatsApp) || !smsOnly.Supports(channels.SMS) || smsOnly.Supports(channels.Email) {
		t.Error("Supports does not reflect the configured senders")
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	ok := twilio.Config{AccountSID: "AC1", AuthToken: "tok", From: "+4930123456"}
	tests := []struct {
		name  string
		edit  func(*twilio.Config)
		valid bool
	}{
		{"minimal", func(*twilio.Config) {}, true},
		{"alphanumeric sender", func(c *twilio.Config) { c.From = "Stadtwerk" }, true},
		{"service only", func(c *twilio.Config) { c.From, c.MessagingServiceSID = "", mg }, true},
		{"whatsapp only", func(c *twilio.Config) { c.From, c.WhatsAppFrom = "", "+4930123456" }, true},
		{"missing sid", func(c *twilio.Config) { c.AccountSID = "" }, false},
		{"sid with dash", func(c *twilio.Config) { c.AccountSID = "AC-1" }, false},
		{"token with symbol", func(c *twilio.Config) { c.AuthToken = "tok!" }, false},
		{"missing token", func(c *twilio.Config) { c.AuthToken = "" }, false},
		{"no sender", func(c *twilio.Config) { c.From = "" }, false},
		{"from and service", func(c *twilio.Config) { c.MessagingServiceSID = mg }, false},
		{"bad from", func(c *twilio.Config) { c.From = "Stadtwerke Musterstadt" }, false},
		{"whatsapp prefix", func(c *twilio.Config) { c.WhatsAppFrom = "whatsapp:+4930123456" }, false},
		{"bad service", func(c *twilio.Config) { c.From, c.MessagingServiceSID = "", "MG1" }, false},
		{"relative base", func(c *twilio.Config) { c.BaseURL = "localhost:8080" }, false},
		{"bad callback", func(c *twilio.Config) { c.StatusCallback = "/status" }, false},
		{"negative timeout", func(c *twilio.Config) { c.Timeout = -1 }, false},
		{"negative conns", func(c *twilio.Config) { c.MaxConns = -1 }, false},
	}
	for _, tt := range tests {
		cfg := ok
		tt.edit(&cfg)
		s, err := twilio.New(cfg)
		if (err == nil) != tt.valid || (s != nil) != tt.valid {
			t.Errorf("%s: New = %v, %v; want valid %v", tt.name, s, err, tt.valid)
		}
		if err != nil && strings.Contains(err.Error(), cfg.AuthToken) && cfg.AuthToken != "" {
			t.Errorf("%s: error shows the token: %v", tt.name, err)
		}
	}
}

func TestStatusCallbackPassed(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, twiliosim.Config{})
	s := newSender(t, base, func(c *twilio.Config) { c.StatusCallback = "https://dialogwerk.example/twilio/status" })
	rc, err := s.Send(t.Context(), channels.Message{Key: "cb-1", Channel: channels.SMS, To: "+4915100000090", Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := sim.Message(rc.ProviderID); m.StatusCallback != "https://dialogwerk.example/twilio/status" {
		t.Errorf("StatusCallback = %q", m.StatusCallback)
	}
}

func checkFailure(t *testing.T, err error, transient bool, code string) {
	t.Helper()
	if err == nil {
		t.Fatal("Send succeeded, want a failure")
	}
	if channels.IsTransient(err) != transient || errors.Is(err, channels.ErrPermanent) == transient {
		t.Errorf("err = %v, want transient=%v", err, transient)
	}
	if got := channels.Code(err); got != code {
		t.Errorf("code = %q, want %q (err %v)", got, code, err)
	}
}

// BenchmarkSend drives the adapter against the sim over loopback TCP with
// many concurrent senders, as the engine's dispatch would.
func BenchmarkSend(b *testing.B) {
	sim := twiliosim.New(twiliosim.Config{})
	if err := sim.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sim.Stop(context.Background()) })
	s := newSender(b, sim.URL(), nil)
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			_, err := s.Send(context.Background(), channels.Message{
				Key:     fmt.Sprint("bench-", i),
				Channel: channels.SMS,
				To:      fmt.Sprintf("+49151%08d", i),
				Text:    "Hallo Frau Mustermann, Ihr Vertrag endet am 31.12. Grüße, Ihre Stadtwerke",
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if sim.Count() != b.N {
		b.Errorf("sim accepted %d, want %d", sim.Count(), b.N)
	}
}

// TestConnectionsReused checks that successes and error answers both leave
// the keep-alive connection usable, even when the answer is chunked and its
// end arrives after the JSON: twilio-go stops decoding before EOF and never
// closes error bodies.
func TestConnectionsReused(t *testing.T) {
	t.Parallel()
	var conns, reqs atomic.Int32
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if reqs.Add(1)%3 == 0 {
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"code":20429,"message":"Too Many Requests","status":429}`)
		} else {
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"sid":"SM0123456789abcdef0123456789abcdef","num_segments":"1"}`)
		}
		w.(http.Flusher).Flush() // chunked: the JSON's chunk, then the rest
		fmt.Fprintln(w)
	}))
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	s := newSender(t, ts.URL, nil)
	for i := 1; i <= 30; i++ {
		_, err := s.Send(t.Context(), channels.Message{Key: "conn", Channel: channels.SMS, To: "+4915100000100", Text: "x"})
		if (err != nil) != (i%3 == 0) {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("30 sequential sends opened %d connections, want 1", n)
	}
}
