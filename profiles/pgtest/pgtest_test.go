package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { Main(m) }

// childEnv makes the test binary act as a child of one of the tests below.
const childEnv = "PGTEST_CHILD"

func currentDatabase(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var name string
	if err := pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func countCustomers(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM customers").Scan(&n); err != nil {
		t.Fatalf("counting customers: %v", err)
	}
	return n
}

func insertCustomer(t *testing.T, pool *pgxpool.Pool, id string) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), "INSERT INTO customers (id, last_name) VALUES ($1, 'Muster')", id); err != nil {
		t.Fatalf("inserting customer %s: %v", id, err)
	}
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	var exists bool
	err := get(t).admin.QueryRow(t.Context(), "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestDatabasesAreSeparate(t *testing.T) {
	t.Parallel()
	a, b := New(t), New(t)
	if currentDatabase(t, a) == currentDatabase(t, b) {
		t.Fatalf("both pools use database %s", currentDatabase(t, a))
	}
	insertCustomer(t, a, "K-1")
	insertCustomer(t, a, "K-2")
	if n := countCustomers(t, a); n != 2 {
		t.Errorf("database a has %d customers, want 2", n)
	}
	if n := countCustomers(t, b); n != 0 {
		t.Errorf("database b sees %d customers of a, want 0", n)
	}
}

func TestParallelTestsGetOwnMigratedDatabases(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		names = map[string]string{} // database → test
	)
	t.Run("group", func(t *testing.T) {
		for i := range 6 {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				pool := New(t)
				name := currentDatabase(t, pool)
				mu.Lock()
				if other, dup := names[name]; dup {
					t.Errorf("database %s also given to %s", name, other)
				}
				names[name] = t.Name()
				mu.Unlock()

				if n := countCustomers(t, pool); n != 0 {
					t.Errorf("fresh database has %d customers", n)
				}
				insertCustomer(t, pool, "K-1") // same key everywhere: only works if separate
				if n := countCustomers(t, pool); n != 1 {
					t.Errorf("%d customers after one insert", n)
				}
			})
		}
	})
	if len(names) != 6 {
		t.Errorf("%d databases for 6 tests", len(names))
	}
	for name := range names {
		if databaseExists(t, name) {
			t.Errorf("database %s not dropped after its test", name)
		}
	}
}

func TestNewURL(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("use", func(t *testing.T) {
		connStr := NewURL(t)
		conn, err := pgx.Connect(t.Context(), connStr)
		if err != nil {
			t.Fatal(err)
		}
		// Left open on purpose: the drop must disconnect it.
		if err := conn.QueryRow(t.Context(), "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM customers").Scan(&n); err != nil {
			t.Fatalf("schema missing: %v", err)
		}
	})
	if name == "" || !strings.HasPrefix(name, get(t).prefix) {
		t.Fatalf("database %q lacks prefix %q", name, get(t).prefix)
	}
	if databaseExists(t, name) {
		t.Errorf("database %s not dropped after its test", name)
	}
}

func TestTemplateIsSealed(t *testing.T) {
	t.Parallel()
	s := get(t)
	connStr, err := withDatabase(s.connStr, s.template)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), connStr)
	if err == nil {
		conn.Close(t.Context())
		t.Fatal("connected to the template database")
	}
	if !strings.Contains(err.Error(), "not currently accepting connections") {
		t.Errorf("unexpected error: %v", err)
	}
}

func TestLocalClusterIsFastNotDurable(t *testing.T) {
	if os.Getenv(EnvDatabaseURL) != "" {
		t.Skip("not our server")
	}
	t.Parallel()
	var fsync string
	if err := New(t).QueryRow(t.Context(), "SHOW fsync").Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	if fsync != "off" {
		t.Errorf("fsync = %s, want off in the test cluster", fsync)
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://u@/old?host=%2Ftmp%2Fs&port=5432", "postgres://u@/new?host=%2Ftmp%2Fs&port=5432"},
		{"postgresql://u:p@db:5432/old?sslmode=disable", "postgresql://u:p@db:5432/new?sslmode=disable"},
		{"postgres://u@db?dbname=old", "postgres://u@db/new"},
		{"host=/tmp/s user=u dbname=old", "host=/tmp/s user=u dbname=old dbname='new'"},
	} {
		got, err := withDatabase(tc.in, "new")
		if err != nil {
			t.Errorf("withDatabase(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.in, got, tc.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Errorf("pgx cannot parse %q: %v", got, err)
		} else if cfg.Database != "new" {
			t.Errorf("pgx reads database %q from %q", cfg.Database, got)
		}
	}
}

// TestEnvOverride runs this binary again pointed at our server through
// EnvDatabaseURL: it must use that server, not start a cluster, and drop
// its template at the end.
func TestEnvOverride(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child")
	}
	t.Parallel()
	s := get(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestEnvOverrideChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=override", EnvDatabaseURL+"="+s.connStr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestEnvOverrideChild") {
		t.Fatalf("child did not run its test:\n%s", out)
	}
	m := regexp.MustCompile(`template (dwtemplate_[0-9a-f]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("child did not report its template:\n%s", out)
	}
	if databaseExists(t, string(m[1])) {
		t.Errorf("child left its template %s behind", m[1])
	}
}

func TestEnvOverrideChild(t *testing.T) {
	if os.Getenv(childEnv) != "override" {
		t.Skip("only run by TestEnvOverride")
	}
	pool := New(t)
	s := get(t)
	if s.cluster != nil {
		t.Error("started a cluster although " + EnvDatabaseURL + " is set")
	}
	if name := currentDatabase(t, pool); !regexp.MustCompile(`^t_[0-9a-f]{8}_\d+$`).MatchString(name) {
		t.Errorf("database %q lacks the binary's token", name)
	}
	insertCustomer(t, pool, "K-1")
	t.Logf("template %s", s.template)
}

// TestStaleClusterIsRemoved kills a test binary that started a cluster and
// checks that removeStale stops the orphaned server and deletes its files.
func TestStaleClusterIsRemoved(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child")
	}
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestLeakChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=leak", EnvDatabaseURL+"=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var dir string
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if d, ok := strings.CutPrefix(strings.TrimSpace(lines.Text()), "pgtest_test.go:"); ok {
			if _, d, ok = strings.Cut(d, "cluster dir "); ok {
				dir = d
				break
			}
		}
	}
	if dir == "" {
		t.Fatal("child did not report its cluster dir")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	pid := postmasterPID(t, dir)
	if !running(pid) {
		t.Fatalf("server %d of the killed child is not running; nothing to test", pid)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	removeStale(ctx)
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale cluster %s still there: %v", dir, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if running(pid) {
		t.Errorf("server %d of the stale cluster still running", pid)
	}
}

func TestLeakChild(t *testing.T) {
	if os.Getenv(childEnv) != "leak" {
		t.Skip("only run by TestStaleClusterIsRemoved")
	}
	New(t)
	t.Logf("cluster dir %s", get(t).dir)
	time.Sleep(time.Minute) // until killed
}

func postmasterPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatalf("reading postmaster.pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// running reports whether pid is alive and not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}
