// Package maildev runs MailDev (the npm package maildev: an SMTP server
// with a web inbox and a REST API) as a child process, for `dialogwerk demo`
// and integration tests, and reads what it received over its REST API.
//
// The Makefile installs MailDev into .tools/ (`make tools`); Find locates it.
package maildev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvBin names the environment variable that points Find at the maildev
// executable.
const EnvBin = "DIALOGWERK_MAILDEV"

// toolsBin is where `make tools` installs MailDev, relative to the
// repository root.
const toolsBin = ".tools/node_modules/.bin/maildev"

// ErrNotFound is returned by Find when no maildev executable is found.
var ErrNotFound = errors.New("maildev not found: run `make tools` (installs it into .tools/) or set " + EnvBin)

// Find returns the path of the maildev executable: $DIALOGWERK_MAILDEV if
// set, else .tools/node_modules/.bin/maildev in the working directory or the
// nearest parent that has one, else maildev in PATH.
func Find() (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBin, p, err)
		}
		return p, nil
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			p := filepath.Join(dir, toolsBin)
			if executable(p) == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if p, err := exec.LookPath("maildev"); err == nil {
		return p, nil
	}
	return "", ErrNotFound
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// Config configures Start; the zero value finds MailDev and picks free ports.
type Config struct {
	// Bin is the maildev executable. Default: Find().
	Bin string
	// SMTPPort is the SMTP port on 127.0.0.1. Default 0: a free port.
	SMTPPort int
	// WebPort is the web inbox and REST API port on 127.0.0.1. Default 0: a
	// free port.
	WebPort int
	// Dir is where MailDev keeps received mail (--mail-directory). Default: a
	// new temporary directory, removed by Stop.
	Dir string
	// StartTimeout bounds waiting for both ports to answer. Default 30s.
	StartTimeout time.Duration
	// Output, when set, receives MailDev's stdout and stderr.
	Output io.Writer
}

// Server is a running MailDev process.
type Server struct {
	cmd      *exec.Cmd
	smtpPort int
	webPort  int
	dir      string
	tempDir  bool
	out      *tail
	http     *http.Client

	exited  chan struct{} // closed when the process has exited
	waitErr error         // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start runs MailDev listening on 127.0.0.1 and returns once its SMTP port
// accepts connections and its API answers. ctx bounds the start only; the
// process runs until Stop (or until this process dies, on Linux).
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Bin == "" {
		bin, err := Find()
		if err != nil {
			return nil, err
		}
		cfg.Bin = bin
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.SMTPPort < 0 || cfg.SMTPPort > 65535 || cfg.WebPort < 0 || cfg.WebPort > 65535 {
		return nil, fmt.Errorf("maildev: ports %d/%d out of range", cfg.SMTPPort, cfg.WebPort)
	}
	// Free ports are found by binding and releasing them; another process
	// may take one in between, so a MailDev that exits at once on picked
	// ports is started again.
	attempts := 1
	if cfg.SMTPPort == 0 || cfg.WebPort == 0 {
		attempts = 3
	}
	for i := 1; ; i++ {
		s, exited, err := start(ctx, cfg)
		if err == nil || !exited || i == attempts || ctx.Err() != nil {
			return s, err
		}
	}
}

// start runs MailDev once; exited reports that it ended before it was ready.
func start(ctx context.Context, cfg Config) (_ *Server, exited bool, err error) {
	s := &Server{smtpPort: cfg.SMTPPort, webPort: cfg.WebPort, dir: cfg.Dir,
		out: &tail{max: 8 << 10}, http: &http.Client{}, exited: make(chan struct{})}
	if s.smtpPort == 0 {
		if s.smtpPort, err = freePort(ctx); err != nil {
			return nil, false, err
		}
	}
	if s.webPort == 0 {
		if s.webPort, err = freePort(ctx); err != nil {
			return nil, false, err
		}
	}
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "dialogwerk-maildev-"); err != nil {
			return nil, false, fmt.Errorf("maildev: creating mail directory: %w", err)
		}
		s.tempDir = true
	}
	var out io.Writer = s.out
	if cfg.Output != nil {
		out = io.MultiWriter(s.out, cfg.Output)
	}
	s.cmd = exec.Command(cfg.Bin,
		"-s", strconv.Itoa(s.smtpPort),
		"-w", strconv.Itoa(s.webPort),
		"--ip", "127.0.0.1",
		"--web-ip", "127.0.0.1",
		"--mail-directory", s.dir,
	)
	// Run in the mail directory with MAILDEV_* unset, so neither a config
	// file in our working directory nor the environment (web auth, say)
	// changes what the flags say.
	s.cmd.Dir = s.dir
	s.cmd.Env = cleanEnv(os.Environ())
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.SysProcAttr = sysProcAttr()
	if err := s.cmd.Start(); err != nil {
		s.removeDir()
		return nil, false, fmt.Errorf("maildev: starting %s: %w", cfg.Bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(ctx, cfg.StartTimeout); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.Stop(stopCtx)
		return nil, errors.Is(err, errExited), fmt.Errorf("maildev: %w; its output:\n%s", err, s.out.String())
	}
	return s, false, nil
}

var errExited = errors.New("exited before it was ready")

// waitReady polls until the SMTP port accepts and the API answers.
func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	smtpUp := false
	for {
		if !smtpUp {
			var d net.Dialer
			if c, err := d.DialContext(ctx, "tcp", s.smtpAddr()); err == nil {
				_ = c.Close()
				smtpUp = true
			}
		}
		if smtpUp && s.healthy(ctx) {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("%w (%v)", errExited, s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready (SMTP %s up: %t, API %s): %w", s.smtpAddr(), smtpUp, s.WebURL(), ctx.Err())
		case <-tick.C:
		}
	}
}

func (s *Server) healthy(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.WebURL()+"api/healthz", nil)
	if err != nil {
		return false
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// SMTPHost is the host to send mail to: "127.0.0.1".
func (s *Server) SMTPHost() string { return "127.0.0.1" }

// SMTPPort is MailDev's SMTP port.
func (s *Server) SMTPPort() int { return s.smtpPort }

// WebURL is the web inbox's URL, ending in "/": "http://127.0.0.1:1080/".
func (s *Server) WebURL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.webPort)) + "/"
}

func (s *Server) smtpAddr() string {
	return net.JoinHostPort(s.SMTPHost(), strconv.Itoa(s.smtpPort))
}

// Stop ends MailDev: SIGTERM, then SIGKILL when ctx ends first. It removes
// the mail directory Start created. Calling it again returns the first
// result.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		defer s.removeDir()
		s.signal(syscall.SIGTERM)
		select {
		case <-s.exited:
			return
		case <-ctx.Done():
		}
		s.signal(syscall.SIGKILL)
		<-s.exited
		s.stopErr = fmt.Errorf("maildev did not stop on SIGTERM, killed: %w", ctx.Err())
	})
	return s.stopErr
}

// signal sends sig to MailDev's process group (it runs in its own, see
// sysProcAttr), or to the process where there are no groups.
func (s *Server) signal(sig syscall.Signal) {
	select {
	case <-s.exited:
		return
	default:
	}
	if err := signalGroup(s.cmd.Process.Pid, sig); err != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

func (s *Server) removeDir() {
	if s.tempDir {
		_ = os.RemoveAll(s.dir)
	}
}

// Output returns the last few KiB MailDev wrote to stdout and stderr.
func (s *Server) Output() string { return s.out.String() }

func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("maildev: finding a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

func cleanEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MAILDEV_") {
			out = append(out, kv)
		}
	}
	return out
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
