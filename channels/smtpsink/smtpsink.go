// Package smtpsink is an in-process SMTP server for tests and benchmarks.
// It accepts every message on 127.0.0.1 and, in Keep mode (built on
// github.com/emersion/go-smtp), stores it parsed for assertions (envelope,
// decoded Subject, Message-ID, List-Unsubscribe, text and HTML parts)
// indexed by recipient. In Discard mode, where it stands in for an external
// provider in benchmarks, a minimal built-in responder only counts messages:
// it neither parses nor keeps them and allocates next to nothing per
// message. Failures can be injected per recipient (FailNext), the
// connections it saw are counted (Connections) and can be dropped
// (DropConnections) to test reconnecting clients, and Pipelined tells
// whether a client used PIPELINING (RFC 2920).
//
// It speaks plain SMTP only (no TLS); AUTH PLAIN is accepted without TLS.
package smtpsink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mode says what the sink does with a message's content.
type Mode int

const (
	// Keep parses and stores every message (the default).
	Keep Mode = iota
	// Discard skips the content and only counts messages: a benchmark
	// measures the client, not the sink.
	Discard
)

// Config configures a Sink; the zero value is a storing sink on a random
// port without authentication.
type Config struct {
	// Addr is the listen address. Default "127.0.0.1:0" (a free port).
	Addr string
	// Mode is Keep (store parsed messages) or Discard (count only).
	Mode Mode
	// Username and Password, when set, are the only credentials AUTH PLAIN
	// accepts, and a client must authenticate before MAIL FROM. When unset,
	// AUTH PLAIN accepts any credentials and is optional.
	Username string
	// Password goes with Username.
	Password string
	// Domain is the name the sink greets with. Default "smtpsink.local".
	Domain string
	// IdleTimeout, when set, makes the sink answer 421 and hang up on a
	// client that sent nothing for that long, as real servers do. Default 0:
	// connections stay open.
	IdleTimeout time.Duration
	// NoPipelining leaves PIPELINING (RFC 2920) out of the EHLO reply, for
	// testing a client's lock-step fallback. Default false: offered, as by
	// most servers.
	NoPipelining bool
}

// Mail is one accepted message as the sink parsed it.
type Mail struct {
	// From is the envelope sender (MAIL FROM).
	From string
	// To are the envelope recipients (RCPT TO).
	To []string
	// Header is the message header as received (values not decoded).
	Header map[string][]string
	// Subject is the decoded Subject (RFC 2047 words resolved).
	Subject string
	// MessageID is the Message-ID without angle brackets.
	MessageID string
	// ListUnsubscribe and ListUnsubscribePost are the RFC 2369 / RFC 8058
	// headers as received ("" when absent).
	ListUnsubscribe     string
	ListUnsubscribePost string
	// ContentType is the top-level media type ("multipart/alternative").
	ContentType string
	// Text and HTML are the first text/plain and text/html parts, decoded
	// from their transfer encoding, line ends as "\n".
	Text string
	HTML string
	// Parts lists the media types of the leaf parts in order.
	Parts []string
	// Raw is the message as received (dot-unstuffed, CRLF line ends).
	Raw []byte
	// ParseErr is set when the content could not be parsed; the message
	// was accepted all the same, as an SMTP server would.
	ParseErr error
}

// Sink is a running SMTP server. Its methods are safe for concurrent use.
type Sink struct {
	cfg    Config
	server *smtp.Server
	ln     net.Listener
	served chan struct{}

	count     atomic.Int64
	conns     atomic.Int64
	pipelined atomic.Int64
	failures  atomic.Int64 // injected failures not yet used

	// handlers counts the Discard-mode connection goroutines.
	handlers sync.WaitGroup

	mu       sync.Mutex
	all      []Mail
	byRcpt   map[string][]int // lower-cased recipient → indexes into all
	failRcpt map[string][]int // lower-cased recipient → SMTP codes for RCPT
	failData map[string][]int // lower-cased recipient → SMTP codes for DATA
	// clients are the open client connections, true once greeted (only
	// greeted ones in Keep mode).
	clients map[net.Conn]bool
	closed  bool // Close was called (Discard mode)
}

// Start listens on cfg.Addr and serves until Close. ctx bounds only the
// setting up of the listener.
func Start(ctx context.Context, cfg Config) (*Sink, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Domain == "" {
		cfg.Domain = "smtpsink.local"
	}
	if cfg.Mode != Keep && cfg.Mode != Discard {
		return nil, fmt.Errorf("smtpsink: unknown mode %d", cfg.Mode)
	}
	if cfg.Password != "" && cfg.Username == "" {
		return nil, errors.New("smtpsink: password set without username")
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("smtpsink: negative idle timeout %v", cfg.IdleTimeout)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("smtpsink: listening on %s: %w", cfg.Addr, err)
	}
	s := &Sink{
		cfg:      cfg,
		ln:       ln,
		served:   make(chan struct{}),
		byRcpt:   map[string][]int{},
		failRcpt: map[string][]int{},
		failData: map[string][]int{},
		clients:  map[net.Conn]bool{},
	}
	if cfg.Mode == Discard {
		go s.serveDiscard()
		return s, nil
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Domain
	srv.AllowInsecureAuth = true
	srv.MaxLineLength = 10000
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.ReadTimeout = cfg.IdleTimeout
	s.server = srv
	go func() {
		defer close(s.served)
		_ = srv.Serve(countingListener{ln, cfg.NoPipelining}) // returns when Close closes the listener
	}()
	return s, nil
}

// Addr is the listen address, "127.0.0.1:port".
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Host is the listen IP address.
func (s *Sink) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the listen port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Close stops listening, closes all connections and waits for the server
// loop to end. Stored messages stay readable.
func (s *Sink) Close() error {
	if s.server == nil {
		return s.closeDiscard()
	}
	err := s.server.Close()
	// The server closes only listeners its Serve has registered; Serve may
	// not have run yet, so close ours too (Serve then returns at once).
	if lerr := s.ln.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) && err == nil {
		err = lerr
	}
	<-s.served
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Count is the number of messages accepted (in both modes).
func (s *Sink) Count() int { return int(s.count.Load()) }

// Connections is the number of SMTP sessions (connections that greeted
// with EHLO/HELO) the sink has seen.
func (s *Sink) Connections() int { return int(s.conns.Load()) }

// Pipelined is the number of transactions whose MAIL FROM, RCPT TO and
// DATA commands reached the sink in one read from the connection: sent
// together by a client using PIPELINING (RFC 2920), where a lock-step client
// waits for each reply.
func (s *Sink) Pipelined() int { return int(s.pipelined.Load()) }

// Open is the number of client connections (that greeted) open now.
func (s *Sink) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, greeted := range s.clients {
		if greeted {
			n++
		}
	}
	return n
}

// Received returns the stored messages addressed to recipient to (envelope
// recipient, case-insensitive), in arrival order. Empty in Discard mode.
func (s *Sink) Received(to string) []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.byRcpt[strings.ToLower(to)]
	out := make([]Mail, len(idx))
	for i, j := range idx {
		out[i] = s.all[j]
	}
	return out
}

// All returns every stored message in arrival order.
func (s *Sink) All() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.all...)
}

// FailNext makes the next RCPT TO for rcpt answer with code (451: transient,
// 550: permanent, 421: closing); later ones succeed again. Calls queue up.
func (s *Sink) FailNext(rcpt string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(rcpt)
	s.failRcpt[k] = append(s.failRcpt[k], code)
	s.failures.Add(1)
}

// FailNextData makes the next message for rcpt be refused with code after
// its content was received (the reply to the end of DATA).
func (s *Sink) FailNextData(rcpt string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := strings.ToLower(rcpt)
	s.failData[k] = append(s.failData[k], code)
	s.failures.Add(1)
}

// DropConnections closes every open client connection (the listener keeps
// accepting) and returns how many it closed: a server restart or idle
// timeout as the client sees it.
func (s *Sink) DropConnections() int {
	s.mu.Lock()
	open := make([]net.Conn, 0, len(s.clients))
	for c, greeted := range s.clients {
		if greeted {
			open = append(open, c)
		}
	}
	s.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
	return len(open)
}

// takeFailure pops the next injected code for rcpt from m.
func (s *Sink) takeFailure(m map[string][]int, rcpt string) int {
	if s.failures.Load() == 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(m) == 0 {
		return 0
	}
	k := strings.ToLower(rcpt)
	codes := m[k]
	if len(codes) == 0 {
		return 0
	}
	if len(codes) == 1 {
		delete(m, k)
	} else {
		m[k] = codes[1:]
	}
	s.failures.Add(-1)
	return codes[0]
}

func (s *Sink) store(m Mail) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := len(s.all)
	s.all = append(s.all, m)
	for _, rcpt := range m.To {
		k := strings.ToLower(rcpt)
		s.byRcpt[k] = append(s.byRcpt[k], i)
	}
}

func (s *Sink) newSession(c *smtp.Conn) (smtp.Session, error) {
	s.conns.Add(1)
	cc, _ := c.Conn().(*countingConn)
	sess := &session{sink: s, conn: c, counted: cc}
	s.mu.Lock()
	s.clients[c.Conn()] = true
	s.mu.Unlock()
	return sess, nil
}

// countingListener hands go-smtp connections that count their reads (for
// Pipelined) and can hide PIPELINING.
type countingListener struct {
	net.Listener
	hidePipelining bool
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, hidePipelining: l.hidePipelining}, nil
}

// countingConn is a client connection as go-smtp sees it. Only the
// connection's own goroutine reads and writes it.
type countingConn struct {
	net.Conn
	reads          int
	hidePipelining bool
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads++
	return c.Conn.Read(p)
}

// pipeliningLine is how go-smtp advertises PIPELINING: always the second
// line of its EHLO reply, written on its own.
const pipeliningLine = "250-PIPELINING\r\n"

func (c *countingConn) Write(p []byte) (int, error) {
	if c.hidePipelining && string(p) == pipeliningLine {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// injected builds the reply for an injected failure code.
func injected(code int) *smtp.SMTPError {
	class := code / 100
	if class != 4 && class != 5 {
		class = 5
	}
	return &smtp.SMTPError{
		Code:         code,
		EnhancedCode: smtp.EnhancedCode{class, 0, 0},
		Message:      "injected failure (smtpsink)",
	}
}

// session is one SMTP connection's state (Keep mode).
type session struct {
	sink    *Sink
	conn    *smtp.Conn
	counted *countingConn // conn's net.Conn
	authed  bool
	from    string
	rcpts   []string
	// mailReads is counted.reads when MAIL FROM arrived.
	mailReads int
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, username, password string) error {
		cfg := ss.sink.cfg
		if cfg.Username != "" && (username != cfg.Username || password != cfg.Password) {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.sink.cfg.Username != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	if ss.counted != nil {
		ss.mailReads = ss.counted.reads
	}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if code := ss.sink.takeFailure(ss.sink.failRcpt, to); code != 0 {
		return injected(code)
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	s := ss.sink
	// go-smtp calls Data before it reads the content, which the client
	// sends only after the 354.
	if ss.counted != nil && ss.counted.reads == ss.mailReads {
		s.pipelined.Add(1)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, rcpt := range ss.rcpts {
		if code := s.takeFailure(s.failData, rcpt); code != 0 {
			return injected(code)
		}
	}
	m := parse(raw)
	m.From = ss.from
	m.To = append([]string(nil), ss.rcpts...)
	s.store(m)
	s.count.Add(1)
	return nil
}

func (ss *session) Reset() {
	ss.from = ""
	ss.rcpts = ss.rcpts[:0]
}

func (ss *session) Logout() error {
	ss.sink.mu.Lock()
	delete(ss.sink.clients, ss.conn.Conn())
	ss.sink.mu.Unlock()
	return nil
}
