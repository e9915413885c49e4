package eventbus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures the in-process NATS server.
type EmbeddedConfig struct {
	// StoreDir holds JetStream's file store; required.
	StoreDir string
	// Listen is a host:port for outside clients ("127.0.0.1:4222"); empty
	// means in-process connections only.
	Listen string
	// SyncAlways fsyncs every stored message before acknowledging it; slower,
	// but an OS crash or power cut cannot lose an accepted event.
	SyncAlways bool
	// SyncInterval is how often the file store fsyncs otherwise; default 1 s
	// (nats-server's own default is 2 minutes).
	SyncInterval time.Duration
	// ServerName; default "dialogwerk".
	ServerName string
}

// Embedded is a running in-process nats-server with JetStream.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts nats-server with JetStream on file storage and waits
// until it accepts connections.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("embedded nats: StoreDir is required")
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = time.Second
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "dialogwerk"
	}
	opts := &server.Options{
		ServerName:   cfg.ServerName,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
		NoSigs:       true,
		NoLog:        true,
		DontListen:   cfg.Listen == "",
		MaxPayload:   4 << 20,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen port %q: %w", port, err)
		}
		if p == 0 {
			p = -1 // random
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after 15s")
	}
	return &Embedded{srv: srv}, nil
}

// Server exposes the server for in-process connections.
func (e *Embedded) Server() *server.Server { return e.srv }

// ClientURL is the URL outside clients use ("" when not listening).
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server and waits for it.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}
