// Package pglocal runs a PostgreSQL cluster of its own from the PostgreSQL
// binaries installed on the machine, for `dialogwerk serve` and `demo`
// without a configured database, for tests and for benchmarks.
//
// A cluster lives in one directory:
//
//	<Dir>/data          the data directory (PGDATA)
//	<Dir>/sock          the unix socket (elsewhere if <Dir> is too long)
//	<Dir>/postgres.log  the server log
//
// Start reuses a cluster already initialised in Dir, so data survive a
// restart; it recovers from a server that was killed and stops a server
// left running by a process that died without calling Stop.
//
// The server stays durable (fsync and synchronous_commit on) unless
// Config.Settings say otherwise, so benchmarks measure a real database.
// When the calling process is root the server runs as an unprivileged
// system user (Config.RunAs), because PostgreSQL refuses to run as root.
package pglocal

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrInUse is returned by Start and Remove when another live Cluster (in
// this or another process) holds the directory.
var ErrInUse = errors.New("cluster directory in use by another process")

// simpleName is what initdb accepts as a role name without quoting trouble.
var simpleName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Defaults for the zero values of Config.
const (
	DefaultDatabase = "dialogwerk"
	DefaultUser     = "dialogwerk"
	DefaultRunAs    = "postgres"
)

const (
	// defaultPort names the socket file when Config.Port is zero.
	defaultPort = 5432
	// maxSocketPath keeps the socket path within sun_path (108 bytes).
	maxSocketPath = 100
	// maxLogSize is the log size above which Start rotates the log.
	maxLogSize = 16 << 20
	// confName is the file Start rewrites with the settings; the
	// cluster's postgresql.conf includes it.
	confName = "pglocal.conf"
)

// Config configures a cluster. The zero value is ready to use.
type Config struct {
	// Dir is the cluster directory. A cluster initialised there before is
	// reused with its data; otherwise a new one is created. Empty means a
	// fresh temporary directory, removed by Stop.
	Dir string

	// BinDir is the directory holding initdb, pg_ctl and postgres. Empty
	// means the directory of initdb found in PATH, else the newest
	// /usr/lib/postgresql/*/bin.
	BinDir string

	// Port, when positive, makes the server listen on 127.0.0.1:Port as
	// well, with trust authentication: every local user can then connect
	// as the superuser. Zero means the unix socket only (reachable by this
	// process's user and the server's), so clusters never clash.
	// ConnString always uses the socket.
	Port int

	// Database is created if missing. Empty means DefaultDatabase.
	Database string

	// User is the superuser role initdb creates and connections use;
	// authentication is "trust" for local connections. Empty means
	// DefaultUser. It only takes effect when the cluster is created.
	User string

	// Settings are extra postgresql.conf lines ("name = value"), applied
	// after the defaults so they override them, at every Start.
	Settings []string

	// RunAs is the system user the server runs as when this process is
	// root. Empty means DefaultRunAs. Ignored when not root: the server
	// then runs as the current user.
	RunAs string

	// Logger receives lifecycle messages. Nil means slog.Default().
	Logger *slog.Logger
}

// defaultSettings suit a small, fast machine. Durability stays on.
var defaultSettings = []string{
	"max_connections = 200",
	"shared_buffers = 128MB",
	"fsync = on",
	"synchronous_commit = on",
	"full_page_writes = on",
	"wal_level = minimal",
	"max_wal_senders = 0",
	"checkpoint_timeout = 15min",
	"max_wal_size = 2GB",
	"min_wal_size = 256MB",
	"log_line_prefix = '%m [%p] '",
	"log_timezone = 'UTC'",
	// Keep customer data out of the log: no statement texts, no DETAIL
	// lines (they quote row values, e.g. of unique violations).
	"log_min_error_statement = panic",
	"log_error_verbosity = terse",
	"log_statement = none",
}

// Cluster is a running local PostgreSQL server. Its methods are safe for
// concurrent use.
type Cluster struct {
	log      *slog.Logger
	owner    *owner
	binDir   string
	dir      string
	dataDir  string
	sockDir  string
	logFile  string
	port     int
	user     string
	database string
	listen   bool     // also listen on 127.0.0.1:port
	extra    []string // Config.Settings

	removeDir  bool // Dir was a temporary directory
	removeSock bool // sockDir is a temporary directory outside Dir

	mu      sync.Mutex
	lock    *os.File // flock of Dir, held while running
	stopped bool
}

// Start starts a cluster in cfg.Dir, creating it if needed, waits until it
// accepts connections and creates the database. ctx bounds the whole
// start-up, including crash recovery of a killed server.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	begun := time.Now()
	c, err := newCluster(cfg)
	if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := c.start(ctx); err != nil {
		c.release()
		return nil, fmt.Errorf("pglocal: starting cluster in %s: %w", c.dir, err)
	}
	c.log.InfoContext(ctx, "cluster started",
		slog.String("dir", c.dir), slog.String("socket_dir", c.sockDir), slog.Int("port", c.port),
		slog.Duration("took", time.Since(begun)))
	return c, nil
}

// newCluster resolves cfg into a Cluster without touching the disk, except
// for creating a temporary Dir.
func newCluster(cfg Config) (*Cluster, error) {
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range", cfg.Port)
	}
	if cfg.User != "" && !simpleName.MatchString(cfg.User) {
		return nil, fmt.Errorf("user %q: want letters, digits and underscores", cfg.User)
	}
	for _, s := range cfg.Settings {
		if strings.ContainsAny(s, "\r\n") {
			return nil, fmt.Errorf("setting %q spans lines", s)
		}
	}
	c := &Cluster{
		log:      cmp.Or(cfg.Logger, slog.Default()).With(slog.String("component", "pglocal")),
		port:     cmp.Or(cfg.Port, defaultPort),
		user:     cmp.Or(cfg.User, DefaultUser),
		database: cmp.Or(cfg.Database, DefaultDatabase),
		listen:   cfg.Port > 0,
		extra:    slices.Clone(cfg.Settings),
	}
	var err error
	if c.owner, err = resolveOwner(cmp.Or(cfg.RunAs, DefaultRunAs)); err != nil {
		return nil, err
	}
	if c.binDir, err = findBinDir(cfg.BinDir); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		if c.dir, err = os.MkdirTemp("", "pglocal-"); err != nil {
			return nil, fmt.Errorf("creating cluster directory: %w", err)
		}
		c.removeDir = true
	} else if c.dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("resolving cluster directory: %w", err)
	}
	c.dataDir = filepath.Join(c.dir, "data")
	c.logFile = filepath.Join(c.dir, "postgres.log")
	c.sockDir = filepath.Join(c.dir, "sock")
	return c, nil
}

// start prepares the directory and starts the server.
func (c *Cluster) start(ctx context.Context) error {
	if err := c.prepareDir(); err != nil {
		return err
	}
	lock, err := lockDir(c.dir)
	if err != nil {
		return err
	}
	c.lock = lock
	if err := c.initIfNeeded(ctx); err != nil {
		return err
	}
	if err := c.prepareRun(); err != nil {
		return err
	}
	if err := c.stopOrphan(ctx); err != nil {
		return err
	}
	if err := c.startServer(ctx); err != nil {
		return err
	}
	if err := c.ensureDatabase(ctx); err != nil {
		c.stopServer(ctx)
		return err
	}
	return nil
}

// prepareDir creates Dir and makes sure the server's user can reach it.
func (c *Cluster) prepareDir() error {
	perm := os.FileMode(0o700)
	if c.owner.switchUser {
		perm = 0o711 // directories we create on the way must let the server's user through
	}
	if err := os.MkdirAll(c.dir, perm); err != nil {
		return fmt.Errorf("creating cluster directory: %w", err)
	}
	if c.owner.switchUser {
		// The server's user needs to pass through Dir (not list it).
		fi, err := os.Stat(c.dir)
		if err != nil {
			return fmt.Errorf("checking cluster directory: %w", err)
		}
		if !c.owner.mayEnter(fi) {
			if err := os.Chmod(c.dir, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("opening cluster directory to %s: %w", c.owner.name, err)
			}
		}
	}
	return c.owner.checkReachable(c.dir)
}

// initIfNeeded runs initdb unless Dir holds an initialised cluster. It
// initialises into a scratch directory renamed into place at the end, so a
// killed initdb never leaves a half-made cluster behind.
func (c *Cluster) initIfNeeded(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking for a cluster: %w", err)
	}
	if entries, err := os.ReadDir(c.dataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is neither empty nor a PostgreSQL data directory", c.dataDir)
	}
	begun := time.Now()
	scratch := c.dataDir + ".init"
	if err := os.RemoveAll(scratch); err != nil {
		return fmt.Errorf("removing leftovers of an earlier initdb: %w", err)
	}
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	if err := c.owner.chown(scratch); err != nil {
		return err
	}
	err := c.owner.run(ctx, c.dir, filepath.Join(c.binDir, "initdb"),
		"-D", scratch, "-U", c.user, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	if err != nil {
		os.RemoveAll(scratch)
		return fmt.Errorf("initialising cluster: %w", err)
	}
	if err := appendLine(filepath.Join(scratch, "postgresql.conf"),
		"\n# Added by pglocal; it rewrites this file at every start.\ninclude_if_exists = '"+confName+"'\n"); err != nil {
		return err
	}
	os.Remove(c.dataDir) // an empty directory, if any
	if err := os.Rename(scratch, c.dataDir); err != nil {
		return fmt.Errorf("moving initialised cluster into place: %w", err)
	}
	c.log.InfoContext(ctx, "cluster initialised", slog.String("dir", c.dir), slog.Duration("took", time.Since(begun)))
	return nil
}

// prepareRun readies the socket directory, the log and the settings file.
func (c *Cluster) prepareRun() error {
	sockFile := filepath.Join(c.sockDir, ".s.PGSQL."+strconv.Itoa(c.port))
	if len(sockFile) >= maxSocketPath {
		dir, err := os.MkdirTemp("", "pglocal-sock-")
		if err != nil {
			return fmt.Errorf("creating socket directory: %w", err)
		}
		c.sockDir, c.removeSock = dir, true
	} else if err := os.MkdirAll(c.sockDir, 0o700); err != nil {
		return fmt.Errorf("creating socket directory: %w", err)
	}
	if err := c.owner.chown(c.sockDir); err != nil {
		return err
	}
	if err := c.owner.checkReachable(c.sockDir); err != nil {
		return err
	}

	if fi, err := os.Stat(c.logFile); err == nil && fi.Size() > maxLogSize {
		if err := os.Rename(c.logFile, c.logFile+".1"); err != nil {
			return fmt.Errorf("rotating server log: %w", err)
		}
	}
	f, err := os.OpenFile(c.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating server log: %w", err)
	}
	f.Close()
	if err := c.owner.chown(c.logFile); err != nil {
		return err
	}

	conf := filepath.Join(c.dataDir, confName)
	if err := os.WriteFile(conf, []byte(c.renderConf()), 0o600); err != nil {
		return fmt.Errorf("writing settings: %w", err)
	}
	return c.owner.chown(conf)
}

// renderConf returns the contents of confName.
func (c *Cluster) renderConf() string {
	var b strings.Builder
	b.WriteString("# Written by pglocal at every start; edit Config.Settings instead.\n")
	listen := ""
	if c.listen {
		listen = "127.0.0.1"
	}
	fmt.Fprintf(&b, "listen_addresses = %s\n", quoteConf(listen))
	fmt.Fprintf(&b, "port = %d\n", c.port)
	fmt.Fprintf(&b, "unix_socket_directories = %s\n", quoteConf(c.sockDir))
	for _, s := range slices.Concat(defaultSettings, c.extra) {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

// stopOrphan stops a server still running from the data directory. Since
// we hold the directory's lock, its Cluster's process has died.
func (c *Cluster) stopOrphan(ctx context.Context) error {
	if !c.running() {
		return nil
	}
	c.log.WarnContext(ctx, "stopping a server left running by an earlier process", slog.String("dir", c.dir))
	if err := c.stopServer(ctx); err != nil {
		return fmt.Errorf("stopping orphaned server: %w", err)
	}
	return nil
}

// running reports whether a server is running from the data directory.
// Unlike pg_ctl status it counts a killed server that is still a zombie
// as stopped.
func (c *Cluster) running() bool {
	return serverPID(c.dataDir) != 0
}

// startServer runs pg_ctl start and waits until the server is ready.
func (c *Cluster) startServer(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		logSize := fileSize(c.logFile)
		err := c.owner.run(ctx, c.dir, filepath.Join(c.binDir, "pg_ctl"), "start",
			"-D", c.dataDir, "-l", c.logFile, "-w", "-t", strconv.Itoa(waitSeconds(ctx, 300)))
		if err == nil {
			return nil
		}
		serverLog := newLogSince(c.logFile, logSize)
		if attempt < 40 && ctx.Err() == nil && c.mayRetryStart(serverLog) {
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
				continue
			}
		}
		// pg_ctl may have been killed with the server still coming up.
		if c.running() {
			c.stopServer(context.WithoutCancel(ctx))
		}
		if serverLog == "" {
			serverLog = fileTail(c.logFile, 3000)
		}
		return fmt.Errorf("starting server: %w\nserver log %s:\n%s", err, c.logFile, indent(tail(serverLog, 3000)))
	}
}

// mayRetryStart reports whether a failed start is worth retrying: after a
// server was killed, its children may hold the old shared memory for a
// moment, and its pid may linger as a zombie until init reaps it (which
// the new server takes for a live postmaster).
func (c *Cluster) mayRetryStart(serverLog string) bool {
	if strings.Contains(serverLog, "pre-existing shared memory block") {
		return true
	}
	return strings.Contains(serverLog, `lock file "postmaster.pid" already exists`) && !c.running()
}

// ensureDatabase creates the configured database unless it exists.
func (c *Cluster) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.ConnStringFor("postgres"))
	if err != nil {
		return fmt.Errorf("connecting as %q: %w", c.user, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	err = conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", c.database).Scan(&exists)
	if err != nil {
		return fmt.Errorf("looking for database %q: %w", c.database, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{c.database}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating database %q: %w", c.database, err)
	}
	return nil
}

// Stop shuts the server down and waits: a fast shutdown (sessions are
// disconnected, work is checkpointed) bounded by ctx, then an immediate
// one (crash recovery at the next start) if that fails. It removes the
// directory if Start created it. Stop is idempotent.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	err := c.stopServer(ctx)
	if err != nil {
		err = fmt.Errorf("pglocal: stopping cluster in %s: %w", c.dir, err)
	} else {
		c.log.InfoContext(ctx, "cluster stopped", slog.String("dir", c.dir))
	}
	c.release()
	if err == nil && c.removeDir {
		if rmErr := os.RemoveAll(c.dir); rmErr != nil {
			err = fmt.Errorf("pglocal: removing cluster directory: %w", rmErr)
		}
	}
	return err
}

// stopServer stops the server: fast within ctx, else immediately.
func (c *Cluster) stopServer(ctx context.Context) error {
	if !c.running() {
		return nil
	}
	pgCtl := filepath.Join(c.binDir, "pg_ctl")
	err := c.owner.run(ctx, c.dir, pgCtl, "stop", "-D", c.dataDir, "-m", "fast", "-w", "-t", strconv.Itoa(waitSeconds(ctx, 60)))
	if err == nil || !c.running() {
		return nil
	}
	c.log.WarnContext(ctx, "fast shutdown failed; shutting down immediately", slog.String("dir", c.dir), slog.Any("error", err))
	hardCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err2 := c.owner.run(hardCtx, c.dir, pgCtl, "stop", "-D", c.dataDir, "-m", "immediate", "-w", "-t", "30"); err2 != nil && c.running() {
		return fmt.Errorf("immediate shutdown after failed fast shutdown (%w): %w", err, err2)
	}
	return nil
}

// release drops the directory lock and a temporary socket directory.
func (c *Cluster) release() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
	if c.removeSock {
		os.RemoveAll(c.sockDir)
	}
}

// ConnString returns a connection URL for the configured database, over
// the unix socket.
func (c *Cluster) ConnString() string {
	return c.ConnStringFor(c.database)
}

// ConnStringFor returns a connection URL for another database of the
// cluster, over the unix socket.
func (c *Cluster) ConnStringFor(database string) string {
	q := url.Values{}
	q.Set("host", c.sockDir)
	q.Set("port", strconv.Itoa(c.port))
	q.Set("sslmode", "disable")
	u := url.URL{Scheme: "postgres", User: url.User(c.user), Path: "/" + database, RawQuery: q.Encode()}
	return u.String()
}

// Dir returns the cluster directory.
func (c *Cluster) Dir() string { return c.dir }

// LogFile returns the path of the server log.
func (c *Cluster) LogFile() string { return c.logFile }

// Remove stops a server left running in cfg.Dir by a process that died
// without calling Stop, and deletes the directory. Only cfg.Dir, BinDir,
// RunAs and Logger matter. It fails with ErrInUse while a live Cluster
// holds the directory.
func Remove(ctx context.Context, cfg Config) error {
	if cfg.Dir == "" {
		return errors.New("pglocal: Remove needs a directory")
	}
	c, err := newCluster(cfg)
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if _, err := os.Stat(c.dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if c.lock, err = lockDir(c.dir); err != nil {
		return fmt.Errorf("pglocal: removing %s: %w", c.dir, err)
	}
	defer c.release()
	if err := c.stopServer(ctx); err != nil {
		return fmt.Errorf("pglocal: removing %s: %w", c.dir, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("pglocal: removing %s: %w", c.dir, err)
	}
	return nil
}

// findBinDir returns dir if given, else the directory of initdb in PATH,
// else the newest /usr/lib/postgresql/*/bin, after checking it holds the
// programs needed.
func findBinDir(dir string) (string, error) {
	if dir == "" {
		dir = searchBinDir()
		if dir == "" {
			return "", errors.New("no PostgreSQL binaries found: initdb is not in PATH and /usr/lib/postgresql/*/bin does not exist; set BinDir")
		}
	}
	for _, prog := range []string{"initdb", "pg_ctl", "postgres"} {
		p := filepath.Join(dir, prog)
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("PostgreSQL binaries in %s (set BinDir to the directory holding initdb, pg_ctl and postgres): %w", dir, err)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("PostgreSQL binaries in %s: %s is not executable", dir, p)
		}
	}
	return dir, nil
}

func searchBinDir() string {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if abs, err := filepath.Abs(p); err == nil {
			return filepath.Dir(abs)
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(d string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(d)), 64)
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(version(a), version(b)) })
	if len(dirs) == 0 {
		return ""
	}
	return dirs[len(dirs)-1]
}

// waitSeconds returns the seconds left until ctx's deadline (at least 1),
// or def without a deadline.
func waitSeconds(ctx context.Context, def int) int {
	d, ok := ctx.Deadline()
	if !ok {
		return def
	}
	return max(int(time.Until(d).Seconds()), 1)
}

func quoteConf(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func appendLine(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// newLogSince returns the log written after offset, at most its last
// 3000 bytes.
func newLogSince(path string, offset int64) string {
	size := fileSize(path)
	if size <= offset {
		return ""
	}
	if size-offset > 3000 {
		return fileTail(path, 3000)
	}
	return readFrom(path, offset, false)
}
