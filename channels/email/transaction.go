package email

import (
	"bufio"
	"errors"
	"net/textproto"
)

// errMalformedReply reports server output that is not an SMTP reply. The
// line itself is left out: it may quote an address.
var errMalformedReply = errors.New("malformed SMTP reply")

// transaction runs MAIL FROM, RCPT TO and DATA for one message on the
// connected c, from and to being envelope addresses ("<addr>") and data the
// DATA content with its end-of-data line (see dataContent).
//
// When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out
// in one write and their three replies are read together; the content
// follows the 354. That is two round trips per message instead of four.
// Otherwise each command waits for its reply.
//
// It reports the stage that failed and whether client and server are still
// in step (every command answered and nothing else pending), so that the
// transaction can be reset with RSET; if not, the connection is unusable.
func (c *conn) transaction(from, to string, data []byte) (st stage, inSync bool, err error) {
	w, r := c.smtp.Text.W, c.smtp.Text.R
	steps := [...]struct {
		stage  stage
		expect int
		verb   string
		arg    string
		params string
	}{
		{stageMail, 250, "MAIL FROM:", from, c.mailParams},
		{stageRcpt, 25, "RCPT TO:", to, ""}, // 250 or 251
		{stageData, 354, "DATA", "", ""},
	}
	if c.pipelining {
		for _, s := range steps {
			writeCommand(w, s.verb, s.arg, s.params)
		}
		if err := w.Flush(); err != nil {
			return stageMail, false, err
		}
		// RFC 2920 §3.1: check every reply. A refused MAIL or RCPT makes
		// DATA fail too (503/554); the first refusal is the one to report.
		var refused error
		var refusedAt stage
		dataAccepted := false
		for _, s := range steps {
			err := readReply(r, s.expect)
			var reply *textproto.Error
			if err != nil && !errors.As(err, &reply) {
				if refused != nil {
					return refusedAt, false, refused
				}
				return s.stage, false, err
			}
			if err != nil && refused == nil {
				refused, refusedAt = err, s.stage
			}
			if reply != nil && reply.Code == 421 {
				// The server is closing the connection: what follows is moot.
				return refusedAt, false, refused
			}
			dataAccepted = s.stage == stageData && err == nil
		}
		if refused != nil {
			if dataAccepted {
				// DATA was accepted although MAIL or RCPT was not: end the
				// empty message with a lone dot (RFC 2920 §3.1); the server
				// has no recipient to deliver it to.
				_, _ = w.WriteString(".\r\n")
				if err := w.Flush(); err != nil {
					return refusedAt, false, err
				}
				if err := readReply(r, 250); err != nil && !isTextprotoError(err) {
					return refusedAt, false, refused
				}
			}
			return refusedAt, true, refused
		}
	} else {
		for _, s := range steps {
			writeCommand(w, s.verb, s.arg, s.params)
			if err := w.Flush(); err != nil {
				return s.stage, false, err
			}
			if err := readReply(r, s.expect); err != nil {
				return s.stage, isTextprotoError(err), err
			}
		}
	}
	// The content is written as is: dataContent has already dot-stuffed it
	// and added the end-of-data line. A large message bypasses the buffer.
	if _, err := w.Write(data); err != nil {
		return stageData, false, err
	}
	if err := w.Flush(); err != nil {
		return stageData, false, err
	}
	if err := readReply(r, 250); err != nil {
		return stageDataEnd, isTextprotoError(err), err
	}
	return stageDataEnd, true, nil
}

// writeCommand buffers one command line; errors surface at Flush.
func writeCommand(w *bufio.Writer, verb, arg, params string) {
	_, _ = w.WriteString(verb)
	_, _ = w.WriteString(arg)
	_, _ = w.WriteString(params)
	_, _ = w.WriteString("\r\n")
}

func isTextprotoError(err error) bool {
	var reply *textproto.Error
	return errors.As(err, &reply)
}

// maxReplyText bounds the reply text kept for a refusal.
const maxReplyText = 512

// readReply reads one SMTP reply, all of its lines. A reply whose code does
// not match expect (one, two or three leading digits, as in
// textproto.Reader.ReadResponse) is returned as a *textproto.Error with the
// code and the text; an accepted reply allocates nothing.
func readReply(r *bufio.Reader, expect int) error {
	code := 0
	var text []byte
	for {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// An overlong line: keep its start, skip the rest.
			line = append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
		}
		if err != nil {
			return err
		}
		line = trimEOL(line)
		if len(line) < 3 || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return errMalformedReply
		}
		n, ok := replyCode(line[:3])
		if !ok || (code != 0 && n != code) {
			return errMalformedReply
		}
		code = n
		more := len(line) > 3 && line[3] == '-'
		if !matches(code, expect) {
			if text != nil {
				text = append(text, '\n')
			}
			if len(line) > 4 && len(text) < maxReplyText {
				text = append(text, line[4:min(len(line), 4+maxReplyText-len(text))]...)
			}
		}
		if !more {
			break
		}
	}
	if !matches(code, expect) {
		return &textproto.Error{Code: code, Msg: string(text)}
	}
	return nil
}

func trimEOL(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

// replyCode parses a three-digit reply code, 200 to 599 or 1xx.
func replyCode(b []byte) (int, bool) {
	if b[0] < '1' || b[0] > '5' || b[1] < '0' || b[1] > '9' || b[2] < '0' || b[2] > '9' {
		return 0, false
	}
	return int(b[0]-'0')*100 + int(b[1]-'0')*10 + int(b[2]-'0'), true
}

// matches reports whether code is what expect asks for: expect 2 matches
// 2xx, 25 matches 25x, 250 only 250.
func matches(code, expect int) bool {
	switch {
	case expect < 10:
		return code/100 == expect
	case expect < 100:
		return code/10 == expect
	default:
		return code == expect
	}
}
