package email

import (
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"strings"
	"time"
)

// TLSMode says how the connection to the SMTP server is secured.
type TLSMode string

// The TLS modes. Mandatory STARTTLS is the default: a relay that does not
// offer it is refused rather than silently spoken to in clear text.
const (
	// TLSNone speaks plain SMTP (local relays, MailDev, test sinks).
	TLSNone TLSMode = "none"
	// TLSStartTLS upgrades with STARTTLS and fails when the server does not
	// offer it (the default).
	TLSStartTLS TLSMode = "starttls"
	// TLSOpportunistic upgrades with STARTTLS when the server offers it and
	// continues in clear text otherwise.
	TLSOpportunistic TLSMode = "opportunistic"
	// TLSImplicit speaks TLS from the first byte (SMTPS, port 465).
	TLSImplicit TLSMode = "tls"
)

// Defaults applied to a zero Config field.
const (
	DefaultHost    = "localhost"
	DefaultTLS     = TLSStartTLS
	DefaultPool    = 8
	DefaultTimeout = 15 * time.Second
)

// Config configures a Sender. The zero value of every field but From means
// its default; New validates the whole.
type Config struct {
	// Host is the SMTP server's host name or IP address. Default "localhost".
	Host string
	// Port is the SMTP server's TCP port. Default by TLS mode: 587 for
	// "starttls", 465 for "tls", 25 for "none" and "opportunistic".
	Port int
	// TLS is how the connection is secured: "none", "starttls" (mandatory
	// STARTTLS), "opportunistic" (STARTTLS if offered) or "tls" (implicit
	// TLS). Default "starttls". Certificates are verified against the
	// system roots for Host, TLS 1.2 or newer.
	TLS TLSMode
	// Username enables SMTP AUTH when set (PLAIN or LOGIN, whichever the
	// server offers; other mechanisms are discovered if it offers neither).
	// Credentials are only sent over TLS or to a loopback host.
	Username string
	// Password goes with Username.
	Password string
	// From is the sender address (envelope and header), required:
	// "kundenservice@stadtwerke-musterstadt.de".
	From string
	// FromName is the sender's display name: "Stadtwerke Musterstadt".
	FromName string
	// HELO is the name announced in EHLO/HELO. Default: this machine's host
	// name.
	HELO string
	// Pool is the number of SMTP connections kept open and used in parallel;
	// it bounds the number of concurrent transactions. Connections are dialed
	// on first use. Default 8.
	Pool int
	// Timeout bounds establishing a connection (dial, greeting, TLS, AUTH)
	// and, separately, each message's SMTP transaction. Default 15s.
	Timeout time.Duration
	// MessageIDDomain is the right-hand side of the Message-ID
	// (<key@domain>). Default: the domain of From.
	MessageIDDomain string
}

// withDefaults returns c with defaults applied and validated.
func (c Config) withDefaults() (Config, error) {
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.TLS == "" {
		c.TLS = DefaultTLS
	}
	if c.Pool == 0 {
		c.Pool = DefaultPool
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	var errs []error
	switch c.TLS {
	case TLSNone, TLSOpportunistic:
		if c.Port == 0 {
			c.Port = 25
		}
	case TLSStartTLS:
		if c.Port == 0 {
			c.Port = 587
		}
	case TLSImplicit:
		if c.Port == 0 {
			c.Port = 465
		}
	default:
		errs = append(errs, fmt.Errorf("unknown TLS mode %q (want none, starttls, opportunistic or tls)", c.TLS))
	}
	if strings.ContainsAny(c.Host, " \t\r\n/") {
		errs = append(errs, fmt.Errorf("host %q is not a host name", c.Host))
	}
	if c.Port < 0 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", c.Port))
	}
	if c.Pool < 0 {
		errs = append(errs, fmt.Errorf("pool size %d is negative", c.Pool))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v is negative", c.Timeout))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("password set without username"))
	}
	if c.Username != "" && c.TLS == TLSNone && !isLoopback(c.Host) {
		errs = append(errs, fmt.Errorf("refusing to send credentials unencrypted to %s (use TLS mode starttls or tls)", c.Host))
	}
	if strings.ContainsAny(c.HELO, " \t\r\n") {
		errs = append(errs, fmt.Errorf("HELO name %q is not a host name", c.HELO))
	}
	if strings.ContainsAny(c.FromName, "\r\n") {
		errs = append(errs, errors.New("from name contains a line break"))
	}
	switch {
	case c.From == "":
		errs = append(errs, errors.New("from address required"))
	default:
		addr, err := parseAddress(c.From)
		if err != nil {
			errs = append(errs, fmt.Errorf("from address: %w", err))
			break
		}
		c.From = addr
		if c.MessageIDDomain == "" {
			c.MessageIDDomain = addr[strings.LastIndexByte(addr, '@')+1:]
		}
	}
	if c.MessageIDDomain != "" && !validIDDomain(c.MessageIDDomain) {
		errs = append(errs, fmt.Errorf("message-id domain %q is not a domain", c.MessageIDDomain))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("invalid email config: %w", errors.Join(errs...))
	}
	return c, nil
}

// parseAddress accepts a bare address ("name@example.org", no display name)
// and returns it in canonical form.
func parseAddress(s string) (string, error) {
	if plainAddress(s) {
		return s, nil // what net/mail would return, without its cost
	}
	if strings.ContainsAny(s, "\r\n<>") {
		return "", errors.New("not a bare email address")
	}
	a, err := netmail.ParseAddress(s)
	if err != nil {
		return "", errors.New("not an email address")
	}
	at := strings.LastIndexByte(a.Address, '@')
	if a.Name != "" || at <= 0 || at == len(a.Address)-1 || strings.ContainsAny(a.Address, " \t") {
		return "", errors.New("not a bare email address")
	}
	return a.Address, nil
}

// plainAddress reports whether s is an address of the common kind that
// net/mail accepts and returns unchanged: a dot-atom local part, "@", and a
// domain of letters, digits and hyphens in dot-separated labels.
func plainAddress(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return false
	}
	return dotAtom(s[:at], atext) && dotAtom(s[at+1:], func(ch byte) bool {
		return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-'
	})
}

// dotAtom reports whether s is runs of allowed bytes joined by single dots.
func dotAtom(s string, allowed func(byte) bool) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == '.':
			if s[i-1] == '.' {
				return false
			}
		case !allowed(ch):
			return false
		}
	}
	return true
}

// validIDDomain reports whether d can stand right of the @ in a Message-ID
// (a dot-atom of letters, digits, hyphens).
func validIDDomain(d string) bool {
	if d == "" || d[0] == '.' || d[len(d)-1] == '.' || strings.Contains(d, "..") {
		return false
	}
	for _, r := range d {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
		default:
			return false
		}
	}
	return true
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
