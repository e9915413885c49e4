package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/profiles/pgtest"
	"github.com/dialogwerk/dialogwerk/triggers/eventbus"
)

// TestCrashLosesNothingDoublesNothing runs `dialogwerk serve` as a process of
// its own against a NATS server, PostgreSQL and the providers that outlive
// it, kills it with SIGKILL while events are in flight, starts it again and
// checks that every accepted event has exactly one outcome and that no
// message reached a provider twice.
func TestCrashLosesNothingDoublesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process")
	}
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	bin := filepath.Join(dir, "dialogwerk")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building dialogwerk: %v\n%s", err, out)
	}

	// The parts that survive the crash.
	ns, err := eventbus.StartEmbedded(eventbus.EmbeddedConfig{StoreDir: filepath.Join(dir, "nats"), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	p := startProviders(t, 15*time.Millisecond) // SMS/WhatsApp hand-offs take a while: some are in flight at the kill
	dbURL := pgtest.NewURL(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := profiles.NewStore(pool).Import(ctx, testTown(400)); err != nil {
		t.Fatal(err)
	}

	secret := "crash-test-secret-0123"
	addr := freeAddr(t)
	args := []string{"serve", "--nats-url", ns.ClientURL(), "--database-url", dbURL, "--listen", addr,
		"--data-dir", filepath.Join(dir, "data"), "--webhook-secrets", "billing=" + secret, "--ack-wait", "2s",
		"--log-level", "error", "--workers", "4", "--batch-size", "50",
		"--mail-from", "kundenservice@stadtwerke-test.example", "--smtp-host", p.sink.Host(), "--smtp-port", strconv.Itoa(p.sink.Port()), "--smtp-tls", "none",
		"--twilio-account-sid", p.sim.AccountSID(), "--twilio-auth-token", p.sim.AuthToken(), "--twilio-base-url", p.sim.URL(),
		"--twilio-from", "SWTest", "--twilio-whatsapp-from", "+4930901820"}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
			if t.Failed() {
				t.Logf("server stderr:\n%s", stderr.String())
			}
		})
		waitHealthy(t, "http://"+addr)
		return cmd
	}
	server := start()

	// Billing sends 1,500 back-payment notices, each with its own amount, so
	// every message text is unique and a double would be visible.
	const n = 1500
	town := testTown(400)
	for i := 0; i < n; i += 100 {
		var evs []string
		for j := i; j < i+100; j++ {
			c := town[(j*37)%len(town)]
			evs = append(evs, fmt.Sprintf(`{"specversion":"1.0","id":"crash-%d","source":"/billing","type":"billing.backpayment_expected","subject":%q,"data":{"contract":%q,"amount_eur":%d.%02d,"due_on":"2027-02-15"}}`,
				j, c.ID, c.Contracts[0].ID, 100+j, j%100))
		}
		status, answer, err := postEvents(ctx, http.DefaultClient, "http://"+addr, []byte(secret), []byte("["+strings.Join(evs, ",")+"]"))
		if err != nil || status != http.StatusAccepted {
			t.Fatalf("post: %d %s %v", status, answer, err)
		}
	}

	// Kill it hard once part of the work is done.
	outcomes := func() int {
		var c int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	deadline := time.Now().Add(30 * time.Second)
	for outcomes() < n/5 {
		if time.Now().After(deadline) {
			t.Fatal("the server made no progress before the kill")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := server.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = server.Process.Wait()
	atKill := outcomes()
	if atKill >= n {
		t.Fatalf("all %d events were done before the kill; the test proves nothing", n)
	}
	var claimedOpen int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM messages m LEFT JOIN dispatches x ON x.message_id = m.id WHERE x.message_id IS NULL`).Scan(&claimedOpen)
	t.Logf("killed with %d of %d events done, %d messages mid-hand-off", atKill, n, claimedOpen)

	start()
	deadline = time.Now().Add(60 * time.Second)
	for outcomes() < n {
		if time.Now().After(deadline) {
			t.Fatalf("after restart only %d of %d events have an outcome", outcomes(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Wait until no message is left without its dispatch outcome.
	for {
		var open int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM messages m LEFT JOIN dispatches x ON x.message_id = m.id WHERE x.message_id IS NULL`).Scan(&open); err != nil {
			t.Fatal(err)
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still without outcome", open)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Nothing lost: every accepted event has exactly one outcome row, one
	// decision, and a sent decision exactly one message with one dispatch.
	var events, processed, decisions, sendDecisions, messages, dispatches int
	if err := pool.QueryRow(ctx, `SELECT
	(SELECT count(*) FROM events WHERE id LIKE 'crash-%'),
	(SELECT count(*) FROM events WHERE outcome = 'processed'),
	(SELECT count(*) FROM decisions),
	(SELECT count(*) FROM decisions WHERE send),
	(SELECT count(*) FROM messages),
	(SELECT count(*) FROM dispatches)`).Scan(&events, &processed, &decisions, &sendDecisions, &messages, &dispatches); err != nil {
		t.Fatal(err)
	}
	if events != n || processed != n || decisions != n || messages != sendDecisions || dispatches != messages {
		t.Fatalf("events=%d processed=%d decisions=%d send=%d messages=%d dispatches=%d; want %d events, processed and decisions, one message and one dispatch per sent decision",
			events, processed, decisions, sendDecisions, messages, dispatches, n)
	}

	// Nothing doubled: every message reached its provider at most once;
	// every "sent" exactly once, every "failed" never.
	rows, err := pool.Query(ctx, `SELECT m.id, m.channel, m.address, m.body_text, x.status FROM messages m JOIN dispatches x ON x.message_id = m.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	statuses := map[string]int{}
	for rows.Next() {
		var id, channel, address, body, status string
		if err := rows.Scan(&id, &channel, &address, &body, &status); err != nil {
			t.Fatal(err)
		}
		statuses[status]++
		copies := 0
		switch channel {
		case "email":
			for _, m := range p.sink.Received(address) {
				if strings.HasPrefix(m.MessageID, id+"@") {
					copies++
				}
			}
		default:
			for _, m := range p.sim.MessagesTo(address) {
				if m.Body == body {
					copies++
				}
			}
		}
		switch {
		case copies > 1:
			t.Errorf("message %s (%s) reached the provider %d times", id, channel, copies)
		case status == "sent" && copies != 1:
			t.Errorf("message %s recorded sent but the provider has %d copies", id, copies)
		case status == "failed" && copies != 0:
			t.Errorf("message %s recorded failed but the provider has it", id)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// And the providers hold nothing that is not recorded.
	if got, want := p.sim.Count()+p.sink.Count(), statuses["sent"]+statuses["interrupted"]; got > want || got < statuses["sent"] {
		t.Errorf("providers hold %d messages; recorded sent %d, interrupted %d", got, statuses["sent"], statuses["interrupted"])
	}
	t.Logf("outcomes after restart: %v", statuses)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server at %s not healthy after 30s: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
