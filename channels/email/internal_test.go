package email

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	netmail "net/mail"
	"net/textproto"
	"strings"
	"testing"

	"github.com/dialogwerk/dialogwerk/channels"
)

func TestMessageID(t *testing.T) {
	t.Parallel()
	cases := []struct{ key, want string }{
		{"dec-42.email", "dec-42.email@sw.example"},
		{"a:b c", "a%3Ab%20c@sw.example"},
		{"100%", "100%25@sw.example"},
		{".lead..dots.", "%2Elead.%2Edots%2E@sw.example"},
		{"ü", "%C3%BC@sw.example"},
	}
	for _, c := range cases {
		got := messageID(c.key, "sw.example")
		if got != c.want {
			t.Errorf("messageID(%q) = %q, want %q", c.key, got, c.want)
		}
		// The result must parse as a Message-ID: <id-left@id-right>.
		if _, err := netmail.ParseAddress("<" + got + ">"); err != nil {
			t.Errorf("messageID(%q) = %q does not parse: %v", c.key, got, err)
		}
	}
	if messageID("a:b", "d") == messageID("a%3Ab", "d") {
		t.Error("distinct keys map to the same Message-ID")
	}
}

func TestEnhancedCode(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"5.1.1 <erika@example.org>: Recipient address rejected": "5.1.1",
		"4.7.0 Try again later":                                 "4.7.0",
		"Requested action not taken":                            "",
		"5.1 nope":                                              "",
		"9.1.1 nope":                                            "",
	}
	for msg, want := range cases {
		if got := enhancedCode(msg); got != want {
			t.Errorf("enhancedCode(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestReadReply(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 5000)
	cases := []struct {
		name   string
		input  string
		expect int
		code   int // 0: accepted
		msg    string
		bad    bool // not a reply
	}{
		{"accepted", "250 2.1.0 OK\r\n", 250, 0, "", false},
		{"two-digit expectation", "251 2.1.5 forwarded\r\n", 25, 0, "", false},
		{"multi-line", "250-first\r\n250-second\r\n250 last\r\n", 250, 0, "", false},
		{"bare code", "354\r\n", 354, 0, "", false},
		{"bare LF", "250 OK\n", 250, 0, "", false},
		{"refused", "550 5.1.1 <a@example.org> unknown\r\n", 25, 550, "5.1.1 <a@example.org> unknown", false},
		{"refused multi-line", "451-4.7.1 try\r\n451 4.7.1 later\r\n", 250, 451, "4.7.1 try\n4.7.1 later", false},
		{"overlong line", "250 " + long + "\r\n", 250, 0, "", false},
		{"overlong refusal", "554 " + long + "\r\n", 250, 554, long[:maxReplyText], false},
		{"codes differ", "250-a\r\n251 b\r\n", 250, 0, "", true},
		{"garbage", "hello\r\n", 250, 0, "", true},
		{"no separator", "2500 x\r\n", 250, 0, "", true},
		{"cut off", "250-a\r\n", 250, 0, "", true},
	}
	for _, c := range cases {
		r := bufio.NewReader(strings.NewReader(c.input + "NEXT"))
		err := readReply(r, c.expect)
		var reply *textproto.Error
		switch {
		case c.bad:
			if err == nil || errors.As(err, &reply) {
				t.Errorf("%s: err = %v, want a non-reply error", c.name, err)
			}
			continue
		case c.code == 0:
			if err != nil {
				t.Errorf("%s: err = %v", c.name, err)
			}
		default:
			if !errors.As(err, &reply) || reply.Code != c.code || reply.Msg != c.msg {
				t.Errorf("%s: err = %#v, want code %d msg %q", c.name, err, c.code, c.msg)
			}
		}
		// Exactly the reply was consumed.
		if rest, _ := io.ReadAll(r); string(rest) != "NEXT" {
			t.Errorf("%s: left %q unread", c.name, rest)
		}
	}
}

func TestDataContent(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":                           ".\r\n",
		"a\r\nb\r\n":                 "a\r\nb\r\n.\r\n",
		"a\r\nb":                     "a\r\nb\r\n.\r\n",
		".a\r\n":                     "..a\r\n.\r\n",
		"a\r\n.\r\n..\r\nb\r\n":      "a\r\n..\r\n...\r\nb\r\n.\r\n",
		"bare\nlf\n.dot\n":           "bare\r\nlf\r\n..dot\r\n.\r\n",
		"cr\r\r\nkept\r":             "cr\r\r\nkept\r\r\n.\r\n",
		"x.\r\n .\r\n":               "x.\r\n .\r\n.\r\n",
		"\r\n.\r\n":                  "\r\n..\r\n.\r\n",
		"end with dot line\r\n.":     "end with dot line\r\n..\r\n.\r\n",
		"no stuffing needed\r\n\r\n": "no stuffing needed\r\n\r\n.\r\n",
	}
	for in, want := range cases {
		buf := getBuffer()
		buf.out.WriteString(in)
		if got := string(dataContent(buf)); got != want {
			t.Errorf("dataContent(%q) = %q, want %q", in, got, want)
		}
		putBuffer(buf)
	}
}

// The end-of-data line never appears early, and textproto's dot-reader
// gets the message back, for go-mail's output of awkward content.
func TestDataContentRoundTrip(t *testing.T) {
	t.Parallel()
	s, err := New(Config{From: "service@stadtwerke-musterstadt.de", TLS: TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	msg := channels.Message{Key: "k", To: "a@example.org", Subject: "x",
		Text: ".\n..\n" + strings.Repeat("x", 75) + ".\n.", HTML: "<p>\n.\n</p>"}
	buf := getBuffer()
	defer putBuffer(buf)
	if err := s.compose(buf, msg, msg.To, "k@d"); err != nil {
		t.Fatal(err)
	}
	composed := string(buf.out.Bytes())
	data := dataContent(buf)
	got, err := io.ReadAll(textproto.NewReader(bufio.NewReader(bytes.NewReader(data))).DotReader())
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != strings.ReplaceAll(composed, "\r\n", "\n") {
		t.Errorf("round trip changed the message:\n%q\nwant\n%q", got, composed)
	}
}

// The fast path of parseAddress agrees with net/mail on what it accepts.
func TestPlainAddressAgreesWithNetMail(t *testing.T) {
	t.Parallel()
	cases := []string{
		"erika@example.org", "Erika.Mustermann@Example.ORG", "a+tag@sub.example.de",
		"x!#$%&'*+-/=?^_`{|}~@example.org", "a@b", "a@b-c.d", "a@xn--mnchen-3ya.de",
		".a@example.org", "a.@example.org", "a..b@example.org", "a@.example.org",
		"a@example.org.", "a@example..org", "a@b_c.org", "@example.org", "a@", "a",
		"a@b@c", "a b@example.org", "\"a b\"@example.org", "a@[127.0.0.1]",
		"müller@example.org", "a@exämple.org", "a@example.org\r\n", "<a@example.org>",
		"Erika <a@example.org>", "a(comment)@example.org", "",
	}
	for _, s := range cases {
		if !plainAddress(s) {
			continue
		}
		a, err := netmail.ParseAddress(s)
		if err != nil || a.Name != "" || a.Address != s {
			t.Errorf("plainAddress(%q) but net/mail: %+v, %v", s, a, err)
		}
	}
	for _, s := range []string{"erika@example.org", "a+tag@sub.example.de", "a@b"} {
		if !plainAddress(s) {
			t.Errorf("plainAddress(%q) = false", s)
		}
	}
}
