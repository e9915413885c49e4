// Package email is the email channel adapter: it hands a rendered
// channels.Message to an SMTP server as a multipart/alternative UTF-8 mail
// (text/plain beside text/html), built with github.com/wneessen/go-mail.
//
// A Sender keeps a pool of SMTP connections open and runs one transaction per
// message on them (MAIL, RCPT, DATA), because dialing per message costs most
// of the throughput. go-mail dials, upgrades to TLS and authenticates; the
// transaction the adapter runs itself on go-mail's connection, pipelined
// (RFC 2920) when the server offers it: MAIL, RCPT and DATA in one write,
// then the content, two round trips per message. Connections are dialed on
// first use, replaced after a connection-level error and reset (RSET) after
// the server refused a message.
// Errors are classified with channels.Transient / channels.Permanent and
// carry the message key, never addresses, bodies or the server's reply text
// (which often quotes the address).
package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	netmail "net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"

	"github.com/dialogwerk/dialogwerk/channels"
)

// ErrClosed is returned (as a transient failure) by Send after Close.
var ErrClosed = errors.New("email sender closed")

// Sender sends email over a pool of kept-open SMTP connections. It is safe
// for concurrent use; create it with New and release it with Close.
type Sender struct {
	cfg     Config
	from    *netmail.Address
	envFrom string // "<from>" for MAIL FROM

	// idle holds the connections not in use; a Send takes one and puts it
	// back, so each connection serves one goroutine at a time.
	idle chan *conn
	done chan struct{}

	closeMu sync.Mutex
	closed  bool
	out     int // connections not yet collected by Close
}

// New validates cfg and returns a Sender. It does not contact the server:
// connections are dialed when the first messages are sent.
func New(cfg Config) (*Sender, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Sender{
		cfg:     cfg,
		from:    &netmail.Address{Name: cfg.FromName, Address: cfg.From},
		envFrom: envelope(cfg.From),
		idle:    make(chan *conn, cfg.Pool),
		done:    make(chan struct{}),
		out:     cfg.Pool,
	}
	for range cfg.Pool {
		c := &conn{}
		opts := []mail.Option{
			mail.WithPort(cfg.Port),
			mail.WithTimeout(cfg.Timeout),
			mail.WithDialContextFunc(c.dial),
		}
		switch cfg.TLS {
		case TLSNone:
			opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
		case TLSStartTLS:
			opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
		case TLSOpportunistic:
			opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
		case TLSImplicit:
			// The dial function wraps the connection in TLS itself (go-mail
			// skips its own TLS dialer when given a dial function).
			opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
			c.tls = &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
		}
		if cfg.HELO != "" {
			opts = append(opts, mail.WithHELO(cfg.HELO))
		}
		if cfg.Username != "" {
			opts = append(opts,
				mail.WithUsername(cfg.Username),
				mail.WithPassword(cfg.Password),
				mail.WithOpportunisticSMTPAuth(mail.SMTPAuthPlain, mail.SMTPAuthLogin))
		}
		// One go-mail client per connection: the client only holds dial
		// settings, and go-mail updates its auth state while dialing.
		c.client, err = mail.NewClient(cfg.Host, opts...)
		if err != nil {
			return nil, fmt.Errorf("configuring SMTP client: %w", err)
		}
		s.idle <- c
	}
	return s, nil
}

// Send delivers msg in one SMTP transaction on a pooled connection. The
// receipt's ProviderID is the Message-ID derived from msg.Key (without angle
// brackets), the same for every attempt of one message, so a receiver can
// recognise a duplicate after an ambiguous failure.
func (s *Sender) Send(ctx context.Context, msg channels.Message) (channels.Receipt, error) {
	to, err := parseAddress(msg.To)
	if err != nil {
		return channels.Receipt{}, channels.Permanent("invalid_address",
			fmt.Errorf("email %s: recipient: %w", msg.Key, err))
	}
	if msg.Key == "" {
		return channels.Receipt{}, channels.Permanent("invalid_message", errors.New("email: message has no key"))
	}
	id := messageID(msg.Key, s.cfg.MessageIDDomain)
	buf := getBuffer()
	defer putBuffer(buf)
	if err := s.compose(buf, msg, to, id); err != nil {
		return channels.Receipt{}, channels.Permanent("invalid_message",
			fmt.Errorf("email %s: composing: %w", msg.Key, err))
	}
	data := dataContent(buf)
	c, err := s.acquire(ctx)
	if err != nil {
		return channels.Receipt{}, fmt.Errorf("email %s: %w", msg.Key, err)
	}
	defer func() { s.idle <- c }()
	if err := ctx.Err(); err != nil {
		return channels.Receipt{}, fmt.Errorf("email %s: %w", msg.Key, ctxFailure("before sending", err))
	}
	if err := s.deliver(ctx, c, envelope(to), data); err != nil {
		return channels.Receipt{}, fmt.Errorf("email %s: %w", msg.Key, err)
	}
	return channels.Receipt{ProviderID: id}, nil
}

// Close quits every pooled connection. It waits for sends in progress to
// return their connections, until ctx ends. Send fails with ErrClosed after
// Close was called. Closing twice is harmless.
func (s *Sender) Close(ctx context.Context) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	for s.out > 0 {
		select {
		case c := <-s.idle:
			s.out--
			c.quit(ctx, s.cfg.Timeout)
		case <-ctx.Done():
			return fmt.Errorf("closing email sender: %d connections still in use: %w", s.out, ctx.Err())
		}
	}
	return nil
}

// acquire takes an idle connection, waiting until one is free.
func (s *Sender) acquire(ctx context.Context) (*conn, error) {
	select {
	case <-s.done:
		return nil, channels.Transient("closed", ErrClosed)
	default:
	}
	select {
	case c := <-s.idle:
		select {
		case <-s.done:
			s.idle <- c // for Close to collect
			return nil, channels.Transient("closed", ErrClosed)
		default:
			return c, nil
		}
	case <-s.done:
		return nil, channels.Transient("closed", ErrClosed)
	case <-ctx.Done():
		return nil, ctxFailure("waiting for a connection", ctx.Err())
	}
}

// deliver runs the transaction on c, dialing first if c is not connected.
// to is the envelope recipient ("<addr>"), data the DATA content with its
// end-of-data line. A kept-open connection that turns out dead at MAIL FROM,
// before the server accepted anything (it hung up while idle, often with a
// 421 that is read as the reply to MAIL, or it restarted), is replaced once.
func (s *Sender) deliver(ctx context.Context, c *conn, to string, data []byte) error {
	for attempt := 0; ; attempt++ {
		reused := c.smtp != nil
		if !reused {
			if err := c.connect(ctx); err != nil {
				return err
			}
		}
		st, err := s.transact(ctx, c, to, data)
		if err == nil {
			return nil
		}
		if reused && attempt == 0 && st == stageMail && ctx.Err() == nil && (!isReply(err) || channels.Code(err) == "421") {
			continue
		}
		return err
	}
}

// stage names the step of a transaction that failed.
type stage string

const (
	stageMail    stage = "MAIL FROM"
	stageRcpt    stage = "RCPT TO"
	stageData    stage = "DATA"
	stageDataEnd stage = "end of DATA"
	stageConnect stage = "connect"
)

// transact sends one message on the connected c. On a refusal the
// transaction is reset and c stays usable; on any other error c is closed.
func (s *Sender) transact(ctx context.Context, c *conn, to string, data []byte) (stage, error) {
	deadline := time.Now().Add(s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	raw := c.raw
	if err := raw.SetDeadline(deadline); err != nil {
		c.discard()
		return stageMail, classify(ctx, stageMail, err)
	}
	// Cancelling ctx aborts blocked I/O; the connection is not reused then.
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })

	st, inSync, err := c.transaction(s.envFrom, to, data)
	if err != nil {
		if !inSync || !c.reset(err) {
			c.discard()
		}
		err = classify(ctx, st, err)
	}
	if !stop() {
		// ctx ended during the transaction; the deadline is in the past.
		c.discard()
		if err == nil {
			return st, nil // the server had accepted the message
		}
		return st, ctxFailure(string(st), ctx.Err())
	}
	return st, err
}

// envelope formats an address for MAIL FROM / RCPT TO: "<local@domain>".
func envelope(addr string) string {
	return (&netmail.Address{Address: addr}).String()
}

// oneLine keeps header text on one line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(s)
}

// messageID returns "key@domain" for the Message-ID <key@domain>. Bytes of
// the key that may not stand in a Message-ID (and '%' itself) are written as
// %XX, so distinct keys keep distinct ids.
func messageID(key, domain string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		ch := key[i]
		dot := ch == '.' && i > 0 && i < len(key)-1 && key[i-1] != '.'
		if (atext(ch) && ch != '%') || dot {
			b.WriteByte(ch)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", ch)
	}
	b.WriteByte('@')
	b.WriteString(domain)
	return b.String()
}

// atext reports whether ch is an RFC 5322 atext character.
func atext(ch byte) bool {
	switch {
	case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", ch) >= 0
}

// conn is one pooled SMTP connection. Only the goroutine holding it from
// the pool touches it.
type conn struct {
	client *mail.Client // dial settings
	tls    *tls.Config  // non-nil for implicit TLS

	smtp *smtp.Client // nil while not connected
	raw  net.Conn     // the connection under smtp, for deadlines

	// Set by connect from the server's EHLO reply.
	pipelining bool   // PIPELINING (RFC 2920) offered
	mailParams string // parameters for MAIL FROM (" BODY=8BITMIME", …)

	dialCtx  context.Context // the Send's context while connecting
	stopDial func() bool
}

// dial is the go-mail dial function: it records the raw connection and lets
// the Send's context interrupt the handshake that follows.
func (c *conn) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if c.tls != nil {
		tc := tls.Client(raw, c.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, err
		}
		raw = tc
	}
	c.raw = raw
	c.stopDial = context.AfterFunc(c.dialCtx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	return raw, nil
}

// connect dials, greets, upgrades to TLS and authenticates as configured.
func (c *conn) connect(ctx context.Context) error {
	c.dialCtx, c.raw, c.stopDial = ctx, nil, nil
	sc, err := c.client.DialToSMTPClientWithContext(ctx)
	cancelled := c.stopDial != nil && !c.stopDial()
	c.dialCtx, c.stopDial = nil, nil
	if err == nil && cancelled {
		err = ctx.Err()
	}
	if err != nil {
		if c.raw != nil {
			_ = c.raw.Close() // go-mail leaves it open when the handshake fails
			c.raw = nil
		}
		return classify(ctx, stageConnect, err)
	}
	c.smtp = sc
	c.pipelining, _ = sc.Extension("PIPELINING")
	// The MAIL FROM parameters go-mail's Client.Mail would send.
	c.mailParams = ""
	if ok, _ := sc.Extension("8BITMIME"); ok {
		c.mailParams += " BODY=8BITMIME"
	}
	if ok, _ := sc.Extension("SMTPUTF8"); ok {
		c.mailParams += " SMTPUTF8"
	}
	return nil
}

// reset reports whether c is still usable after err: the server refused
// with a reply (other than 421, closing) and RSET succeeded.
func (c *conn) reset(err error) bool {
	var reply *textproto.Error
	if !errors.As(err, &reply) || reply.Code == 421 {
		return false
	}
	return c.smtp.Reset() == nil
}

// discard closes the connection without QUIT.
func (c *conn) discard() {
	if c.smtp != nil {
		_ = c.smtp.Close()
	}
	if c.raw != nil {
		_ = c.raw.Close()
	}
	c.smtp, c.raw = nil, nil
}

// quit says QUIT and closes; errors do not matter at this point.
func (c *conn) quit(ctx context.Context, timeout time.Duration) {
	if c.smtp == nil {
		return
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if c.raw.SetDeadline(deadline) == nil {
		_ = c.smtp.Quit()
	}
	c.discard()
}

// classify turns an SMTP reply or connection error into a channels.Failure.
// Reply texts are left out: they often quote the recipient address.
func classify(ctx context.Context, st stage, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxFailure(string(st), ctxErr)
	}
	var reply *textproto.Error
	if errors.As(err, &reply) {
		code := strconv.Itoa(reply.Code)
		e := &replyError{Stage: st, Code: reply.Code, Enhanced: enhancedCode(reply.Msg)}
		if reply.Code >= 500 {
			return channels.Permanent(code, e)
		}
		return channels.Transient(code, e)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return ctxFailure(string(st), context.DeadlineExceeded)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return channels.Transient("timeout", fmt.Errorf("%s: %w", st, err))
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return channels.Transient("tls", fmt.Errorf("%s: %w", st, err))
	}
	if st == stageConnect {
		var opErr *net.OpError
		if !errors.As(err, &opErr) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			// STARTTLS missing, no usable AUTH mechanism, …: configuration
			// trouble, not the message's; retrying after a fix will work.
			return channels.Transient("connect", fmt.Errorf("%s: %w", st, err))
		}
	}
	return channels.Transient("network", fmt.Errorf("%s: %w", st, err))
}

// ctxFailure reports a send stopped by its context; the error wraps the
// context's error and is transient (the message may be tried again).
func ctxFailure(what string, ctxErr error) error {
	code := "canceled"
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		code = "timeout"
	}
	return channels.Transient(code, fmt.Errorf("%s: %w", what, ctxErr))
}

// replyError is the server's refusal, reduced to what carries no personal
// data.
type replyError struct {
	Stage    stage
	Code     int
	Enhanced string // "5.1.1" or ""
}

func (e *replyError) Error() string {
	if e.Enhanced != "" {
		return fmt.Sprintf("%s refused: %d %s", e.Stage, e.Code, e.Enhanced)
	}
	return fmt.Sprintf("%s refused: %d", e.Stage, e.Code)
}

func isReply(err error) bool {
	var r *replyError
	return errors.As(err, &r)
}

// enhancedCode returns the RFC 3463 status code a reply text starts with.
func enhancedCode(msg string) string {
	code, _, _ := strings.Cut(msg, " ")
	parts := strings.Split(code, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0], "245") {
		return ""
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 {
			return ""
		}
		if _, err := strconv.Atoi(p); err != nil {
			return ""
		}
	}
	return code
}
