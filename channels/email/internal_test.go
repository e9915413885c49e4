package email

import (
	netmail "net/mail"
	"testing"
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
