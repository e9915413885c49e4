// Package twiliosim is a local HTTP server that behaves like Twilio's
// Programmable Messaging API (POST /2010-04-01/Accounts/{sid}/Messages.json)
// closely enough for the twilio-go client: basic auth, Twilio's validation
// and error codes, Twilio-shaped message resources.
//
// Tests use it to exercise the SMS/WhatsApp adapter through the real client,
// `dialogwerk demo` shows its page ("Versendete SMS & WhatsApp") so a person
// can read what went out, and benchmarks drive it at thousands of messages a
// second. Failures can be injected from Go (FailNext, FailNextN, FailEvery)
// or over HTTP (POST /sim/failures); Twilio's magic test numbers
// (+15005550001 invalid, +15005550002 unreachable, +15005550003 no
// permission, +15005550004 unsubscribed, +15005550009 not a mobile) always
// fail permanently.
//
// Routes:
//
//	POST   /2010-04-01/Accounts/{sid}/Messages.json      create (Twilio API)
//	GET    /2010-04-01/Accounts/{sid}/Messages/{sid}.json fetch (Twilio API)
//	GET    /                       HTML page, newest first (?to=, ?limit=)
//	GET    /sim/messages.json      retained messages as JSON (?to=, ?limit=)
//	POST   /sim/failures           inject failures (form: to, status, code, message, count, every)
//	DELETE /sim/failures           clear injected failures
//	POST   /sim/reset              forget messages and failures
package twiliosim

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default credentials the sim accepts when Config leaves them empty. Both are
// alphanumeric, as twilio-go requires.
const (
	DefaultAccountSID = "AC00000000000000000000000000d1a1"
	DefaultAuthToken  = "d1a109e4c0000000000000000000000f"
)

// Config configures a Server. The zero value is usable.
type Config struct {
	// AccountSID is the account the sim serves; requests must use it both in
	// the path and as the basic-auth user. Default DefaultAccountSID.
	AccountSID string
	// AuthToken is the basic-auth password the sim accepts. Default
	// DefaultAuthToken.
	AuthToken string
	// Addr is the TCP address Start listens on. Default "127.0.0.1:0" (a
	// random free port on loopback).
	Addr string
	// Latency delays every create/fetch request by this much before it is
	// answered (a cancelled request returns early). Default 0.
	Latency time.Duration
	// Keep is how many accepted messages stay retained for inspection; beyond
	// it the oldest are dropped. Default 100,000.
	Keep int
	// PageLimit is how many messages the HTML page shows at most, newest
	// first. Default 500.
	PageLimit int
}

func (c Config) withDefaults() Config {
	if c.AccountSID == "" {
		c.AccountSID = DefaultAccountSID
	}
	if c.AuthToken == "" {
		c.AuthToken = DefaultAuthToken
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Keep <= 0 {
		c.Keep = 100_000
	}
	if c.PageLimit <= 0 {
		c.PageLimit = 500
	}
	return c
}

// Message is one message the sim accepted. Values returned by the Server are
// copies; Server never changes a message after accepting it.
type Message struct {
	SID                 string            `json:"sid"`
	AccountSID          string            `json:"account_sid"`
	Channel             string            `json:"channel"` // "sms" or "whatsapp"
	To                  string            `json:"to"`      // as sent, e.g. "whatsapp:+4915112345678"
	From                string            `json:"from,omitempty"`
	MessagingServiceSID string            `json:"messaging_service_sid,omitempty"`
	Body                string            `json:"body,omitempty"`
	ContentSID          string            `json:"content_sid,omitempty"`
	ContentVariables    map[string]string `json:"content_variables,omitempty"`
	MediaURLs           []string          `json:"media_urls,omitempty"`
	StatusCallback      string            `json:"status_callback,omitempty"`
	// Segments is the SMS segment count of Body (1 for WhatsApp, templates
	// and media-only messages).
	Segments int       `json:"segments"`
	Created  time.Time `json:"created"`
}

// Recipient is To without the "whatsapp:" prefix.
func (m Message) Recipient() string {
	r, _ := strings.CutPrefix(m.To, "whatsapp:")
	return r
}

// Server is the simulated Twilio API. It implements http.Handler, so it can
// be mounted in an httptest.Server, or run on its own with Start.
type Server struct {
	cfg       Config
	mux       *http.ServeMux
	page      *template.Template
	loc       *time.Location
	sidPrefix string // 16 random hex digits
	seq       atomic.Uint64
	accepted  atomic.Uint64
	store     store
	fail      failures
	rejected  rejectLog

	mu        sync.Mutex // guards the lifecycle fields below
	srv       *http.Server
	url       string
	done      chan struct{}
	serveErr  error
	stopAfter func() bool // unregisters the Start ctx hook
}

// New returns a Server for cfg. It does not listen until Start is called.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	var seed [8]byte
	_, _ = rand.Read(seed[:]) // never fails (crypto/rand panics instead)
	s := &Server{
		cfg:       cfg,
		mux:       http.NewServeMux(),
		page:      template.Must(template.New("page").Parse(pageTemplate)),
		loc:       berlin(),
		sidPrefix: hex.EncodeToString(seed[:]),
		store:     newStore(cfg.Keep),
		fail:      failures{next: map[string][]Failure{}},
	}
	s.mux.HandleFunc("POST /2010-04-01/Accounts/{account}/Messages.json", s.handleCreate)
	s.mux.HandleFunc("GET /2010-04-01/Accounts/{account}/Messages/{file}", s.handleFetch)
	s.mux.HandleFunc("GET /{$}", s.handlePage)
	s.mux.HandleFunc("GET /sim/messages.json", s.handleList)
	s.mux.HandleFunc("POST /sim/failures", s.handleFailures)
	s.mux.HandleFunc("DELETE /sim/failures", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFailures()
		w.WriteHeader(http.StatusNoContent)
	})
	s.mux.HandleFunc("POST /sim/reset", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return s
}

func berlin() *time.Location {
	if loc, err := time.LoadLocation("Europe/Berlin"); err == nil {
		return loc
	}
	return time.Local
}

// AccountSID is the account SID the server accepts.
func (s *Server) AccountSID() string { return s.cfg.AccountSID }

// AuthToken is the auth token the server accepts.
func (s *Server) AuthToken() string { return s.cfg.AuthToken }

// ServeHTTP serves the Twilio API routes, the page and the /sim/ routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Start listens on Config.Addr and serves in the background until Stop or
// Close is called or ctx is done. A Server starts at most once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("twiliosim: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("twiliosim: listening on %s: %w", s.cfg.Addr, err)
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	s.url = "http://" + ln.Addr().String()
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.mu.Lock()
			s.serveErr = err
			s.mu.Unlock()
		}
	}()
	s.stopAfter = context.AfterFunc(ctx, func() { _ = s.Close() })
	return nil
}

// URL is the base URL of a started server ("http://127.0.0.1:port"), or ""
// before Start.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// Stop shuts the server down gracefully, waiting for requests in flight; when
// ctx ends first it closes the remaining connections. It returns the serve
// error, if any. Stopping a server that is not running does nothing.
func (s *Server) Stop(ctx context.Context) error {
	return s.shutdown(func(srv *http.Server) error {
		if err := srv.Shutdown(ctx); err != nil {
			return srv.Close()
		}
		return nil
	})
}

// Close stops the server at once, closing all connections.
func (s *Server) Close() error {
	return s.shutdown((*http.Server).Close)
}

func (s *Server) shutdown(stop func(*http.Server) error) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	if s.stopAfter != nil {
		s.stopAfter()
	}
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := stop(srv)
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(err, s.serveErr)
}

// Count is the number of messages accepted since start (or the last Reset),
// including those no longer retained.
func (s *Server) Count() int { return int(s.accepted.Load()) }

// Messages returns the retained messages, oldest first.
func (s *Server) Messages() []Message { return s.store.all() }

// MessagesTo returns the retained messages to recipient, oldest first, over
// both channels. recipient is an E.164 number, with or without the
// "whatsapp:" prefix.
func (s *Server) MessagesTo(recipient string) []Message {
	r, _ := strings.CutPrefix(recipient, "whatsapp:")
	return s.store.to(r)
}

// Message returns the retained message with the given SID.
func (s *Server) Message(sid string) (Message, bool) { return s.store.get(sid) }

// Reset forgets all messages, rejections and injected failures.
func (s *Server) Reset() {
	s.store.reset()
	s.accepted.Store(0)
	s.rejected.reset()
	s.ClearFailures()
}

// handleCreate is POST /2010-04-01/Accounts/{account}/Messages.json.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	// Read the body before the delay: only then does net/http notice a
	// client that gives up.
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		s.reject(w, "", &apiError{400, 20001, "Could not parse the request body."}, false)
		return
	}
	if !s.delay(r) {
		return
	}
	to := r.PostForm.Get("To")
	recipient, _ := strings.CutPrefix(to, "whatsapp:")
	if f, ok := s.fail.take(recipient); ok {
		s.reject(w, recipient, f.apiError(), true)
		return
	}
	q, e := validate(r.PostForm)
	if e == nil {
		e = magic(q.recipient)
	}
	if e != nil {
		s.reject(w, recipient, e, false)
		return
	}

	now := time.Now().UTC()
	m := &Message{
		SID:                 s.newSID(),
		AccountSID:          s.cfg.AccountSID,
		Channel:             "sms",
		To:                  q.to,
		From:                q.from,
		MessagingServiceSID: q.service,
		Body:                q.body,
		ContentSID:          q.contentSID,
		ContentVariables:    q.contentVars,
		MediaURLs:           q.media,
		StatusCallback:      q.statusCallback,
		Segments:            1,
		Created:             now,
	}
	if q.whatsapp {
		m.Channel = "whatsapp"
	} else if q.contentSID == "" && q.body != "" {
		m.Segments = segments(q.body)
	}
	s.store.add(m)
	s.accepted.Add(1)
	s.writeResource(w, http.StatusCreated, m, q.viaServiceNoSender)
}

// handleFetch is GET /2010-04-01/Accounts/{account}/Messages/{sid}.json.
func (s *Server) handleFetch(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) || !s.delay(r) {
		return
	}
	sid, ok := strings.CutSuffix(r.PathValue("file"), ".json")
	m, found := s.store.get(sid)
	if !ok || !found {
		writeError(w, &apiError{404, 20404, "The requested resource " + r.URL.Path + " was not found"})
		return
	}
	s.writeResource(w, http.StatusOK, &m, false)
}

// authorized checks basic auth and the account in the path; it answers 401
// itself when they do not match.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if ok &&
		subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.AccountSID)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.AuthToken)) == 1 &&
		r.PathValue("account") == s.cfg.AccountSID {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
	s.rejected.add(rejection{Time: time.Now(), Status: 401, Code: 20003, Message: "Authenticate"})
	writeError(w, &apiError{401, 20003, "Authenticate"})
	return false
}

// delay waits Config.Latency; it reports false when the request was
// cancelled meanwhile.
func (s *Server) delay(r *http.Request) bool {
	if s.cfg.Latency <= 0 {
		return true
	}
	t := time.NewTimer(s.cfg.Latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (s *Server) reject(w http.ResponseWriter, recipient string, e *apiError, injected bool) {
	s.rejected.add(rejection{Time: time.Now(), To: recipient, Status: e.Status, Code: e.Code, Message: e.Message, Injected: injected})
	writeError(w, e)
}

// newSID returns "SM" and 32 lowercase hex digits: a random per-server
// prefix and a sequence number, so SIDs are unique without locking.
func (s *Server) newSID() string {
	var b [34]byte
	b[0], b[1] = 'S', 'M'
	copy(b[2:18], s.sidPrefix)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], s.seq.Add(1))
	hex.Encode(b[18:], n[:])
	return string(b[:])
}

// resource is Twilio's JSON message resource.
type resource struct {
	AccountSID          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                string            `json:"body"`
	DateCreated         string            `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         string            `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                *string           `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	SID                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
	To                  string            `json:"to"`
	URI                 string            `json:"uri"`
}

// writeResource answers with m as Twilio's message resource. A message sent
// through a Messaging Service without From is answered like Twilio does
// before it picked a sender: status "accepted", from null, num_segments "0".
func (s *Server) writeResource(w http.ResponseWriter, status int, m *Message, viaServiceNoSender bool) {
	uri := "/2010-04-01/Accounts/" + m.AccountSID + "/Messages/" + m.SID
	date := m.Created.Format(time.RFC1123Z)
	res := resource{
		AccountSID:      m.AccountSID,
		APIVersion:      "2010-04-01",
		Body:            m.Body,
		DateCreated:     date,
		DateUpdated:     date,
		Direction:       "outbound-api",
		NumMedia:        strconv.Itoa(len(m.MediaURLs)),
		NumSegments:     strconv.Itoa(m.Segments),
		PriceUnit:       "USD",
		SID:             m.SID,
		Status:          "queued",
		SubresourceURIs: map[string]string{"media": uri + "/Media.json", "feedback": uri + "/Feedback.json"},
		To:              m.To,
		URI:             uri + ".json",
	}
	if m.From != "" {
		res.From = &m.From
	}
	if m.MessagingServiceSID != "" {
		res.MessagingServiceSID = &m.MessagingServiceSID
	}
	if viaServiceNoSender {
		res.Status, res.NumSegments = "accepted", "0"
	}
	writeJSON(w, status, &res)
}

// handleList is GET /sim/messages.json.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	limit := s.cfg.Keep
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "limit must be a non-negative number", http.StatusBadRequest)
			return
		}
		limit = n
	}
	to, _ := strings.CutPrefix(r.URL.Query().Get("to"), "whatsapp:")
	msgs := s.store.newest(limit, to)
	// newest returns newest first; the list is chronological.
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	writeJSON(w, http.StatusOK, struct {
		Count    int       `json:"count"`
		Messages []Message `json:"messages"`
	}{s.Count(), msgs})
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, struct {
		Code     int    `json:"code"`
		Message  string `json:"message"`
		MoreInfo string `json:"more_info"`
		Status   int    `json:"status"`
	}{e.Code, e.Message, fmt.Sprintf("https://www.twilio.com/docs/errors/%d", e.Code), e.Status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
