package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// config is every setting of `dialogwerk serve` (and the parts `demo`
// reuses). Each has a flag and an environment variable DIALOGWERK_<NAME>
// (upper case, '-' → '_'); the flag wins. See README "Configuration".
type config struct {
	DataDir  string
	Listen   string
	Tenant   string
	LogLevel string
	// DebugListen serves /debug/pprof when set.
	DebugListen string
	// GCPercent and MemoryLimit tune Go's garbage collector.
	GCPercent   int
	MemoryLimit string

	NATSURL        string
	NATSListen     string
	NATSSync       string
	NATSReplicas   int
	EventRetention time.Duration

	DatabaseURL string

	WebhookSecrets string
	APITokens      string

	Campaigns string
	Workers   int
	BatchSize int
	AckWait   time.Duration

	UtilityName  string
	UtilityPhone string
	UtilityWeb   string

	SMTPHost     string
	SMTPPort     int
	SMTPTLS      string
	SMTPUser     string
	SMTPPassword string
	SMTPPool     int
	MailFrom     string
	MailFromName string

	TwilioAccountSID          string
	TwilioAuthToken           string
	TwilioFrom                string
	TwilioWhatsAppFrom        string
	TwilioMessagingServiceSID string
	TwilioBaseURL             string

	SendRetries    int
	SendMaxElapsed time.Duration
}

// register binds cfg's fields to fs with defaults taken from the environment.
func (c *config) register(fs *flag.FlagSet) {
	str := func(p *string, name, def, usage string) { fs.StringVar(p, name, envStr(name, def), usage) }
	num := func(p *int, name string, def int, usage string) { fs.IntVar(p, name, envInt(name, def), usage) }
	dur := func(p *time.Duration, name string, def time.Duration, usage string) {
		fs.DurationVar(p, name, envDur(name, def), usage)
	}
	str(&c.DataDir, "data-dir", "dialogwerk-data", "directory for the embedded NATS store and the local PostgreSQL cluster")
	str(&c.Listen, "listen", "127.0.0.1:8080", "HTTP address for the webhook and the read API")
	str(&c.Tenant, "tenant", "musterstadt", "utility this deployment serves (one NATS subject token)")
	str(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	str(&c.DebugListen, "debug-listen", "", "host:port serving Go's /debug/pprof profiles; empty: off")
	num(&c.GCPercent, "gc-percent", 200, "Go GC target percentage (GOGC), unless GOGC is set")
	str(&c.MemoryLimit, "memory-limit", "200MiB", "soft memory limit of the Go heap (GOMEMLIMIT; KiB/MiB/GiB), unless GOMEMLIMIT is set; 0: none")

	str(&c.NATSURL, "nats-url", "", "external NATS server/cluster URL(s); empty runs an embedded nats-server")
	str(&c.NATSListen, "nats-listen", "", "host:port where the embedded NATS server accepts outside clients; empty: in-process only")
	str(&c.NATSSync, "nats-sync", "1s", "embedded JetStream fsync: an interval (e.g. 1s) or \"always\" (fsync before every ack)")
	num(&c.NATSReplicas, "nats-replicas", 1, "stream replicas (3 on a 3-node cluster)")
	dur(&c.EventRetention, "event-retention", 30*24*time.Hour, "how long events stay in the EVENTS stream")

	str(&c.DatabaseURL, "database-url", "", "PostgreSQL URL; empty starts a local cluster under --data-dir/pg (initdb from PATH)")

	str(&c.WebhookSecrets, "webhook-secrets", "", "source=secret pairs for POST /v1/events, comma-separated (secrets ≥ 16 bytes); required")
	str(&c.APITokens, "api-tokens", "", "bearer tokens for the read API, comma-separated; none: the read API refuses every request")

	str(&c.Campaigns, "campaigns", "", "directory of campaign YAML files; empty uses the built-in seed campaigns")
	num(&c.Workers, "workers", 4, "engine batches in flight at once (a customer is in at most one, so its events keep their order)")
	num(&c.BatchSize, "batch-size", 500, "most events per engine batch")
	dur(&c.AckWait, "ack-wait", 30*time.Second, "JetStream ack wait before an unfinished event is redelivered")

	str(&c.UtilityName, "utility-name", "Stadtwerke Musterstadt", "sender name used in templates")
	str(&c.UtilityPhone, "utility-phone", "0800 123 456 0", "service-center phone used in templates")
	str(&c.UtilityWeb, "utility-web", "https://www.stadtwerke-musterstadt.example", "customer portal URL used in templates")

	str(&c.SMTPHost, "smtp-host", "localhost", "SMTP server host")
	num(&c.SMTPPort, "smtp-port", 0, "SMTP port; 0: 587 for starttls, 465 for tls, 25 otherwise")
	str(&c.SMTPTLS, "smtp-tls", "starttls", "none, starttls (mandatory), opportunistic or tls (implicit)")
	str(&c.SMTPUser, "smtp-user", "", "SMTP AUTH user (optional)")
	str(&c.SMTPPassword, "smtp-password", "", "SMTP AUTH password (prefer the environment variable)")
	num(&c.SMTPPool, "smtp-pool", 8, "kept-open SMTP connections")
	str(&c.MailFrom, "mail-from", "", "sender address; empty disables the email channel")
	str(&c.MailFromName, "mail-from-name", "Stadtwerke Musterstadt", "sender display name")

	str(&c.TwilioAccountSID, "twilio-account-sid", "", "Twilio account SID; empty disables SMS and WhatsApp")
	str(&c.TwilioAuthToken, "twilio-auth-token", "", "Twilio auth token (prefer the environment variable)")
	str(&c.TwilioFrom, "twilio-from", "", "SMS sender: E.164 number, short code or alphanumeric sender ID")
	str(&c.TwilioWhatsAppFrom, "twilio-whatsapp-from", "", "WhatsApp sender E.164 number; empty disables WhatsApp unless a messaging service is set")
	str(&c.TwilioMessagingServiceSID, "twilio-messaging-service-sid", "", "Twilio Messaging Service SID (MG…) instead of fixed senders")
	str(&c.TwilioBaseURL, "twilio-base-url", "", "Twilio API base URL; empty: https://api.twilio.com (set for a local Twilio-like server)")

	num(&c.SendRetries, "send-retries", 5, "attempts per message for transient provider failures")
	dur(&c.SendMaxElapsed, "send-max-elapsed", 30*time.Second, "longest time spent retrying one message")
}

func envName(flagName string) string {
	return "DIALOGWERK_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func envStr(name, def string) string {
	if v, ok := os.LookupEnv(envName(name)); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(envName(name)); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(envName(name)); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// syncSetting parses --nats-sync.
func (c *config) syncSetting() (always bool, interval time.Duration, err error) {
	if c.NATSSync == "always" {
		return true, 0, nil
	}
	d, err := time.ParseDuration(c.NATSSync)
	if err != nil || d <= 0 {
		return false, 0, fmt.Errorf("--nats-sync: want \"always\" or a positive duration, got %q", c.NATSSync)
	}
	return false, d, nil
}

// secrets parses --webhook-secrets.
func (c *config) secrets() (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(c.WebhookSecrets, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		src, key, ok := strings.Cut(pair, "=")
		if !ok || src == "" || len(key) < 16 {
			return nil, errors.New("--webhook-secrets: want source=secret pairs with secrets of at least 16 characters")
		}
		out[src] = key
	}
	if len(out) == 0 {
		return nil, errors.New("--webhook-secrets: at least one source=secret pair is required")
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// applyGC sets the garbage collector's target and soft memory limit, unless
// the standard GOGC / GOMEMLIMIT environment variables already did. A higher
// target trades memory for CPU; the limit keeps the trade bounded.
func (c *config) applyGC() error {
	if _, ok := os.LookupEnv("GOGC"); !ok && c.GCPercent > 0 {
		debug.SetGCPercent(c.GCPercent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return nil
	}
	n, err := parseBytes(c.MemoryLimit)
	if err != nil {
		return fmt.Errorf("--memory-limit: %w", err)
	}
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return nil
}

// parseBytes reads "200MiB", "1GiB", "512KiB" or a plain byte count.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = v, m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a size like 200MiB, got %q", s)
	}
	return n * mult, nil
}
