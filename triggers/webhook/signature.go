package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries "t=<unix-seconds>,v1=<hex HMAC-SHA256>" over
// "<unix-seconds>.<raw body>".
const SignatureHeader = "Dialogwerk-Signature"

// DefaultTolerance is how old (or how far in the future) a signature may be.
const DefaultTolerance = 5 * time.Minute

// Errors of signature verification; all answer 401.
var (
	ErrNoSignature  = errors.New("missing " + SignatureHeader + " header")
	ErrBadSignature = errors.New("signature does not match any configured source secret")
	ErrStale        = errors.New("signature timestamp outside the allowed window")
	ErrMalformedSig = errors.New("malformed " + SignatureHeader + " header, want t=<unix-seconds>,v1=<hex>")
)

// Secret is one sending system's shared secret.
type Secret struct {
	// Source names the sender ("billing", "crm"); it is recorded with its events.
	Source string
	// Key is the shared HMAC key.
	Key []byte
}

// Sign returns the header value for body signed with key at time t.
func Sign(key []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(key, ts, body))
}

func mac(key []byte, ts string, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks header against the secrets and returns the matching source.
// Several v1 entries are allowed (secret rotation); each is compared in
// constant time against every secret.
func Verify(secrets []Secret, header string, body []byte, now time.Time, tolerance time.Duration) (string, error) {
	if header == "" {
		return "", ErrNoSignature
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return "", ErrMalformedSig
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return "", ErrMalformedSig
			}
			sigs = append(sigs, b)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return "", ErrMalformedSig
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", ErrMalformedSig
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return "", fmt.Errorf("%w: signed %s ago", ErrStale, d.Round(time.Second))
	}
	for _, s := range secrets {
		want := mac(s.Key, ts, body)
		for _, sig := range sigs {
			if hmac.Equal(want, sig) {
				return s.Source, nil
			}
		}
	}
	return "", ErrBadSignature
}
