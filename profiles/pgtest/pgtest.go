// Package pgtest gives every test a PostgreSQL database of its own with the
// Dialogwerk schema applied, so tests run in parallel without seeing each
// other's rows.
//
// A package using it calls Main from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// The first call of New or NewURL in a test binary starts one local
// cluster for the binary (package pglocal, in a fresh temporary directory
// with its own unix socket, so test binaries running side by side never
// clash) and builds a template database with all migrations applied. Every
// test then gets a copy of the template (CREATE DATABASE … TEMPLATE), dropped
// when the test ends. Main stops the cluster after the tests.
//
// If DIALOGWERK_TEST_DATABASE_URL is set, that server is used instead of a
// local cluster; its role must be allowed to create databases. Databases
// and the template get names unique to the test binary there.
//
// The local cluster trades durability for speed (fsync off): benchmarks that
// measure the database should start a durable one with pglocal.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dialogwerk/dialogwerk/profiles/migrations"
	"github.com/dialogwerk/dialogwerk/profiles/pglocal"
)

// EnvDatabaseURL names the environment variable that points the tests at
// an existing PostgreSQL server instead of a local cluster.
const EnvDatabaseURL = "DIALOGWERK_TEST_DATABASE_URL"

// dirPattern names the cluster directories in os.TempDir().
const dirPattern = "dwpgtest-"

// clusterSettings make the throwaway test cluster fast. Nothing in it must
// survive a crash of the machine.
var clusterSettings = []string{
	"fsync = off",
	"synchronous_commit = off",
	"full_page_writes = off",
}

// shared is the per-binary server. A package-level singleton is the point
// of this package: one cluster per test binary, whatever the test asks.
var shared struct {
	mainCalled atomic.Bool
	once       sync.Once
	srv        *server
	err        error
}

// server is a PostgreSQL server with a migrated template database.
type server struct {
	cluster  *pglocal.Cluster // nil when EnvDatabaseURL is used
	dir      string           // the cluster's directory, removed at the end
	connStr  string           // connects to the maintenance database
	admin    *pgxpool.Pool
	template string
	prefix   string // of the names of test databases
	seq      atomic.Int64
}

// Main runs the tests of m, then stops the cluster started for them and
// exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	shared.mainCalled.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// New returns a pool connected to a new database holding the migrated
// schema and no rows. The pool is closed and the database dropped when the
// test ends. Safe for parallel tests.
func New(t testing.TB) *pgxpool.Pool {
	t.Helper()
	connStr := NewURL(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, connStr)
	if err != nil {
		t.Fatalf("pgtest: connecting to test database: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop registered by NewURL
	return pool
}

// NewURL creates a database like New and returns its connection string,
// for tests that hand it to a subprocess. The database is dropped, after
// disconnecting any remaining sessions, when the test ends.
func NewURL(t testing.TB) string {
	t.Helper()
	s := get(t)
	name := s.prefix + strconv.FormatInt(s.seq.Add(1), 10)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(s.template)); err != nil {
		t.Fatalf("pgtest: creating test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping test database %s: %v", name, err)
		}
	})
	connStr, err := withDatabase(s.connStr, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return connStr
}

// get returns the shared server, starting it on first use.
func get(t testing.TB) *server {
	t.Helper()
	if !shared.mainCalled.Load() {
		t.Fatal("pgtest: the package must call pgtest.Main from TestMain, which stops the test cluster:\n\tfunc TestMain(m *testing.M) { pgtest.Main(m) }")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared.srv, shared.err = start(ctx)
	})
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return shared.srv
}

// start starts the server and builds the template database.
func start(ctx context.Context) (*server, error) {
	s := &server{connStr: os.Getenv(EnvDatabaseURL), template: "dwtemplate", prefix: "t_"}
	if s.connStr != "" {
		token := randomToken()
		s.template += "_" + token
		s.prefix += token + "_"
	} else {
		removeStale(ctx)
		dir, err := os.MkdirTemp("", dirPattern)
		if err != nil {
			return nil, fmt.Errorf("creating cluster directory: %w", err)
		}
		s.dir = dir
		s.cluster, err = pglocal.Start(ctx, pglocal.Config{
			Dir:      dir,
			Database: "postgres",
			Settings: clusterSettings,
			Logger:   slog.New(slog.DiscardHandler),
		})
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("starting test cluster: %w", err)
		}
		s.connStr = s.cluster.ConnStringFor("postgres")
	}
	cfg, err := pgxpool.ParseConfig(s.connStr)
	if err != nil {
		s.stop(ctx)
		return nil, fmt.Errorf("parsing %s: %w", EnvDatabaseURL, err)
	}
	cfg.MaxConns = 4
	if s.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		s.stop(ctx)
		return nil, fmt.Errorf("connecting to test server: %w", err)
	}
	if err := s.buildTemplate(ctx); err != nil {
		s.stop(ctx)
		return nil, err
	}
	return s, nil
}

// buildTemplate creates the template database with all migrations.
func (s *server) buildTemplate(ctx context.Context) error {
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+ident(s.template)); err != nil {
		return fmt.Errorf("creating template database: %w", err)
	}
	connStr, err := withDatabase(s.connStr, s.template)
	if err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, connStr)
	if err != nil {
		return fmt.Errorf("connecting to template database: %w", err)
	}
	_, err = migrations.Up(ctx, pool)
	pool.Close() // a template must have no sessions when copied
	if err != nil {
		return fmt.Errorf("migrating template database: %w", err)
	}
	// Nobody connects to the template by mistake and changes it.
	if _, err := s.admin.Exec(ctx, "ALTER DATABASE "+ident(s.template)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("sealing template database: %w", err)
	}
	return nil
}

// shutdown drops what the binary created on a shared server, or stops
// the local cluster.
func shutdown() error {
	s := shared.srv
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.stop(ctx)
}

func (s *server) stop(ctx context.Context) error {
	var errs []error
	if s.admin != nil {
		if s.cluster == nil {
			_, err := s.admin.Exec(ctx, "ALTER DATABASE "+ident(s.template)+" WITH IS_TEMPLATE false")
			if err == nil {
				_, err = s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(s.template)+" WITH (FORCE)")
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("dropping template database: %w", err))
			}
		}
		s.admin.Close()
	}
	if s.cluster != nil {
		if err := s.cluster.Stop(ctx); err != nil {
			errs = append(errs, err)
		} else if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing test cluster: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeStale removes clusters left in os.TempDir() by test binaries that
// died without running Main's cleanup (interrupted, timed out), stopping
// their servers. Clusters in use are locked and skipped; young directories
// are skipped too, as their cluster may still be starting.
func removeStale(ctx context.Context) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPattern+"*"))
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		_ = pglocal.Remove(ctx, pglocal.Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)}) // best effort
	}
}

// withDatabase returns connStr, a URL or keyword/value string, pointed at
// database.
func withDatabase(connStr, database string) (string, error) {
	if strings.HasPrefix(connStr, "postgres://") || strings.HasPrefix(connStr, "postgresql://") {
		u, err := url.Parse(connStr)
		if err != nil {
			return "", fmt.Errorf("parsing database URL: %w", err)
		}
		u.Path, u.RawPath = "/"+database, ""
		q := u.Query()
		if q.Has("dbname") {
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// In keyword/value form the last dbname wins.
	return connStr + " dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(database) + "'", nil
}

func ident(name string) string {
	return pgx.Identifier{name}.Sanitize()
}

func randomToken() string {
	b := make([]byte, 4)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
