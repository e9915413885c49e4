// Command dialogwerk runs the Dialogwerk dialogue engine and its tools.
//
//	dialogwerk serve              run webhook, engine and channels
//	dialogwerk demo [--keep]      run the demo town Musterstadt end to end
//	dialogwerk migrate            apply database migrations and exit
//	dialogwerk events send FILE   sign and post events to a running server
//	dialogwerk campaigns validate [DIR]  check campaign files
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usage = `usage: dialogwerk <command> [flags]

commands:
  serve                    run the webhook, the engine and the channels
  demo [--keep]            start everything on embedded defaults, load the demo town
                           Musterstadt, send its events and report what went out
  migrate                  apply the database migrations and exit
  events send FILE...      sign and POST CloudEvents (JSON object or array) to a server
  campaigns validate [DIR] validate campaign files (default: the built-in seed)

Run "dialogwerk <command> -h" for the flags of a command. Every flag can also be
set as an environment variable DIALOGWERK_<FLAG> (e.g. DIALOGWERK_DATABASE_URL).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "dialogwerk:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:])
	case "demo":
		return cmdDemo(ctx, args[1:], out)
	case "migrate":
		return cmdMigrate(ctx, args[1:], out)
	case "events":
		if len(args) > 1 && args[1] == "send" {
			return cmdEventsSend(ctx, args[2:], out)
		}
	case "campaigns":
		if len(args) > 1 && args[1] == "validate" {
			return cmdCampaignsValidate(args[2:], out)
		}
	case "-h", "--help", "help":
		fmt.Fprint(out, usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func cmdServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var cfg config
	cfg.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.applyGC(); err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	a, err := startApp(ctx, &cfg, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a.stop(sctx)
	return nil
}

func cmdMigrate(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var cfg config
	cfg.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	cl, pool, err := openDB(ctx, &cfg, log)
	if err != nil {
		return err
	}
	pool.Close()
	stopPG(cl)
	fmt.Fprintln(out, "migrate: schema is up to date")
	return nil
}
