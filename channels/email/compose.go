package email

import (
	"bytes"
	"io"
	netmail "net/mail"
	"sync"

	"github.com/wneessen/go-mail"

	"github.com/dialogwerk/dialogwerk/channels"
)

// composeBuffer is where a message is rendered; Send takes one from
// bufferPool and returns it when the transaction is over.
type composeBuffer struct {
	out bytes.Buffer
	// chunk carries the text and HTML bodies into go-mail's encoder a piece
	// at a time, instead of a copy of each body per message.
	chunk [4096]byte
}

var bufferPool = sync.Pool{New: func() any { return new(composeBuffer) }}

// maxPooledBuffer bounds the buffers kept for reuse: one unusually large
// message must not pin its memory for the life of the process.
const maxPooledBuffer = 1 << 20

func getBuffer() *composeBuffer {
	b := bufferPool.Get().(*composeBuffer)
	b.out.Reset()
	return b
}

func putBuffer(b *composeBuffer) {
	if b.out.Cap() > maxPooledBuffer {
		return
	}
	bufferPool.Put(b)
}

// streamQP makes go-mail encode a body part quoted-printable straight into
// the message. For mail.EncodingQP, go-mail (v0.8.1, msgWriter.writeBody)
// first encodes the whole part into a fresh, growing buffer and then copies
// it: for a large HTML part most of the allocation per message. Any
// encoding it has no case for it streams through its quoted-printable
// writer instead, and "Quoted-Printable" is such a value while meaning the
// same on the wire: transfer encodings are case-insensitive (RFC 2045
// §6.1). TestQuotedPrintableParts fails if a go-mail update changes this.
var streamQP = mail.WithPartEncoding(mail.Encoding("Quoted-Printable"))

// compose renders the message to its wire form into buf, before a
// connection is taken, so the connection is held only for the SMTP dialogue.
func (s *Sender) compose(buf *composeBuffer, msg channels.Message, to, id string) error {
	m := mail.NewMsg(mail.WithNoDefaultUserAgent())
	m.FromMailAddress(s.from)
	m.ToMailAddress(&netmail.Address{Name: oneLine(msg.ToName), Address: to})
	m.Subject(oneLine(msg.Subject))
	m.SetMessageIDWithValue(id)
	m.SetDate()
	m.SetBodyWriter(mail.TypeTextPlain, buf.bodyWriter(msg.Text), streamQP)
	if msg.HTML != "" {
		// Already escaped by the renderer: passed through unchanged.
		m.AddAlternativeWriter(mail.TypeTextHTML, buf.bodyWriter(msg.HTML), streamQP)
	}
	// msg.Marketing: the RFC 8058 List-Unsubscribe and List-Unsubscribe-Post
	// headers go here (m.SetListUnsubscribeOneClick) once the unsubscribe
	// endpoint exists; its URL will come from a per-message field or a Config
	// URL template.
	buf.out.Grow(len(msg.Text) + len(msg.HTML) + len(msg.HTML)/16 + 1024)
	_, err := m.WriteTo(&buf.out)
	return err
}

// bodyWriter returns a go-mail body function that writes s through the
// buffer's chunk, so the body is not copied into a new slice first.
func (buf *composeBuffer) bodyWriter(s string) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		var total int64
		for rest := s; len(rest) > 0; {
			n := copy(buf.chunk[:], rest)
			m, err := w.Write(buf.chunk[:n])
			total += int64(m)
			if err != nil {
				return total, err
			}
			rest = rest[n:]
		}
		return total, nil
	}
}

// dataContent turns the rendered message in buf into DATA content (RFC
// 5321 §4.5.2): every line ends in CRLF, a line that starts with a dot gets
// a second one, and the end-of-data line ".\r\n" follows. go-mail's output
// needs no change but the end line, which is appended in place; anything
// else is rewritten into a new slice.
func dataContent(buf *composeBuffer) []byte {
	p := buf.out.Bytes()
	if !needsStuffing(p) {
		if len(p) > 0 && !bytes.HasSuffix(p, []byte("\r\n")) {
			buf.out.WriteString("\r\n")
		}
		buf.out.WriteString(".\r\n")
		return buf.out.Bytes()
	}
	return appendData(make([]byte, 0, len(p)+len(p)/32+8), p)
}

// needsStuffing reports whether p has a line starting with a dot or a line
// end other than CRLF.
func needsStuffing(p []byte) bool {
	if len(p) > 0 && p[0] == '.' {
		return true
	}
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			return false
		}
		i += j
		if i == 0 || p[i-1] != '\r' || (i+1 < len(p) && p[i+1] == '.') {
			return true
		}
		i++
	}
	return false
}

// appendData appends p to dst as DATA content (see dataContent).
func appendData(dst, p []byte) []byte {
	for len(p) > 0 {
		if p[0] == '.' {
			dst = append(dst, '.')
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			dst = append(dst, p...)
			dst = append(dst, "\r\n"...)
			break
		}
		line := p[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		dst = append(dst, line...)
		dst = append(dst, "\r\n"...)
		p = p[i+1:]
	}
	return append(dst, ".\r\n"...)
}
