package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// owner is the system user PostgreSQL runs as. When this process is not
// root it is the current user and no switch happens.
type owner struct {
	name       string
	uid        int
	gid        int
	groups     []int
	switchUser bool // run commands with the owner's credentials (we are root)
}

// resolveOwner returns the user to run PostgreSQL as: runAs when this
// process is root (PostgreSQL refuses to run as root), else ourselves.
func resolveOwner(runAs string) (*owner, error) {
	if os.Geteuid() != 0 {
		return &owner{name: "current user", uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup(runAs)
	if err != nil {
		return nil, fmt.Errorf("looking up system user %q to run PostgreSQL as (it refuses to run as root): %w", runAs, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("parsing uid of %q: %w", runAs, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("parsing gid of %q: %w", runAs, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("system user %q is root; PostgreSQL refuses to run as root", runAs)
	}
	o := &owner{name: runAs, uid: uid, gid: gid, groups: []int{gid}, switchUser: true}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.Atoi(s); err == nil && !slices.Contains(o.groups, g) {
				o.groups = append(o.groups, g)
			}
		}
	}
	return o, nil
}

// chown hands path to the owner. A no-op when we are not root.
func (o *owner) chown(path string) error {
	if !o.switchUser {
		return nil
	}
	if err := os.Lchown(path, o.uid, o.gid); err != nil {
		return fmt.Errorf("handing %s to %s: %w", path, o.name, err)
	}
	return nil
}

// mayEnter reports whether the owner can traverse dir, judged by its mode
// bits (ACLs are not consulted).
func (o *owner) mayEnter(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case int(st.Uid) == o.uid:
		return perm&0o100 != 0
	case slices.Contains(o.groups, int(st.Gid)):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// checkReachable fails with advice when the owner cannot reach dir because
// one of its ancestors is closed to it (os.MkdirTemp and t.TempDir create
// 0700 directories).
func (o *owner) checkReachable(dir string) error {
	if !o.switchUser {
		return nil
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking access to %s: %w", p, err)
		}
		if !o.mayEnter(fi) {
			return fmt.Errorf("system user %s cannot enter %s (mode %v) on the way to %s: make it traversable (chmod o+x) or put the cluster elsewhere, e.g. under %s",
				o.name, p, fi.Mode().Perm(), dir, os.TempDir())
		}
		if parent := filepath.Dir(p); parent == p {
			return nil
		}
	}
}

// command prepares bin (a PostgreSQL program) to run as the owner in
// workDir, with PG* variables removed from the environment so that they
// cannot redirect it.
func (o *owner) command(ctx context.Context, workDir, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = workDir
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.switchUser {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.gid), Groups: []uint32{}}
	}
	// pg_ctl start leaves a server running that could inherit our pipes;
	// do not wait for it to close them.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs bin to completion and returns an error carrying its output.
func (o *owner) run(ctx context.Context, workDir, bin string, args ...string) error {
	var out bytes.Buffer
	cmd := o.command(ctx, workDir, bin, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		if msg := strings.TrimSpace(out.String()); msg != "" {
			return fmt.Errorf("%s: %w\n%s", filepath.Base(bin), err, indent(tail(msg, 2000)))
		}
		return fmt.Errorf("%s: %w", filepath.Base(bin), err)
	}
	return nil
}

// exitCode returns the exit status of a finished command's error, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// fileTail returns up to the last n bytes of path, starting at a line.
func fileTail(path string, n int64) string {
	return readFrom(path, max(fileSize(path)-n, 0), true)
}

// readFrom returns the contents of path from offset on, without the
// partial line it starts in if partial is set.
func readFrom(path string, offset int64, partial bool) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<62))
	if err != nil {
		return ""
	}
	s := string(b)
	if partial && offset > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return strings.TrimSpace(s)
}

// tail shortens s to its last n bytes.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func indent(s string) string {
	return "\t" + strings.ReplaceAll(s, "\n", "\n\t")
}

// serverPID returns the pid recorded in dataDir's postmaster.pid if that
// process is a live PostgreSQL server, else 0. A zombie (killed, not yet
// reaped) and a pid reused by another program count as no server.
func serverPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0
	}
	proc := "/proc/" + strconv.Itoa(pid)
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		// No procfs: trust kill(2).
		if syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM) {
			return pid
		}
		return 0
	}
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return 0
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return 0
	}
	comm, err := os.ReadFile(proc + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		return 0
	}
	return pid
}
