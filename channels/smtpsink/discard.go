package smtpsink

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net"
	"strconv"
	"time"
)

// The Discard-mode responder: just enough SMTP for a client to hand off
// messages (EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, VRFY, QUIT),
// with failure injection, and no more. Commands are recognised by their
// verb, arguments are not parsed beyond what failure injection and AUTH
// need, and the content of a message is skipped by searching the read buffer
// for the end-of-data line, not read byte by byte. Replies are collected and
// written when the sink would otherwise wait for the client (as RFC 2920
// allows a server to), so a pipelining client costs two writes per message.

// discardBuffer is the read buffer per connection; a command line longer
// than that is refused.
const discardBuffer = 64 << 10

var errLineTooLong = errors.New("line too long")

// serveDiscard accepts connections until Close closes the listener.
func (s *Sink) serveDiscard() {
	defer close(s.served)
	for {
		nc, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(5 * time.Millisecond) // out of file descriptors, say
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.clients[nc] = false
		s.handlers.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.handlers.Done()
			c := &discardConn{sink: s, nc: nc, buf: make([]byte, discardBuffer)}
			c.serve()
			_ = nc.Close()
			s.mu.Lock()
			delete(s.clients, nc)
			s.mu.Unlock()
		}()
	}
}

// closeDiscard stops a Discard-mode sink: no new connections, the open ones
// closed, every connection goroutine ended.
func (s *Sink) closeDiscard() error {
	err := s.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	<-s.served
	s.mu.Lock()
	s.closed = true
	for c := range s.clients {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.handlers.Wait()
	return err
}

// discardConn is one client connection of a Discard-mode sink, served by
// one goroutine.
type discardConn struct {
	sink *Sink
	nc   net.Conn

	buf   []byte // read buffer; buf[r:w] is not yet consumed
	r, w  int
	out   []byte // replies not yet written
	reads int    // reads from nc so far

	greeted bool
	authed  bool
	inMail  bool // MAIL FROM accepted
	// mailReads is reads when MAIL FROM arrived.
	mailReads int
	// rcpts holds the accepted recipients, back to back; rcptEnds marks
	// where each ends. Kept for failures injected at the end of DATA.
	rcpts    []byte
	rcptEnds []int
}

func (c *discardConn) serve() {
	c.reply("220 " + c.sink.cfg.Domain + " ESMTP smtpsink")
	for {
		line, err := c.readLine()
		if err != nil {
			c.fail(err)
			return
		}
		if !c.command(line) {
			_ = c.flush()
			return
		}
	}
}

// fail answers a read error where a reply is still possible.
func (c *discardConn) fail(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errLineTooLong):
		c.reply("500 5.4.0 Line too long, closing connection")
	case errors.As(err, &ne) && ne.Timeout():
		c.reply("421 4.4.2 Idle timeout, closing connection")
	default:
		return
	}
	_ = c.flush()
}

// command runs one command line; false ends the connection.
func (c *discardConn) command(line []byte) bool {
	verb, arg := line, []byte(nil)
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		verb, arg = line[:i], bytes.TrimSpace(line[i+1:])
	}
	switch {
	case bytes.EqualFold(verb, []byte("EHLO")), bytes.EqualFold(verb, []byte("HELO")):
		c.greet(len(verb) > 0 && (verb[0] == 'E' || verb[0] == 'e'), arg)
	case bytes.EqualFold(verb, []byte("MAIL")):
		c.mail(arg)
	case bytes.EqualFold(verb, []byte("RCPT")):
		c.rcpt(arg)
	case bytes.EqualFold(verb, []byte("DATA")):
		return c.data()
	case bytes.EqualFold(verb, []byte("RSET")):
		c.resetMail()
		c.reply("250 2.0.0 OK")
	case bytes.EqualFold(verb, []byte("NOOP")):
		c.reply("250 2.0.0 OK")
	case bytes.EqualFold(verb, []byte("VRFY")):
		c.reply("252 2.5.0 Cannot VRFY user, but will accept message")
	case bytes.EqualFold(verb, []byte("AUTH")):
		return c.auth(arg)
	case bytes.EqualFold(verb, []byte("QUIT")):
		c.reply("221 2.0.0 Bye")
		return false
	default:
		c.reply("500 5.5.2 Command not recognized")
	}
	return true
}

func (c *discardConn) greet(extended bool, arg []byte) {
	if len(arg) == 0 {
		c.reply("501 5.5.2 Domain argument required")
		return
	}
	if !c.greeted {
		c.greeted = true
		c.sink.conns.Add(1)
		c.sink.mu.Lock()
		if _, open := c.sink.clients[c.nc]; open {
			c.sink.clients[c.nc] = true
		}
		c.sink.mu.Unlock()
	}
	c.resetMail()
	domain := c.sink.cfg.Domain
	if !extended {
		c.reply("250 " + domain)
		return
	}
	c.reply("250-" + domain)
	if !c.sink.cfg.NoPipelining {
		c.reply("250-PIPELINING")
	}
	c.reply("250-8BITMIME")
	c.reply("250-ENHANCEDSTATUSCODES")
	c.reply("250 AUTH PLAIN")
}

func (c *discardConn) mail(arg []byte) {
	switch {
	case !c.greeted:
		c.reply("503 5.5.1 Say EHLO first")
	case c.sink.cfg.Username != "" && !c.authed:
		c.reply("530 5.7.0 Authentication required")
	case c.inMail:
		c.reply("503 5.5.1 Nested MAIL command")
	case !hasPrefixFold(arg, "FROM:"):
		c.reply("501 5.5.2 Syntax: MAIL FROM:<address>")
	default:
		c.inMail = true
		c.mailReads = c.reads
		c.reply("250 2.1.0 OK")
	}
}

func (c *discardConn) rcpt(arg []byte) {
	if !c.inMail {
		c.reply("503 5.5.1 Need MAIL before RCPT")
		return
	}
	if !hasPrefixFold(arg, "TO:") {
		c.reply("501 5.5.2 Syntax: RCPT TO:<address>")
		return
	}
	addr := bytes.TrimSpace(arg[len("TO:"):])
	if len(addr) > 0 && addr[0] == '<' {
		if end := bytes.IndexByte(addr, '>'); end > 0 {
			addr = addr[1:end]
		}
	} else if end := bytes.IndexByte(addr, ' '); end >= 0 {
		addr = addr[:end]
	}
	if c.sink.failures.Load() != 0 {
		if code := c.sink.takeFailure(c.sink.failRcpt, string(addr)); code != 0 {
			c.replyInjected(code)
			return
		}
	}
	c.rcpts = append(c.rcpts, addr...)
	c.rcptEnds = append(c.rcptEnds, len(c.rcpts))
	c.reply("250 2.1.5 OK")
}

// data takes one message's content; false ends the connection.
func (c *discardConn) data() bool {
	if !c.inMail || len(c.rcptEnds) == 0 {
		c.reply("503 5.5.1 Need RCPT before DATA")
		return true
	}
	if c.reads == c.mailReads {
		c.sink.pipelined.Add(1)
	}
	c.reply("354 End data with <CR><LF>.<CR><LF>")
	if err := c.skipData(); err != nil {
		c.fail(err)
		return false
	}
	defer c.resetMail()
	if c.sink.failures.Load() != 0 {
		start := 0
		for _, end := range c.rcptEnds {
			if code := c.sink.takeFailure(c.sink.failData, string(c.rcpts[start:end])); code != 0 {
				c.replyInjected(code)
				return true
			}
			start = end
		}
	}
	c.sink.count.Add(1)
	c.reply("250 2.0.0 OK: queued")
	return true
}

// skipData consumes content up to and including the end-of-data line.
func (c *discardConn) skipData() error {
	// The content starts a line: search from the line end before it (the
	// DATA command's, just consumed by readLine and still in buf) for
	// "\n.\r\n".
	c.r--
	for {
		if i := bytes.Index(c.buf[c.r:c.w], []byte("\n.\r\n")); i >= 0 {
			c.r += i + 4
			return nil
		}
		// A terminator can begin in the last three bytes only.
		if c.w-c.r > 3 {
			c.r = c.w - 3
		}
		if err := c.fill(); err != nil {
			return err
		}
	}
}

// auth runs AUTH PLAIN, with the credentials in the command or on the next
// line; false ends the connection.
func (c *discardConn) auth(arg []byte) bool {
	if !c.greeted || c.authed || c.inMail {
		c.reply("503 5.5.1 Bad sequence of commands")
		return true
	}
	mech, resp, _ := bytes.Cut(arg, []byte(" "))
	if !bytes.EqualFold(mech, []byte("PLAIN")) {
		c.reply("504 5.5.4 Unrecognized authentication mechanism")
		return true
	}
	if len(resp) == 0 {
		c.reply("334 ")
		line, err := c.readLine()
		if err != nil {
			c.fail(err)
			return false
		}
		resp = line
	}
	if bytes.Equal(resp, []byte("*")) {
		c.reply("501 5.0.0 Authentication cancelled")
		return true
	}
	plain, err := base64.StdEncoding.DecodeString(string(resp))
	if err != nil {
		c.reply("501 5.5.2 Malformed credentials")
		return true
	}
	parts := bytes.Split(plain, []byte{0})
	if len(parts) != 3 {
		c.reply("501 5.5.2 Malformed credentials")
		return true
	}
	cfg := c.sink.cfg
	if cfg.Username != "" && (string(parts[1]) != cfg.Username || string(parts[2]) != cfg.Password) {
		c.reply("535 5.7.8 Authentication failed")
		return true
	}
	c.authed = true
	c.reply("235 2.7.0 Authentication succeeded")
	return true
}

func (c *discardConn) resetMail() {
	c.inMail = false
	c.rcpts = c.rcpts[:0]
	c.rcptEnds = c.rcptEnds[:0]
}

func (c *discardConn) reply(line string) {
	c.out = append(c.out, line...)
	c.out = append(c.out, "\r\n"...)
}

func (c *discardConn) replyInjected(code int) {
	class := code / 100
	if class != 4 && class != 5 {
		class = 5
	}
	c.out = strconv.AppendInt(c.out, int64(code), 10)
	c.out = append(c.out, ' ')
	c.out = strconv.AppendInt(c.out, int64(class), 10)
	c.out = append(c.out, ".0.0 injected failure (smtpsink)\r\n"...)
}

// flush writes the collected replies.
func (c *discardConn) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	return err
}

// readLine returns the next line without its line end; it is valid until
// the next read.
func (c *discardConn) readLine() ([]byte, error) {
	for {
		if i := bytes.IndexByte(c.buf[c.r:c.w], '\n'); i >= 0 {
			line := c.buf[c.r : c.r+i]
			c.r += i + 1
			return bytes.TrimSuffix(line, []byte("\r")), nil
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// fill writes the pending replies, then reads more input: the sink waits
// for the client only after answering everything it has received.
func (c *discardConn) fill() error {
	if err := c.flush(); err != nil {
		return err
	}
	if c.r > 0 {
		c.w = copy(c.buf, c.buf[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.buf) {
		return errLineTooLong
	}
	if t := c.sink.cfg.IdleTimeout; t > 0 {
		if err := c.nc.SetReadDeadline(time.Now().Add(t)); err != nil {
			return err
		}
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.reads++
	c.w += n
	if n > 0 {
		return nil // an error shows again on the next read
	}
	return err
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}
