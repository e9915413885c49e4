package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/email"
	"github.com/dialogwerk/dialogwerk/channels/retry"
	"github.com/dialogwerk/dialogwerk/channels/twilio"
	"github.com/dialogwerk/dialogwerk/engine"
	"github.com/dialogwerk/dialogwerk/engine/journal"
	"github.com/dialogwerk/dialogwerk/engine/readapi"
	"github.com/dialogwerk/dialogwerk/profiles"
	"github.com/dialogwerk/dialogwerk/profiles/migrations"
	"github.com/dialogwerk/dialogwerk/profiles/pglocal"
	"github.com/dialogwerk/dialogwerk/triggers/campaigns"
	"github.com/dialogwerk/dialogwerk/triggers/eventbus"
	"github.com/dialogwerk/dialogwerk/triggers/replay"
	"github.com/dialogwerk/dialogwerk/triggers/webhook"
)

// app is a running Dialogwerk: event bus, database, engine, channels and the
// HTTP API. Parts start in data-flow order and stop in reverse.
type app struct {
	log      *slog.Logger
	nats     *eventbus.Embedded
	pg       *pglocal.Cluster
	pool     *pgxpool.Pool
	bus      *eventbus.Bus
	engine   *engine.Engine
	emailS   *email.Sender
	twilioS  *twilio.Sender
	http     *http.Server
	debug    *http.Server
	addr     string
	store    *profiles.Store
	journal  *journal.Journal
	stopOnce bool
}

// openDB connects to cfg.DatabaseURL or starts the local cluster, and
// migrates the schema.
func openDB(ctx context.Context, cfg *config, log *slog.Logger) (*pglocal.Cluster, *pgxpool.Pool, error) {
	url := cfg.DatabaseURL
	var cl *pglocal.Cluster
	if url == "" {
		dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "pg"))
		if err != nil {
			return nil, nil, fmt.Errorf("data dir: %w", err)
		}
		cl, err = pglocal.Start(ctx, pglocal.Config{Dir: dir, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("starting local PostgreSQL: %w", err)
		}
		url = cl.ConnString()
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		stopPG(cl)
		return nil, nil, fmt.Errorf("database URL: %w", err)
	}
	if pcfg.MaxConns < 16 {
		pcfg.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		stopPG(cl)
		return nil, nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	n, err := migrations.Up(ctx, pool)
	if err != nil {
		pool.Close()
		stopPG(cl)
		return nil, nil, err
	}
	if n > 0 {
		log.InfoContext(ctx, "schema migrated", slog.Int("applied", n))
	}
	return cl, pool, nil
}

func stopPG(cl *pglocal.Cluster) {
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = cl.Stop(ctx)
}

// startApp assembles and starts everything configured in cfg.
func startApp(ctx context.Context, cfg *config, log *slog.Logger) (_ *app, err error) {
	a := &app{log: log}
	defer func() {
		if err != nil {
			a.stop(context.Background())
		}
	}()
	secrets, err := cfg.secrets()
	if err != nil {
		return nil, err
	}
	set, err := loadCampaigns(cfg.Campaigns)
	if err != nil {
		return nil, err
	}

	// The data directory must be traversable (not listable) for the
	// unprivileged user the local PostgreSQL runs as.
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}

	// Event bus.
	if cfg.NATSURL == "" {
		always, interval, err := cfg.syncSetting()
		if err != nil {
			return nil, err
		}
		dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "nats"))
		if err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating NATS store dir: %w", err)
		}
		a.nats, err = eventbus.StartEmbedded(eventbus.EmbeddedConfig{StoreDir: dir, Listen: cfg.NATSListen, SyncAlways: always, SyncInterval: interval})
		if err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "embedded NATS started", slog.String("store", dir), slog.String("sync", cfg.NATSSync), slog.String("client_url", a.nats.ClientURL()))
	}
	a.bus, err = eventbus.Connect(ctx, eventbus.Config{URL: cfg.NATSURL, Embedded: a.nats, Tenant: cfg.Tenant,
		Replicas: cfg.NATSReplicas, Retention: cfg.EventRetention})
	if err != nil {
		return nil, err
	}

	// Database.
	a.pg, a.pool, err = openDB(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.store = profiles.NewStore(a.pool)
	a.journal = journal.New(a.pool)

	// Channels.
	senders := map[channels.Kind]engine.Sender{}
	policy := retry.Policy{MaxAttempts: cfg.SendRetries, MaxElapsed: cfg.SendMaxElapsed}
	if cfg.MailFrom != "" {
		a.emailS, err = email.New(email.Config{Host: cfg.SMTPHost, Port: cfg.SMTPPort, TLS: email.TLSMode(cfg.SMTPTLS),
			Username: cfg.SMTPUser, Password: cfg.SMTPPassword, From: cfg.MailFrom, FromName: cfg.MailFromName, Pool: cfg.SMTPPool})
		if err != nil {
			return nil, fmt.Errorf("email channel: %w", err)
		}
		senders[channels.Email] = retry.Wrap(a.emailS, policy)
	}
	if cfg.TwilioAccountSID != "" {
		a.twilioS, err = twilio.New(twilio.Config{AccountSID: cfg.TwilioAccountSID, AuthToken: cfg.TwilioAuthToken,
			From: cfg.TwilioFrom, WhatsAppFrom: cfg.TwilioWhatsAppFrom, MessagingServiceSID: cfg.TwilioMessagingServiceSID,
			BaseURL: cfg.TwilioBaseURL})
		if err != nil {
			return nil, fmt.Errorf("twilio channels: %w", err)
		}
		for _, k := range []channels.Kind{channels.SMS, channels.WhatsApp} {
			if a.twilioS.Supports(k) {
				senders[k] = retry.Wrap(a.twilioS, policy)
			}
		}
	}
	if len(senders) == 0 {
		log.WarnContext(ctx, "no channel configured: every decision to send will be recorded as not sent (set --mail-from and/or --twilio-account-sid)")
	}

	// Engine.
	cons, err := a.bus.Consumer(ctx, eventbus.ConsumerConfig{AckWait: cfg.AckWait})
	if err != nil {
		return nil, err
	}
	a.engine, err = engine.New(engine.Config{
		Consumer: cons, DeadLetters: a.bus, Profiles: a.store, Journal: a.journal, Campaigns: set, Senders: senders,
		Utility: campaigns.Utility{Name: cfg.UtilityName, Phone: cfg.UtilityPhone, Web: cfg.UtilityWeb},
		Workers: cfg.Workers, BatchSize: cfg.BatchSize, AckWait: cfg.AckWait, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if err := a.engine.Start(ctx); err != nil {
		return nil, err
	}

	// HTTP: webhook in, read API out.
	var ws []webhook.Secret
	for src, key := range secrets {
		ws = append(ws, webhook.Secret{Source: src, Key: []byte(key)})
	}
	wh, err := webhook.New(webhook.Config{Secrets: ws, Logger: log}, a.bus)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", wh)
	mux.Handle("GET /v1/customers/{id}/messages", readapi.New(a.journal, a.store, splitList(cfg.APITokens), log))
	dl := readapi.RequireBearer(splitList(cfg.APITokens), replay.New(a.bus, log))
	mux.Handle("GET /v1/dead-letters", dl)
	mux.Handle("POST /v1/dead-letters/replay", dl)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	a.addr = ln.Addr().String()
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	go func() {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", slog.Any("error", err))
		}
	}()
	if cfg.DebugListen != "" {
		dm := http.NewServeMux()
		dm.HandleFunc("/debug/pprof/", pprof.Index)
		dm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		dm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		dm.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		dm.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		dm.Handle("/debug/pprof/heap", pprof.Handler("heap"))
		dm.Handle("/debug/pprof/allocs", pprof.Handler("allocs"))
		a.debug = &http.Server{Addr: cfg.DebugListen, Handler: dm, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = a.debug.ListenAndServe() }()
	}
	log.InfoContext(ctx, "dialogwerk serving", slog.String("http", "http://"+a.addr), slog.Int("campaigns", len(set.All())))
	return a, nil
}

func loadCampaigns(dir string) (*campaigns.Set, error) {
	if dir == "" {
		return campaigns.LoadSeed()
	}
	return campaigns.LoadDir(dir)
}

// stop shuts down in reverse order: stop accepting, drain the engine (finish
// and ack in-flight events), close channels, bus, database.
func (a *app) stop(ctx context.Context) {
	if a.stopOnce {
		return
	}
	a.stopOnce = true
	if a.http != nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = a.http.Shutdown(sctx)
		cancel()
	}
	if a.debug != nil {
		_ = a.debug.Close()
	}
	if a.engine != nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := a.engine.Stop(sctx); err != nil {
			a.log.WarnContext(ctx, "engine stopped before draining", slog.Any("error", err))
		}
		cancel()
	}
	if a.emailS != nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_ = a.emailS.Close(sctx)
		cancel()
	}
	if a.twilioS != nil {
		a.twilioS.Close()
	}
	if a.bus != nil {
		a.bus.Close()
	}
	if a.nats != nil {
		a.nats.Shutdown()
	}
	if a.pool != nil {
		a.pool.Close()
	}
	stopPG(a.pg)
}
