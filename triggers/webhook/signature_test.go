package webhook_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/triggers/webhook"
)

var (
	billingKey = []byte("billing-secret-0123456789abcdef")
	crmKey     = []byte("crm-secret-fedcba9876543210xxxx")
	otherKey   = []byte("not-configured-key-0000000000000")
	secrets    = []webhook.Secret{{Source: "billing", Key: billingKey}, {Source: "crm", Key: crmKey}}
	sigNow     = time.Date(2026, 11, 23, 9, 30, 0, 0, time.UTC)
	sigBody    = []byte(`{"specversion":"1.0","id":"ev-1"}`)
)

// v1 returns the hex signature part of a header made by Sign.
func v1(header string) string {
	_, sig, ok := strings.Cut(header, ",v1=")
	if !ok {
		panic("Sign produced a header without v1: " + header)
	}
	return sig
}

func TestSignFormat(t *testing.T) {
	t.Parallel()
	h := webhook.Sign(billingKey, sigNow, sigBody)
	ts := strconv.FormatInt(sigNow.Unix(), 10)
	m := hmac.New(sha256.New, billingKey)
	m.Write([]byte(ts + "." + string(sigBody)))
	want := "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
	if h != want {
		t.Fatalf("Sign = %q, want %q", h, want)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	good := webhook.Sign(billingKey, sigNow, sigBody)
	ts := strconv.FormatInt(sigNow.Unix(), 10)
	tests := []struct {
		name    string
		secrets []webhook.Secret
		header  string
		body    []byte
		now     time.Time
		want    string // source when accepted
		wantErr error
	}{
		{name: "good signature", header: good, want: "billing"},
		{name: "second secret returns its source", header: webhook.Sign(crmKey, sigNow, sigBody), want: "crm"},
		{name: "spaces after commas", header: "t=" + ts + ", v1=" + v1(good), want: "billing"},
		{name: "upper-case hex", header: "t=" + ts + ",v1=" + strings.ToUpper(v1(good)), want: "billing"},
		{name: "wrong key", header: webhook.Sign(otherKey, sigNow, sigBody), wantErr: webhook.ErrBadSignature},
		{name: "no secrets configured", secrets: []webhook.Secret{}, header: good, wantErr: webhook.ErrBadSignature},
		{name: "body changed", header: good, body: []byte(`{"specversion":"1.0","id":"ev-2"}`), wantErr: webhook.ErrBadSignature},
		{name: "timestamp changed", header: "t=" + strconv.FormatInt(sigNow.Unix()+1, 10) + ",v1=" + v1(good), wantErr: webhook.ErrBadSignature},
		{name: "timestamp with leading zero is another message", header: "t=0" + ts + ",v1=" + v1(good), wantErr: webhook.ErrBadSignature},
		{name: "exactly 5 minutes old", header: webhook.Sign(billingKey, sigNow.Add(-5*time.Minute), sigBody), want: "billing"},
		{name: "exactly 5 minutes ahead", header: webhook.Sign(billingKey, sigNow.Add(5*time.Minute), sigBody), want: "billing"},
		{name: "stale beyond 5 minutes", header: webhook.Sign(billingKey, sigNow.Add(-5*time.Minute-time.Second), sigBody), wantErr: webhook.ErrStale},
		{name: "future beyond 5 minutes", header: webhook.Sign(billingKey, sigNow.Add(5*time.Minute+time.Second), sigBody), wantErr: webhook.ErrStale},
		{name: "stale with a wrong key is still stale", header: webhook.Sign(otherKey, sigNow.Add(-time.Hour), sigBody), wantErr: webhook.ErrStale},
		{name: "far future timestamp", header: "t=9223372036854775807,v1=" + v1(good), wantErr: webhook.ErrStale},
		{name: "far past timestamp", header: "t=-9223372036854775808,v1=" + v1(good), wantErr: webhook.ErrStale},
		{name: "missing header", header: "", wantErr: webhook.ErrNoSignature},
		{name: "no t", header: "v1=" + v1(good), wantErr: webhook.ErrMalformedSig},
		{name: "no v1", header: "t=" + ts, wantErr: webhook.ErrMalformedSig},
		{name: "only v0", header: "t=" + ts + ",v0=" + v1(good), wantErr: webhook.ErrMalformedSig},
		{name: "t not a number", header: "t=yesterday,v1=" + v1(good), wantErr: webhook.ErrMalformedSig},
		{name: "t empty", header: "t=,v1=" + v1(good), wantErr: webhook.ErrMalformedSig},
		{name: "v1 not hex", header: "t=" + ts + ",v1=" + strings.Repeat("zz", 32), wantErr: webhook.ErrMalformedSig},
		{name: "v1 too short", header: "t=" + ts + ",v1=" + v1(good)[:62], wantErr: webhook.ErrMalformedSig},
		{name: "v1 too long", header: "t=" + ts + ",v1=" + v1(good) + "00", wantErr: webhook.ErrMalformedSig},
		{name: "part without =", header: "t=" + ts + ",v1", wantErr: webhook.ErrMalformedSig},
		{name: "trailing comma", header: good + ",", wantErr: webhook.ErrMalformedSig},
		{name: "garbage", header: "Bearer abc", wantErr: webhook.ErrMalformedSig},
		{
			name: "rotation: old key first, new key second",
			// The sender signs with the retired and the new key while the
			// receiver knows only the new one.
			secrets: []webhook.Secret{{Source: "billing", Key: billingKey}},
			header:  "t=" + ts + ",v1=" + v1(webhook.Sign(otherKey, sigNow, sigBody)) + ",v1=" + v1(good),
			want:    "billing",
		},
		{
			name:    "rotation: new key first",
			secrets: []webhook.Secret{{Source: "billing", Key: billingKey}},
			header:  "t=" + ts + ",v1=" + v1(good) + ",v1=" + v1(webhook.Sign(otherKey, sigNow, sigBody)),
			want:    "billing",
		},
		{
			name:    "rotation: receiver knows old and new key under one source",
			secrets: []webhook.Secret{{Source: "billing", Key: otherKey}, {Source: "billing", Key: billingKey}},
			header:  good,
			want:    "billing",
		},
		{
			name:    "rotation: no entry matches",
			header:  "t=" + ts + ",v1=" + v1(webhook.Sign(otherKey, sigNow, sigBody)) + ",v1=" + strings.Repeat("ab", 32),
			wantErr: webhook.ErrBadSignature,
		},
		{
			name:    "rotation: one malformed entry rejects the header",
			header:  good + ",v1=xyz",
			wantErr: webhook.ErrMalformedSig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sec := secrets
			if tt.secrets != nil {
				sec = tt.secrets
			}
			body := sigBody
			if tt.body != nil {
				body = tt.body
			}
			now := sigNow
			if !tt.now.IsZero() {
				now = tt.now
			}
			src, err := webhook.Verify(sec, tt.header, body, now, webhook.DefaultTolerance)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
				}
				if src != "" {
					t.Errorf("rejected header returned source %q", src)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if src != tt.want {
				t.Errorf("source = %q, want %q", src, tt.want)
			}
		})
	}
}

func TestVerifyTolerance(t *testing.T) {
	t.Parallel()
	h := webhook.Sign(billingKey, sigNow.Add(-90*time.Second), sigBody)
	tests := []struct {
		tolerance time.Duration
		wantErr   error
	}{
		{0, nil}, // default: 5 minutes
		{-time.Second, nil},
		{time.Minute, webhook.ErrStale},
		{2 * time.Minute, nil},
	}
	for _, tt := range tests {
		_, err := webhook.Verify(secrets, h, sigBody, sigNow, tt.tolerance)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("tolerance %v: err = %v, want %v", tt.tolerance, err, tt.wantErr)
		}
	}
}

// FuzzVerify checks that Verify never panics and never accepts a header
// that does not carry a signature made by Sign with a configured key over
// this body at an allowed time.
func FuzzVerify(f *testing.F) {
	ts := strconv.FormatInt(sigNow.Unix(), 10)
	good := webhook.Sign(billingKey, sigNow, sigBody)
	f.Add(good, sigBody, int64(0))
	f.Add(webhook.Sign(crmKey, sigNow.Add(-4*time.Minute), sigBody), sigBody, int64(0))
	f.Add(webhook.Sign(billingKey, sigNow, []byte{}), []byte{}, int64(0))
	f.Add(good, sigBody, int64(301))
	f.Add(good+",v1="+strings.Repeat("00", 32), sigBody, int64(-299))
	f.Add("t="+ts+",v1="+strings.Repeat("ab", 32)+", v1="+v1(good), sigBody, int64(0))
	f.Add(webhook.Sign(otherKey, sigNow, sigBody), sigBody, int64(0))
	f.Add("t=,v1=", []byte("x"), int64(0))
	f.Add("t=1,t=2,v1=zz", []byte("x"), int64(-1))
	f.Add("", []byte(nil), int64(0))
	f.Add("=,==,=", []byte("{}"), int64(1<<40))

	f.Fuzz(func(t *testing.T, header string, body []byte, skew int64) {
		now := sigNow.Add(time.Duration(skew) * time.Second)
		src, err := webhook.Verify(secrets, header, body, now, webhook.DefaultTolerance)
		if err != nil {
			if src != "" {
				t.Fatalf("error %v with source %q", err, src)
			}
			if !errors.Is(err, webhook.ErrNoSignature) && !errors.Is(err, webhook.ErrMalformedSig) &&
				!errors.Is(err, webhook.ErrStale) && !errors.Is(err, webhook.ErrBadSignature) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		// Accepted: the header must hold t=<ts> and a v1 that Sign makes
		// with the key of the returned source at exactly that time.
		var tsv string
		var sigs [][]byte
		for _, part := range strings.Split(header, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "t":
				tsv = v
			case "v1":
				b, _ := hex.DecodeString(v)
				sigs = append(sigs, b)
			}
		}
		sec, perr := strconv.ParseInt(tsv, 10, 64)
		if perr != nil || strconv.FormatInt(sec, 10) != tsv {
			t.Fatalf("accepted header %q with timestamp %q that Sign does not produce", header, tsv)
		}
		signedAt := time.Unix(sec, 0)
		if d := now.Sub(signedAt); d > webhook.DefaultTolerance || d < -webhook.DefaultTolerance {
			t.Fatalf("accepted header signed %v away from now", d)
		}
		for _, s := range secrets {
			if s.Source != src {
				continue
			}
			want, _ := hex.DecodeString(v1(webhook.Sign(s.Key, signedAt, body)))
			for _, sig := range sigs {
				if bytes.Equal(sig, want) {
					return
				}
			}
		}
		t.Fatalf("accepted header %q for source %q without a signature made with its key", header, src)
	})
}
