package eventbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dialogwerk/dialogwerk/triggers/eventbus"
	"github.com/dialogwerk/dialogwerk/triggers/events"
)

func startServer(t *testing.T) *eventbus.Embedded {
	t.Helper()
	ns, err := eventbus.StartEmbedded(eventbus.EmbeddedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

func connect(t *testing.T, cfg eventbus.Config) *eventbus.Bus {
	t.Helper()
	b, err := eventbus.Connect(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// ev builds an event without data as the webhook would hand it over.
func ev(t *testing.T, id, typ, subject string) events.Event {
	t.Helper()
	return evData(t, id, typ, subject, "")
}

// evData builds an event with a data object (JSON, or "" for none).
func evData(t *testing.T, id, typ, subject, data string) events.Event {
	t.Helper()
	raw := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/test","type":%q,"subject":%q`, id, typ, subject)
	if data != "" {
		raw += `,"data":` + data
	}
	raw += "}"
	e, ferr := events.Parse(0, []byte(raw))
	if ferr != nil {
		t.Fatal(ferr)
	}
	return e
}

func streamInfo(t *testing.T, b *eventbus.Bus, name string) *jetstream.StreamInfo {
	t.Helper()
	st, err := b.JetStream().Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func getMsg(t *testing.T, b *eventbus.Bus, stream string, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	st, err := b.JetStream().Stream(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(t.Context(), seq)
	if err != nil {
		t.Fatalf("%s seq %d: %v", stream, seq, err)
	}
	return m
}

func TestConnectProvisionsStreams(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	b1 := connect(t, eventbus.Config{Embedded: ns})
	if b1.Tenant() != "musterstadt" {
		t.Errorf("default tenant = %q", b1.Tenant())
	}
	if _, err := b1.Publish(t.Context(), "test", []events.Event{ev(t, "ev-1", "citycard.used", "K1")}); err != nil {
		t.Fatal(err)
	}
	// A second process connecting (or a restart) provisions again: no
	// error, nothing lost, the same configuration.
	b2 := connect(t, eventbus.Config{Embedded: ns})

	tests := []struct {
		stream   string
		subjects []string
		maxAge   time.Duration
		discard  jetstream.DiscardPolicy
	}{
		{eventbus.EventsStream, []string{"events.>"}, 30 * 24 * time.Hour, jetstream.DiscardOld},
		{eventbus.DeadLetterStream, []string{"deadletter.>"}, 0, jetstream.DiscardOld},
	}
	for _, tt := range tests {
		info := streamInfo(t, b2, tt.stream)
		c := info.Config
		if strings.Join(c.Subjects, ",") != strings.Join(tt.subjects, ",") {
			t.Errorf("%s subjects = %v, want %v", tt.stream, c.Subjects, tt.subjects)
		}
		if c.Storage != jetstream.FileStorage {
			t.Errorf("%s storage = %v, want file", tt.stream, c.Storage)
		}
		if c.Retention != jetstream.LimitsPolicy {
			t.Errorf("%s retention = %v, want limits", tt.stream, c.Retention)
		}
		if c.Discard != tt.discard {
			t.Errorf("%s discard = %v, want %v", tt.stream, c.Discard, tt.discard)
		}
		if c.MaxAge != tt.maxAge {
			t.Errorf("%s max age = %v, want %v", tt.stream, c.MaxAge, tt.maxAge)
		}
		if c.Duplicates != 10*time.Minute {
			t.Errorf("%s duplicate window = %v, want 10m", tt.stream, c.Duplicates)
		}
		if c.Replicas != 1 {
			t.Errorf("%s replicas = %d, want 1", tt.stream, c.Replicas)
		}
	}
	if n := streamInfo(t, b2, eventbus.EventsStream).State.Msgs; n != 1 {
		t.Errorf("after reconnecting EVENTS holds %d messages, want 1", n)
	}

	// Changed settings are applied to the existing streams.
	b3 := connect(t, eventbus.Config{Embedded: ns, Retention: 48 * time.Hour, DuplicateWindow: time.Hour})
	c := streamInfo(t, b3, eventbus.EventsStream).Config
	if c.MaxAge != 48*time.Hour || c.Duplicates != time.Hour {
		t.Errorf("updated EVENTS: max age %v, duplicates %v; want 48h, 1h", c.MaxAge, c.Duplicates)
	}
	if n := streamInfo(t, b3, eventbus.EventsStream).State.Msgs; n != 1 {
		t.Errorf("after updating EVENTS holds %d messages, want 1", n)
	}
}

func TestConnectRefuses(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	tests := []struct {
		name string
		cfg  eventbus.Config
		want string
	}{
		{"upper-case tenant", eventbus.Config{Embedded: ns, Tenant: "Musterstadt"}, "tenant"},
		{"tenant with a dot", eventbus.Config{Embedded: ns, Tenant: "muster.stadt"}, "tenant"},
		{"tenant with a wildcard", eventbus.Config{Embedded: ns, Tenant: "*"}, "tenant"},
		{"tenant with >", eventbus.Config{Embedded: ns, Tenant: "a>"}, "tenant"},
		{"tenant with a space", eventbus.Config{Embedded: ns, Tenant: "muster stadt"}, "tenant"},
		{"tenant starting with -", eventbus.Config{Embedded: ns, Tenant: "-x"}, "tenant"},
		{"tenant too long", eventbus.Config{Embedded: ns, Tenant: strings.Repeat("a", 64)}, "tenant"},
		{"no server", eventbus.Config{Tenant: "ok"}, "neither URL nor embedded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := eventbus.Connect(t.Context(), tt.cfg)
			if err == nil {
				b.Close()
				t.Fatalf("Connect accepted %+v", tt.cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	// The longest allowed tenant works.
	b := connect(t, eventbus.Config{Embedded: ns, Tenant: strings.Repeat("a", 63)})
	if b.Subject("x.y") != "events."+strings.Repeat("a", 63)+".x.y" {
		t.Errorf("subject = %q", b.Subject("x.y"))
	}
}

func TestConnectOverTCP(t *testing.T) {
	t.Parallel()
	ns, err := eventbus.StartEmbedded(eventbus.EmbeddedConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	if ns.ClientURL() == "" {
		t.Fatal("listening server has no client URL")
	}
	b := connect(t, eventbus.Config{URL: ns.ClientURL(), Tenant: "tcp"})
	st, err := b.Publish(t.Context(), "", []events.Event{ev(t, "ev-1", "citycard.used", "K1")})
	if err != nil || st.Accepted != 1 {
		t.Fatalf("publish over TCP: %+v, %v", st, err)
	}
}

func TestPublish(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	b := connect(t, eventbus.Config{Embedded: ns, Tenant: "stadtwerk-a"})
	evs := []events.Event{
		evData(t, "ev-1", "contract.ending", "K1", `{"contract":"V-1","product":"strom","ends_on":"2027-01-31"}`),
		ev(t, "ev-2", "citycard.used", "K2"),
		ev(t, "ev-3", "some.unknown_type", "K1"),
	}
	st, err := b.Publish(t.Context(), "billing", evs)
	if err != nil {
		t.Fatal(err)
	}
	if st.Accepted != 3 || st.Duplicates != 0 {
		t.Fatalf("stored = %+v, want 3 accepted", st)
	}
	for i, e := range evs {
		m := getMsg(t, b, eventbus.EventsStream, uint64(i+1))
		if want := "events.stadtwerk-a." + e.Type; m.Subject != want {
			t.Errorf("event %d subject = %q, want %q", i, m.Subject, want)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != e.ID {
			t.Errorf("event %d Nats-Msg-Id = %q, want %q", i, got, e.ID)
		}
		if got := m.Header.Get(eventbus.HeaderSender); got != "billing" {
			t.Errorf("event %d sender = %q", i, got)
		}
		if string(m.Data) != string(e.Raw) {
			t.Errorf("event %d stored %s, want the raw event %s", i, m.Data, e.Raw)
		}
	}

	// Re-sending an id is a duplicate, whatever else changed.
	again := ev(t, "ev-2", "citycard.used", "K2")
	st, err = b.Publish(t.Context(), "crm", []events.Event{again, ev(t, "ev-4", "citycard.used", "K4")})
	if err != nil {
		t.Fatal(err)
	}
	if st.Accepted != 1 || st.Duplicates != 1 {
		t.Errorf("second publish = %+v, want 1 accepted, 1 duplicate", st)
	}
	if n := streamInfo(t, b, eventbus.EventsStream).State.Msgs; n != 4 {
		t.Errorf("EVENTS holds %d messages, want 4", n)
	}
	// Without a sender no header is set.
	if _, err := b.Publish(t.Context(), "", []events.Event{ev(t, "ev-5", "citycard.used", "K5")}); err != nil {
		t.Fatal(err)
	}
	if m := getMsg(t, b, eventbus.EventsStream, 5); m.Header.Get(eventbus.HeaderSender) != "" {
		t.Errorf("sender header %q without a sender", m.Header.Get(eventbus.HeaderSender))
	}
	// Nothing to publish is fine.
	if st, err := b.Publish(t.Context(), "x", nil); err != nil || st.Accepted+st.Duplicates != 0 {
		t.Errorf("empty publish = %+v, %v", st, err)
	}
}

func TestPublishConcurrent(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	b := connect(t, eventbus.Config{Embedded: ns, Tenant: "conc"})
	const workers, each = 4, 50
	type result struct {
		st  int
		dup int
		err error
	}
	res := make(chan result, workers)
	for w := range workers {
		go func() {
			var evs []events.Event
			// Every worker sends the same half and its own half.
			for i := range each {
				id := fmt.Sprintf("shared-%d", i)
				if i%2 == 1 {
					id = fmt.Sprintf("own-%d-%d", w, i)
				}
				raw := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/t","type":"citycard.used","subject":"K1"}`, id)
				e, _ := events.Parse(0, []byte(raw))
				evs = append(evs, e)
			}
			st, err := b.Publish(context.Background(), "w", evs)
			res <- result{st.Accepted, st.Duplicates, err}
		}()
	}
	accepted, dups := 0, 0
	for range workers {
		r := <-res
		if r.err != nil {
			t.Fatal(r.err)
		}
		accepted += r.st
		dups += r.dup
	}
	wantAccepted := each/2 + workers*each/2
	if accepted != wantAccepted || dups != workers*each-wantAccepted {
		t.Errorf("accepted %d, duplicates %d; want %d, %d", accepted, dups, wantAccepted, workers*each-wantAccepted)
	}
	if n := streamInfo(t, b, eventbus.EventsStream).State.Msgs; n != uint64(wantAccepted) {
		t.Errorf("EVENTS holds %d messages, want %d", n, wantAccepted)
	}
}

func TestPublishFailsWhenServerIsDown(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	b := connect(t, eventbus.Config{Embedded: ns, Tenant: "down"})
	ns.Shutdown()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err := b.Publish(ctx, "x", []events.Event{ev(t, "ev-1", "citycard.used", "K1")})
	if err == nil {
		t.Fatal("Publish succeeded with the server down")
	}
}

func TestDeadLetter(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	b := connect(t, eventbus.Config{Embedded: ns, Tenant: "dl"})
	raw := []byte(`{"specversion":"1.0","id":"ev-9"}`)
	if err := b.DeadLetter(t.Context(), 42, "ev-9", "contract.ending", raw, "unknown customer K9"); err != nil {
		t.Fatal(err)
	}
	m := getMsg(t, b, eventbus.DeadLetterStream, 1)
	if m.Subject != "deadletter.dl.contract.ending" {
		t.Errorf("subject = %q", m.Subject)
	}
	want := map[string]string{
		eventbus.HeaderReason:  "unknown customer K9",
		eventbus.HeaderEventID: "ev-9",
		eventbus.HeaderOrigSeq: "42",
		jetstream.MsgIDHeader:  "dl-42",
	}
	for h, v := range want {
		if got := m.Header.Get(h); got != v {
			t.Errorf("header %s = %q, want %q", h, got, v)
		}
	}
	if string(m.Data) != string(raw) {
		t.Errorf("data = %s, want the raw event", m.Data)
	}

	// The same delivery dead-lettered again (the engine crashed before its
	// ack) is a duplicate; another sequence is not.
	if err := b.DeadLetter(t.Context(), 42, "ev-9", "contract.ending", raw, "again"); err != nil {
		t.Fatal(err)
	}
	if n := streamInfo(t, b, eventbus.DeadLetterStream).State.Msgs; n != 1 {
		t.Errorf("DEADLETTER holds %d messages after a repeat, want 1", n)
	}

	// Types that cannot be a subject token end up under "invalid".
	tests := []struct {
		seq     uint64
		typ     string
		subject string
	}{
		{43, "", "deadletter.dl.invalid"},
		{44, "a.*", "deadletter.dl.invalid"},
		{45, "a.>", "deadletter.dl.invalid"},
		{46, "with space", "deadletter.dl.invalid"},
		{47, "ümlaut", "deadletter.dl.invalid"},
		{48, "a..b", "deadletter.dl.invalid"},
		{49, ".a", "deadletter.dl.invalid"},
		{50, "a.", "deadletter.dl.invalid"},
		{51, "custom.type-1", "deadletter.dl.custom.type-1"},
	}
	for _, tt := range tests {
		if err := b.DeadLetter(t.Context(), tt.seq, "ev-"+strconv.FormatUint(tt.seq, 10), tt.typ, []byte("not json"), "bad"); err != nil {
			t.Errorf("type %q: %v", tt.typ, err)
			continue
		}
		m := getMsg(t, b, eventbus.DeadLetterStream, tt.seq-41)
		if m.Subject != tt.subject {
			t.Errorf("type %q dead-lettered on %q, want %q", tt.typ, m.Subject, tt.subject)
		}
	}
	if n := streamInfo(t, b, eventbus.DeadLetterStream).State.Msgs; n != uint64(1+len(tests)) {
		t.Errorf("DEADLETTER holds %d messages, want %d", n, 1+len(tests))
	}
	// Dead letters do not land on EVENTS.
	if n := streamInfo(t, b, eventbus.EventsStream).State.Msgs; n != 0 {
		t.Errorf("EVENTS holds %d messages, want 0", n)
	}
}

func TestConsumer(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	a := connect(t, eventbus.Config{Embedded: ns, Tenant: "town-a"})
	other := connect(t, eventbus.Config{Embedded: ns, Tenant: "town-b"})
	for i := range 3 {
		if _, err := a.Publish(t.Context(), "x", []events.Event{ev(t, fmt.Sprintf("a-%d", i), "citycard.used", "K1")}); err != nil {
			t.Fatal(err)
		}
		if _, err := other.Publish(t.Context(), "x", []events.Event{ev(t, fmt.Sprintf("b-%d", i), "citycard.used", "K1")}); err != nil {
			t.Fatal(err)
		}
	}

	c, err := a.Consumer(t.Context(), eventbus.ConsumerConfig{AckWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if cfg.Durable != "engine" || cfg.FilterSubject != "events.town-a.>" || cfg.AckPolicy != jetstream.AckExplicitPolicy ||
		cfg.AckWait != 5*time.Second || cfg.MaxAckPending != 20000 || cfg.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Errorf("consumer config = durable %q filter %q ack %v wait %v pending %d deliver %v",
			cfg.Durable, cfg.FilterSubject, cfg.AckPolicy, cfg.AckWait, cfg.MaxAckPending, cfg.DeliverPolicy)
	}
	if info.NumPending != 3 {
		t.Errorf("pending = %d, want this tenant's 3 events", info.NumPending)
	}

	// Take two, ack them.
	got := fetchIDs(t, c, 2)
	if strings.Join(got, ",") != "a-0,a-1" {
		t.Fatalf("fetched %v, want a-0,a-1", got)
	}

	// Durable: after the process goes away and another connects, the
	// consumer resumes after the acknowledged events.
	a.Close()
	a2 := connect(t, eventbus.Config{Embedded: ns, Tenant: "town-a"})
	c2, err := a2.Consumer(t.Context(), eventbus.ConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fetchIDs(t, c2, 1); len(got) != 1 || got[0] != "a-2" {
		t.Fatalf("after reconnecting fetched %v, want a-2", got)
	}
	info, err = c2.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 30*time.Second {
		t.Errorf("default ack wait = %v, want 30s", info.Config.AckWait)
	}

	// A named consumer of the other tenant sees only its own events.
	cb, err := other.Consumer(t.Context(), eventbus.ConsumerConfig{Name: "engine-b", MaxAckPending: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := fetchIDs(t, cb, 3); strings.Join(got, ",") != "b-0,b-1,b-2" {
		t.Errorf("tenant b fetched %v", got)
	}
}

// fetchIDs fetches n events, acknowledges each and returns their ids.
func fetchIDs(t *testing.T, c jetstream.Consumer, n int) []string {
	t.Helper()
	batch, err := c.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for m := range batch.Messages() {
		var e struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
		if err := m.DoubleAck(t.Context()); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		t.Fatal(err)
	}
	return ids
}

func TestDeadLettersListAndReplay(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	a := connect(t, eventbus.Config{Embedded: ns, Tenant: "town-a"})
	other := connect(t, eventbus.Config{Embedded: ns, Tenant: "town-b"})
	ctx := t.Context()
	for i, typ := range []string{"contract.ending", "", "citycard.used"} {
		if err := a.DeadLetter(ctx, uint64(10+i), fmt.Sprintf("ev-%d", i), typ, []byte(fmt.Sprintf(`{"n":%d}`, i)), fmt.Sprintf("reason %d", i)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := other.DeadLetter(ctx, 99, "ev-b", "contract.ending", []byte(`{}`), "other town"); err != nil {
				t.Fatal(err)
			}
		}
	}

	dls, err := a.DeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 3 {
		t.Fatalf("listed %d dead letters, want this tenant's 3: %+v", len(dls), dls)
	}
	wantTypes := []string{"contract.ending", "invalid", "citycard.used"}
	for i, dl := range dls {
		if dl.EventID != fmt.Sprintf("ev-%d", i) || dl.Type != wantTypes[i] || dl.Reason != fmt.Sprintf("reason %d", i) || dl.At.IsZero() || dl.Seq == 0 {
			t.Errorf("dead letter %d = %+v", i, dl)
		}
	}
	if dls, err := a.DeadLetters(ctx, 2); err != nil || len(dls) != 2 || dls[1].EventID != "ev-1" {
		t.Errorf("limit 2: %+v, %v", dls, err)
	}

	n, err := a.Replay(ctx, 10)
	if err != nil || n != 3 {
		t.Fatalf("Replay = %d, %v; want 3", n, err)
	}
	for i := range 3 {
		m := getMsg(t, a, eventbus.EventsStream, uint64(i+1))
		if m.Subject != "events.town-a."+wantTypes[i] || string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) || m.Header.Get("Dialogwerk-Replay-Of") == "" {
			t.Errorf("replayed %d: %s %s %v", i, m.Subject, m.Data, m.Header)
		}
	}
	if dls, err := a.DeadLetters(ctx, 10); err != nil || len(dls) != 0 {
		t.Errorf("after replay: %+v, %v; want none left", dls, err)
	}
	if dls, err := other.DeadLetters(ctx, 10); err != nil || len(dls) != 1 || dls[0].EventID != "ev-b" {
		t.Errorf("other tenant's dead letters after replay: %+v, %v", dls, err)
	}
	if n, err := a.Replay(ctx, 10); err != nil || n != 0 {
		t.Errorf("second Replay = %d, %v; want 0", n, err)
	}
	if n := streamInfo(t, a, eventbus.EventsStream).State.Msgs; n != 3 {
		t.Errorf("EVENTS holds %d, want 3", n)
	}
}
