package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/dialogwerk/dialogwerk/triggers/webhook"
)

// cmdEventsSend signs files of CloudEvents and posts them to a server.
func cmdEventsSend(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("events send", flag.ContinueOnError)
	url := fs.String("url", envStr("url", "http://127.0.0.1:8080"), "Dialogwerk base URL")
	secret := fs.String("secret", os.Getenv("DIALOGWERK_SEND_SECRET"), "the source's webhook secret (or DIALOGWERK_SEND_SECRET)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		return errors.New("events send: --secret (or DIALOGWERK_SEND_SECRET) is required")
	}
	if fs.NArg() == 0 {
		return errors.New("events send: name at least one file (use - for stdin)")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for _, name := range fs.Args() {
		var body []byte
		var err error
		if name == "-" {
			body, err = io.ReadAll(os.Stdin)
		} else {
			body, err = os.ReadFile(name)
		}
		if err != nil {
			return fmt.Errorf("events send: %w", err)
		}
		status, answer, err := postEvents(ctx, client, *url, []byte(*secret), body)
		if err != nil {
			return fmt.Errorf("events send %s: %w", name, err)
		}
		fmt.Fprintf(out, "%s: %d %s", name, status, answer)
		if status != http.StatusAccepted {
			return fmt.Errorf("events send %s: server answered %d", name, status)
		}
	}
	return nil
}

// postEvents signs body and posts it to base/v1/events.
func postEvents(ctx context.Context, client *http.Client, base string, secret, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.SignatureHeader, webhook.Sign(secret, time.Now(), body))
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	return resp.StatusCode, answer, err
}

// cmdCampaignsValidate loads and compiles campaign files and reports every
// error.
func cmdCampaignsValidate(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("campaigns validate", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := ""
	if fs.NArg() > 0 {
		dir = fs.Arg(0)
	}
	set, err := loadCampaigns(dir)
	if err != nil {
		return err
	}
	for _, c := range set.All() {
		fmt.Fprintf(out, "ok  %s v%d (%s, trigger %s, channels %v) — %s\n", c.ID, c.Version, c.Purpose, c.Trigger.Event, c.Channels, c.Origin)
	}
	return nil
}
