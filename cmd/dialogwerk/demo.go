package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/dialogwerk/dialogwerk/channels/maildev"
	"github.com/dialogwerk/dialogwerk/channels/twiliosim"
	"github.com/dialogwerk/dialogwerk/profiles/musterstadt"
)

// demoSummary is what the demo reports on its last line.
type demoSummary struct {
	Events, Emails, SMS, WhatsApp, Suppressed, Failed int
}

func (s demoSummary) String() string {
	return fmt.Sprintf("demo: events=%d emails=%d sms=%d whatsapp=%d suppressed=%d failed=%d",
		s.Events, s.Emails, s.SMS, s.WhatsApp, s.Suppressed, s.Failed)
}

// cmdDemo runs Dialogwerk on embedded defaults with the demo town.
func cmdDemo(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	keep := fs.Bool("keep", false, "keep running after the events went out, so a person can look (Ctrl-C stops)")
	customers := fs.Int("customers", 1200, "number of synthetic Musterstadt customers")
	seed := fs.Uint64("seed", 2026, "seed of the synthetic town")
	dataDir := fs.String("data-dir", "", "data directory; empty: a temporary one, removed at the end")
	listen := fs.String("listen", "127.0.0.1:0", "HTTP address of Dialogwerk (webhook, read API)")
	simListen := fs.String("sim-listen", "127.0.0.1:0", "address of the local Twilio-like server and its SMS/WhatsApp page")
	mailSMTP := fs.Int("maildev-smtp-port", 0, "MailDev SMTP port (0: free port)")
	mailWeb := fs.Int("maildev-web-port", 0, "MailDev web inbox port (0: free port)")
	logLevel := fs.String("log-level", "warn", "log level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(*logLevel)

	dir := *dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "dialogwerk-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(tmp)
		// The local PostgreSQL runs as an unprivileged user when we are root:
		// it must be able to enter the directory.
		if err := os.Chmod(tmp, 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		dir = tmp
	}

	fmt.Fprintln(out, "demo: starting MailDev (web inbox for the emails) …")
	md, err := maildev.Start(ctx, maildev.Config{SMTPPort: *mailSMTP, WebPort: *mailWeb})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = md.Stop(sctx)
	}()
	sim := twiliosim.New(twiliosim.Config{Addr: *simListen})
	if err := sim.Start(ctx); err != nil {
		return fmt.Errorf("demo: starting the Twilio-like server: %w", err)
	}
	defer sim.Close()

	var cfg config
	cfg.register(flag.NewFlagSet("defaults", flag.ContinueOnError))
	secret, token := randomHex(16), randomHex(16)
	cfg.DataDir, cfg.Listen, cfg.LogLevel = dir, *listen, *logLevel
	cfg.WebhookSecrets, cfg.APITokens = "demo-billing="+secret, token
	cfg.DatabaseURL, cfg.NATSURL = "", ""
	cfg.SMTPHost, cfg.SMTPPort, cfg.SMTPTLS = "127.0.0.1", md.SMTPPort(), "none"
	cfg.MailFrom = "kundenservice@stadtwerke-musterstadt.example"
	cfg.TwilioAccountSID, cfg.TwilioAuthToken, cfg.TwilioBaseURL = sim.AccountSID(), sim.AuthToken(), sim.URL()
	cfg.TwilioFrom, cfg.TwilioWhatsAppFrom = "SWMuster", "+4930901820"
	cfg.SendRetries, cfg.SendMaxElapsed = 5, 10*time.Second

	fmt.Fprintln(out, "demo: starting Dialogwerk (embedded NATS, local PostgreSQL) …")
	a, err := startApp(ctx, &cfg, log)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		a.stop(sctx)
	}()

	today := time.Now()
	town := musterstadt.Generate(*customers, *seed, today)
	n, err := a.store.Count(ctx)
	if err != nil {
		return err
	}
	if n == 0 {
		if err := a.store.Import(ctx, town.Profiles); err != nil {
			return fmt.Errorf("demo: loading Musterstadt: %w", err)
		}
		fmt.Fprintf(out, "demo: Musterstadt loaded: %d customers with contracts, interests, preferred channels and consents\n", len(town.Profiles))
	}

	// A few things go wrong, as in life: one provider hiccup (retried) and
	// a handful of numbers the provider rejects for good.
	sim.FailNextN(2, twiliosim.Unavailable())
	sim.FailEvery(45, twiliosim.Failure{Status: 400, Code: 21614, Message: "The 'To' number is not a valid mobile number."})

	evs := musterstadt.Events(town, *seed, today)
	base := "http://" + a.addr
	client := &http.Client{Timeout: 30 * time.Second}
	accepted := 0
	for i := 0; i < len(evs); i += 200 {
		end := min(i+200, len(evs))
		body := append([]byte("["), bytes.Join(evs[i:end], []byte(","))...)
		body = append(body, ']')
		status, answer, err := postEvents(ctx, client, base, []byte(secret), body)
		if err != nil {
			return fmt.Errorf("demo: sending events: %w", err)
		}
		if status != http.StatusAccepted {
			return fmt.Errorf("demo: webhook answered %d: %s", status, answer)
		}
		var st struct{ Accepted, Duplicates int }
		_ = json.Unmarshal(answer, &st)
		accepted += st.Accepted
	}
	fmt.Fprintf(out, "demo: sent %d billing and service-center events through the signed webhook\n", len(evs))
	// The billing system re-sends its first batch: recognised, not doubled.
	if len(evs) > 0 {
		body := append([]byte("["), bytes.Join(evs[:min(50, len(evs))], []byte(","))...)
		body = append(body, ']')
		if status, answer, err := postEvents(ctx, client, base, []byte(secret), body); err == nil && status == http.StatusAccepted {
			fmt.Fprintf(out, "demo: re-sent %d events → %s", min(50, len(evs)), answer)
		}
	}
	// And one malformed event is refused with the field named.
	if status, answer, err := postEvents(ctx, client, base, []byte(secret), []byte(`{"specversion":"1.0","id":"broken-1","source":"/billing/sap-isu","type":"contract.ending","subject":"K100001","data":{"contract":"V-1","product":"strom","ends_on":"31.12.2026"}}`)); err == nil {
		fmt.Fprintf(out, "demo: malformed event refused: %d %s", status, answer)
	}

	sum, err := waitDemo(ctx, a, len(evs))
	if err != nil {
		return err
	}
	sim.ClearFailures()
	if n, err := waitInbox(ctx, md, sum.Emails); err == nil {
		fmt.Fprintf(out, "demo: MailDev inbox holds %d emails; the Twilio stand-in holds %d SMS/WhatsApp\n", n, sim.Count())
	} else {
		fmt.Fprintf(out, "demo: reading the MailDev inbox: %v\n", err)
	}
	if *keep {
		example := "K100001"
		_ = a.pool.QueryRow(ctx, `SELECT d.customer_id FROM decisions d JOIN messages m ON m.decision_id = d.id
	JOIN dispatches x ON x.message_id = m.id WHERE x.status = 'sent' ORDER BY d.customer_id LIMIT 1`).Scan(&example)
		fmt.Fprintf(out, `
Dialogwerk demo is running — press Ctrl-C to stop.
  Emails (MailDev web inbox):        %s
  SMS & WhatsApp (Twilio stand-in):  %s/
  Webhook:   POST %s/v1/events   (source demo-billing, secret %s)
  Read API:  curl -H 'Authorization: Bearer %s' %s/v1/customers/%s/messages
  Send more: DIALOGWERK_SEND_SECRET=%s ./bin/dialogwerk events send --url %s deploy/examples/events.json

`, md.WebURL(), sim.URL(), base, secret, token, base, example, secret, base)
		<-ctx.Done()
		// Report again: events sent in the meantime count too.
		if s2, err := summarize(context.Background(), a); err == nil {
			sum = s2
		}
	}
	fmt.Fprintln(out, sum)
	return nil
}

// waitDemo waits until every accepted event has its outcome row.
func waitDemo(ctx context.Context, a *app, want int) (demoSummary, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		s, err := summarize(ctx, a)
		if err != nil {
			return s, err
		}
		if s.Events >= want {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("demo: only %d of %d events processed after 3 minutes", s.Events, want)
		}
		select {
		case <-ctx.Done():
			return s, errors.New("demo: interrupted")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitInbox waits (briefly) until MailDev has stored want emails; MailDev
// stores asynchronously after accepting.
func waitInbox(ctx context.Context, md *maildev.Server, want int) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, err := md.Emails(ctx)
		if err != nil {
			return 0, err
		}
		if len(es) >= want || time.Now().After(deadline) {
			return len(es), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func summarize(ctx context.Context, a *app) (demoSummary, error) {
	var s demoSummary
	err := a.pool.QueryRow(ctx, `SELECT
	(SELECT count(*) FROM events),
	(SELECT count(*) FROM messages m JOIN dispatches x ON x.message_id = m.id WHERE m.channel = 'email' AND x.status = 'sent'),
	(SELECT count(*) FROM messages m JOIN dispatches x ON x.message_id = m.id WHERE m.channel = 'sms' AND x.status = 'sent'),
	(SELECT count(*) FROM messages m JOIN dispatches x ON x.message_id = m.id WHERE m.channel = 'whatsapp' AND x.status = 'sent'),
	(SELECT count(*) FROM decisions WHERE NOT send),
	(SELECT count(*) FROM dispatches WHERE status IN ('failed', 'interrupted'))`).Scan(
		&s.Events, &s.Emails, &s.SMS, &s.WhatsApp, &s.Suppressed, &s.Failed)
	if err != nil {
		return s, fmt.Errorf("demo: summarising: %w", err)
	}
	return s, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
