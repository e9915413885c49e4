// Command dwbench measures Dialogwerk end to end on this machine: it starts a
// durable local PostgreSQL (fsync on), a Twilio-like API and an SMTP sink,
// runs `dialogwerk serve` as its own process against them, drives signed
// event batches through the webhook and reports
//
//	BENCH ingest_eps=N e2e_eps=N p50_ms=N p99_ms=N rss_mb=N
//
// ingest_eps: events accepted (202) per second while pushing a backlog;
// e2e_eps: events carried from the first request to their recorded outcome
// per second (decided, rendered, handed to the provider, recorded);
// p50/p99_ms: event-to-dispatch latency at a fixed offered load of 1,000
// events/s; rss_mb: peak resident memory of the dialogwerk process.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/channels/smtpsink"
	"github.com/dialogwerk/dialogwerk/channels/twiliosim"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/profiles/migrations"
	"github.com/dialogwerk/dialogwerk/profiles/musterstadt"
	"github.com/dialogwerk/dialogwerk/profiles/pglocal"
	"github.com/dialogwerk/dialogwerk/triggers/webhook"
)

type options struct {
	customers   int
	events      int
	batch       int
	clients     int
	rate        int
	latencySecs int
	keepDir     bool
	serveArgs   string
	pgStats     bool
}

func main() {
	var o options
	flag.IntVar(&o.customers, "customers", 20000, "synthetic customers in the database")
	flag.IntVar(&o.events, "events", 100000, "events in the throughput phase")
	flag.IntVar(&o.batch, "batch", 500, "events per webhook request in the throughput phase")
	flag.IntVar(&o.clients, "clients", 4, "concurrent webhook clients in the throughput phase")
	flag.IntVar(&o.rate, "rate", 1000, "offered load (events/s) in the latency phase")
	flag.IntVar(&o.latencySecs, "latency-seconds", 15, "duration of the latency phase")
	flag.BoolVar(&o.keepDir, "keep", false, "keep the working directory")
	flag.StringVar(&o.serveArgs, "serve-args", "", "extra flags for dialogwerk serve, space-separated")
	flag.BoolVar(&o.pgStats, "pg-stats", false, "print PostgreSQL's costliest statements (pg_stat_statements) after the throughput phase")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "dwbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	work, err := os.MkdirTemp("", "dwbench-")
	if err != nil {
		return err
	}
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	if !o.keepDir {
		defer os.RemoveAll(work)
	}

	fmt.Println("bench: building dialogwerk …")
	bin := filepath.Join(work, "dialogwerk")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dialogwerk")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building dialogwerk: %w", err)
	}

	fmt.Println("bench: starting durable PostgreSQL (fsync on) …")
	var settings []string
	if o.pgStats {
		settings = append(settings, "shared_preload_libraries = 'pg_stat_statements'", "pg_stat_statements.track = all")
	}
	pg, err := pglocal.Start(ctx, pglocal.Config{Dir: filepath.Join(work, "pg"), Logger: log, Settings: settings})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = pg.Stop(sctx)
	}()
	pool, err := pgxpool.New(ctx, pg.ConnString())
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := migrations.Up(ctx, pool); err != nil {
		return err
	}
	if o.pgStats {
		if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
			return err
		}
	}
	var fsync string
	_ = pool.QueryRow(ctx, "SHOW fsync").Scan(&fsync)
	town := musterstadt.Generate(o.customers, 7, time.Now())
	if err := profiles.NewStore(pool).Import(ctx, town.Profiles); err != nil {
		return err
	}
	fmt.Printf("bench: %d customers loaded (fsync=%s)\n", len(town.Profiles), fsync)

	sim := twiliosim.New(twiliosim.Config{Keep: 1000})
	if err := sim.Start(ctx); err != nil {
		return err
	}
	defer sim.Close()
	sink, err := smtpsink.Start(ctx, smtpsink.Config{Mode: smtpsink.Discard})
	if err != nil {
		return err
	}
	defer sink.Close()

	secret := randomHex(16)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"serve",
		"--data-dir", filepath.Join(work, "data"), "--listen", addr, "--database-url", pg.ConnString(),
		"--webhook-secrets", "bench=" + secret, "--log-level", "warn",
		"--mail-from", "kundenservice@stadtwerke-musterstadt.example", "--smtp-host", sink.Host(),
		"--smtp-port", strconv.Itoa(sink.Port()), "--smtp-tls", "none",
		"--twilio-account-sid", sim.AccountSID(), "--twilio-auth-token", sim.AuthToken(), "--twilio-base-url", sim.URL(),
		"--twilio-from", "SWMuster", "--twilio-whatsapp-from", "+4930901820",
	}
	args = append(args, strings.Fields(o.serveArgs)...)
	serve := exec.Command(bin, args...)
	serve.Stdout, serve.Stderr = os.Stdout, os.Stderr
	if err := serve.Start(); err != nil {
		return err
	}
	defer func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		_, _ = serve.Process.Wait()
	}()
	base := "http://" + addr
	if err := waitHealthy(ctx, base); err != nil {
		return err
	}

	// Phase 1: throughput.
	evs := makeEvents(town, "tp", o.events, time.Time{})
	fmt.Printf("bench: throughput phase: %d events in batches of %d from %d clients …\n", o.events, o.batch, o.clients)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}
	cpu0 := cpuTimes(serve.Process.Pid)
	start := time.Now()
	if err := pushAll(ctx, client, base, []byte(secret), evs, o.batch, o.clients); err != nil {
		return err
	}
	ingest := time.Since(start)
	if err := waitEvents(ctx, pool, "tp-%", o.events); err != nil {
		return err
	}
	// The end is when the last outcome was written (processed_at is the
	// database's clock at that transaction), not when the poll noticed.
	var last time.Time
	if err := pool.QueryRow(ctx, `SELECT max(processed_at) FROM events WHERE id LIKE 'tp-%'`).Scan(&last); err != nil {
		return err
	}
	e2e := last.Sub(start)
	var sent, suppressed, failed int
	if err := pool.QueryRow(ctx, `SELECT
	(SELECT count(*) FROM dispatches WHERE status = 'sent'),
	(SELECT count(*) FROM decisions WHERE NOT send),
	(SELECT count(*) FROM dispatches WHERE status <> 'sent')`).Scan(&sent, &suppressed, &failed); err != nil {
		return err
	}
	cpu1 := cpuTimes(serve.Process.Pid)
	perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(o.events) }
	fmt.Printf("bench: CPU per event: dialogwerk %.0f µs, postgres %.0f µs, bench harness (clients, Twilio-like API, SMTP sink) %.0f µs\n",
		perEvent(cpu1.serve-cpu0.serve), perEvent(cpu1.postgres-cpu0.postgres), perEvent(cpu1.self-cpu0.self))
	ingestEPS := float64(o.events) / ingest.Seconds()
	e2eEPS := float64(o.events) / e2e.Seconds()
	fmt.Printf("bench: ingest %d events in %s (%.0f/s); end to end in %s (%.0f events/s, %.0f messages/s dispatched; %d sent, %d suppressed, %d failed; sink %d mails, sim %d sms/whatsapp)\n",
		o.events, ingest.Round(time.Millisecond), ingestEPS, e2e.Round(time.Millisecond), e2eEPS, float64(sent)/e2e.Seconds(),
		sent, suppressed, failed, sink.Count(), sim.Count())

	if o.pgStats {
		if err := printPGStats(ctx, pool); err != nil {
			return err
		}
	}

	// Phase 2: latency at a fixed offered load.
	fmt.Printf("bench: latency phase: %d events/s for %ds …\n", o.rate, o.latencySecs)
	n, err := offer(ctx, client, base, []byte(secret), town, o.rate, o.latencySecs)
	if err != nil {
		return err
	}
	if err := waitEvents(ctx, pool, "lat-%", n); err != nil {
		return err
	}
	var p50, p99 float64
	var measured int
	if err := pool.QueryRow(ctx, `SELECT count(*),
	coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM x.dispatched_at - e.occurred_at)), 0) * 1000,
	coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM x.dispatched_at - e.occurred_at)), 0) * 1000
FROM dispatches x JOIN messages m ON m.id = x.message_id JOIN decisions d ON d.id = m.decision_id JOIN events e ON e.id = d.event_id
WHERE e.id LIKE 'lat-%' AND x.status = 'sent'`).Scan(&measured, &p50, &p99); err != nil {
		return err
	}
	fmt.Printf("bench: latency over %d dispatched messages: p50 %.1f ms, p99 %.1f ms\n", measured, p50, p99)

	rss, err := peakRSS(serve.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("BENCH ingest_eps=%.0f e2e_eps=%.0f p50_ms=%.0f p99_ms=%.0f rss_mb=%.0f\n", ingestEPS, e2eEPS, p50, p99, rss)
	return nil
}

// makeEvents builds n events of the three seed types for random customers.
func makeEvents(t musterstadt.Town, prefix string, n int, at time.Time) [][]byte {
	out := make([][]byte, n)
	for i := range n {
		out[i] = eventJSON(t, prefix, i, at)
	}
	return out
}

func eventJSON(t musterstadt.Town, prefix string, i int, at time.Time) []byte {
	p := &t.Profiles[(i*7919)%len(t.Profiles)]
	c := p.Contracts[0]
	var typ string
	var data map[string]any
	switch i % 10 {
	case 0, 1, 2, 3, 4:
		typ = "contract.ending"
		data = map[string]any{"contract": c.ID, "product": c.Product, "ends_on": "2027-03-31", "notice_until": "2027-02-28"}
	case 5, 6, 7:
		typ = "billing.backpayment_expected"
		data = map[string]any{"contract": c.ID, "amount_eur": 250.0 + float64(i%500), "due_on": "2027-02-15", "period": "2026"}
	default:
		typ = "service.cancellation_enquiry"
		data = map[string]any{"contract": c.ID, "agent": "A-07", "touchpoint": "phone"}
	}
	ev := map[string]any{"specversion": "1.0", "id": fmt.Sprintf("%s-%d", prefix, i), "source": "/billing/bench",
		"type": typ, "subject": p.ID, "data": data}
	if !at.IsZero() {
		ev["time"] = at.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(ev)
	return b
}

func batchBody(evs [][]byte) []byte {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteByte(']')
	return b.Bytes()
}

func post(ctx context.Context, client *http.Client, base string, secret, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.SignatureHeader, webhook.Sign(secret, time.Now(), body))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("webhook answered %d: %s", resp.StatusCode, answer)
	}
	return nil
}

// pushAll sends evs in batches from several clients as fast as accepted.
func pushAll(ctx context.Context, client *http.Client, base string, secret []byte, evs [][]byte, batch, clients int) error {
	bodies := make(chan []byte, clients)
	go func() {
		defer close(bodies)
		for i := 0; i < len(evs); i += batch {
			select {
			case bodies <- batchBody(evs[i:min(i+batch, len(evs))]):
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range bodies {
				if err := post(ctx, client, base, secret, body); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	return ctx.Err()
}

// offer sends rate events/s as 100 requests per second for secs seconds;
// each event's time is the moment its request starts.
func offer(ctx context.Context, client *http.Client, base string, secret []byte, t musterstadt.Town, rate, secs int) (int, error) {
	const ticksPerSec = 100
	per := max(rate/ticksPerSec, 1)
	tick := time.NewTicker(time.Second / ticksPerSec)
	defer tick.Stop()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	n := 0
	for range ticksPerSec * secs {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return n, ctx.Err()
		}
		now := time.Now()
		evs := make([][]byte, per)
		for j := range per {
			evs[j] = eventJSON(t, "lat", n+j, now)
		}
		n += per
		wg.Add(1)
		go func(body []byte) {
			defer wg.Done()
			if err := post(ctx, client, base, secret, body); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}(batchBody(evs))
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return n, err
	}
	return n, nil
}

func waitEvents(ctx context.Context, pool *pgxpool.Pool, like string, want int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var got int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE id LIKE $1`, like).Scan(&got); err != nil {
			return err
		}
		if got >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d events processed after 10 minutes", got, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond): // polling is not free: keep it rare
		}
	}
}

func waitHealthy(ctx context.Context, base string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("dialogwerk serve did not become healthy within 60s")
}

// peakRSS reads VmHWM (peak resident set) of pid in MB.
func peakRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				return 0, err
			}
			return float64(kb) / 1024, nil
		}
	}
	return 0, errors.New("VmHWM not found")
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cpu is user+system CPU time of the process groups the bench runs.
type cpu struct{ serve, postgres, self time.Duration }

// cpuTimes reads CPU times from /proc: the dialogwerk process, every
// postgres process, and this process.
func cpuTimes(servePid int) cpu {
	var c cpu
	c.serve = procCPU(strconv.Itoa(servePid))
	c.self = procCPU("self")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			c.postgres += procCPU(e.Name())
		}
	}
	return c
}

func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 (1-based) in clock ticks (100 Hz on Linux).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func printPGStats(ctx context.Context, pool *pgxpool.Pool) error {
	rows, err := pool.Query(ctx, `SELECT calls, round(total_exec_time)::bigint, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 90)
FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12`)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Println("bench: costliest PostgreSQL statements (calls, total ms, rows, query):")
	for rows.Next() {
		var calls, ms, n int64
		var q string
		if err := rows.Scan(&calls, &ms, &n, &q); err != nil {
			return err
		}
		fmt.Printf("  %7d %7d %8d  %s\n", calls, ms, n, q)
	}
	return rows.Err()
}
