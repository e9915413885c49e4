package pglocal

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// clusterDir returns a fresh directory for a cluster, removed after the
// test. It is made with os.MkdirTemp in os.TempDir() rather than
// t.TempDir(), whose parent the server's user cannot enter when we run as
// root.
func clusterDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// start starts a cluster and stops it after the test.
func start(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	begun := time.Now()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("Start took %v", time.Since(begun))
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connecting to %s: %v", connString, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func queryString(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(t.Context(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// postmasterPID reads the server's pid from postmaster.pid.
func postmasterPID(t *testing.T, c *Cluster) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatalf("reading postmaster.pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatalf("parsing postmaster.pid: %v", err)
	}
	return pid
}

// alive reports whether pid runs (a zombie counts as dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// simulateOwnerDeath drops c's directory lock as if its process had died,
// leaving the server running.
func simulateOwnerDeath(c *Cluster) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.release()
	c.stopped = true
}

func TestStartQueryAndDefaults(t *testing.T) {
	t.Parallel()
	c := start(t, Config{Dir: clusterDir(t)})
	conn := connect(t, c.ConnString())

	if got := queryString(t, conn, "SELECT current_database()"); got != DefaultDatabase {
		t.Errorf("current_database() = %q, want %q", got, DefaultDatabase)
	}
	if got := queryString(t, conn, "SELECT current_user"); got != DefaultUser {
		t.Errorf("current_user = %q, want %q", got, DefaultUser)
	}
	for setting, want := range map[string]string{
		"fsync":              "on",
		"synchronous_commit": "on",
		"full_page_writes":   "on",
		"max_connections":    "200",
		"shared_buffers":     "128MB",
		"listen_addresses":   "",
		"server_encoding":    "UTF8",
	} {
		if got := queryString(t, conn, "SHOW "+setting); got != want {
			t.Errorf("SHOW %s = %q, want %q", setting, got, want)
		}
	}
	if fi, err := os.Stat(c.LogFile()); err != nil || fi.Size() == 0 {
		t.Errorf("server log %s missing or empty: %v", c.LogFile(), err)
	}
}

func TestSettingsOverrideDefaults(t *testing.T) {
	t.Parallel()
	c := start(t, Config{Dir: clusterDir(t), Database: "other", User: "someone",
		Settings: []string{"work_mem = 7MB", "max_connections = 50"}})
	conn := connect(t, c.ConnString())
	if got := queryString(t, conn, "SELECT current_database() || ' ' || current_user"); got != "other someone" {
		t.Errorf("database and user = %q, want %q", got, "other someone")
	}
	if got := queryString(t, conn, "SHOW work_mem"); got != "7MB" {
		t.Errorf("work_mem = %q, want 7MB", got)
	}
	if got := queryString(t, conn, "SHOW max_connections"); got != "50" {
		t.Errorf("max_connections = %q, want 50", got)
	}
}

func TestDataPersistAcrossStopAndStart(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	ctx := t.Context()

	c, err := Start(ctx, Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("Stop removed a caller's cluster: %v", err)
	}

	c = start(t, Config{Dir: dir})
	if got := queryString(t, connect(t, c.ConnString()), "SELECT v FROM kept"); got != "still here" {
		t.Errorf("after restart got %q, want %q", got, "still here")
	}
}

func TestRecoverFromKilledServer(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	c := start(t, Config{Dir: dir})
	conn := connect(t, c.ConnString())
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed')"); err != nil {
		t.Fatal(err)
	}

	pid := postmasterPID(t, c)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing postmaster %d: %v", pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still alive after SIGKILL", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	simulateOwnerDeath(c)
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); err != nil {
		t.Fatalf("expected a stale postmaster.pid: %v", err)
	}

	c2 := start(t, Config{Dir: dir})
	if got := queryString(t, connect(t, c2.ConnString()), "SELECT v FROM kept"); got != "committed" {
		t.Errorf("after crash recovery got %q, want %q", got, "committed")
	}
	if newPID := postmasterPID(t, c2); newPID == pid {
		t.Errorf("server pid unchanged (%d): not restarted", pid)
	}
}

func TestOrphanedServerIsRestarted(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	c := start(t, Config{Dir: dir})
	oldPID := postmasterPID(t, c)
	simulateOwnerDeath(c) // the server keeps running without an owner

	c2 := start(t, Config{Dir: dir, Settings: []string{"work_mem = 9MB"}})
	if alive(oldPID) {
		t.Errorf("orphaned server %d still running", oldPID)
	}
	if got := queryString(t, connect(t, c2.ConnString()), "SHOW work_mem"); got != "9MB" {
		t.Errorf("work_mem = %q, want 9MB from the new start", got)
	}
}

func TestSecondStartOnSameDirFails(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	c := start(t, Config{Dir: dir})
	_, err := Start(t.Context(), Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Start = %v, want ErrInUse", err)
	}
	connect(t, c.ConnString()) // the first cluster still works
}

func TestWrongBinDir(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(clusterDir(t), "no-such-bin")
	_, err := Start(t.Context(), Config{Dir: clusterDir(t), BinDir: bin})
	if err == nil {
		t.Fatal("Start succeeded with a wrong BinDir")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), bin) || !strings.Contains(err.Error(), "initdb") {
		t.Errorf("error %q should wrap fs.ErrNotExist and name %s and initdb", err, bin)
	}
}

func TestStartFailureShowsServerLog(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	_, err := Start(t.Context(), Config{Dir: dir, Logger: slog.New(slog.DiscardHandler),
		Settings: []string{"shared_buffers = lots"}})
	if err == nil {
		t.Fatal("Start succeeded with an invalid setting")
	}
	if !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Errorf("error lacks the server's complaint:\n%v", err)
	}
	// The directory is free again and a corrected start works.
	c := start(t, Config{Dir: dir})
	connect(t, c.ConnString())
}

func TestTemporaryDirIsRemoved(t *testing.T) {
	t.Parallel()
	c, err := Start(t.Context(), Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir(), "data", "PG_VERSION")); err != nil {
		c.Stop(context.Background())
		t.Fatalf("no cluster in %s: %v", c.Dir(), err)
	}
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Dir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary directory %s not removed: %v", c.Dir(), err)
	}
}

func TestLongDirUsesShortSocketDir(t *testing.T) {
	t.Parallel()
	base := clusterDir(t)
	if err := os.Chmod(base, 0o711); err != nil { // let the server's user through when we are root
		t.Fatal(err)
	}
	dir := filepath.Join(base, strings.Repeat("d", 60), strings.Repeat("e", 60))
	c := start(t, Config{Dir: dir})
	if strings.HasPrefix(c.sockDir, dir) {
		t.Errorf("socket dir %s inside the long directory", c.sockDir)
	}
	connect(t, c.ConnString())
	sockDir := c.sockDir
	if err := c.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sockDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary socket dir %s left behind: %v", sockDir, err)
	}
}

func TestTCPPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	c := start(t, Config{Dir: clusterDir(t), Port: port})
	conn := connect(t, "postgres://dialogwerk@127.0.0.1:"+strconv.Itoa(port)+"/dialogwerk?sslmode=disable")
	if got := queryString(t, conn, "SELECT inet_server_port()::text"); got != strconv.Itoa(port) {
		t.Errorf("server port = %s, want %d", got, port)
	}
	connect(t, c.ConnString()) // the socket works too
}

func TestRemoveStopsOrphanAndDeletes(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	c := start(t, Config{Dir: dir})
	pid := postmasterPID(t, c)

	if err := Remove(t.Context(), Config{Dir: dir}); !errors.Is(err, ErrInUse) {
		t.Fatalf("Remove of a live cluster = %v, want ErrInUse", err)
	}
	simulateOwnerDeath(c)
	if err := Remove(t.Context(), Config{Dir: dir}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if alive(pid) {
		t.Errorf("server %d still running after Remove", pid)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s not removed: %v", dir, err)
	}
}

func TestUnreachableDirIsExplained(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the server to another user")
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cluster") // t.TempDir's parents are 0700
	_, err := Start(t.Context(), Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "cannot enter") {
		t.Fatalf("Start = %v, want an explanation that the server's user cannot enter the directory", err)
	}
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"user":    {User: `bad"user`},
		"port":    {Port: 70000},
		"setting": {Settings: []string{"work_mem = 1MB\nfsync = off"}},
	} {
		cfg.Dir = clusterDir(t)
		if _, err := Start(t.Context(), cfg); err == nil {
			t.Errorf("%s: Start accepted %+v", name, cfg)
		}
	}
}
