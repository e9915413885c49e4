package main

import "testing"

func TestParseBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"200MiB", 200 << 20, true},
		{"1GiB", 1 << 30, true},
		{"512KiB", 512 << 10, true},
		{"4096", 4096, true},
		{"0", 0, true},
		{"lots", 0, false},
		{"-1MiB", 0, false},
		{"2GB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestConfigChecks(t *testing.T) {
	t.Parallel()
	c := config{WebhookSecrets: "billing=short"}
	if _, err := c.secrets(); err == nil {
		t.Error("a secret shorter than 16 characters was accepted")
	}
	c.WebhookSecrets = "billing=0123456789abcdef, crm=fedcba9876543210"
	s, err := c.secrets()
	if err != nil || len(s) != 2 || s["crm"] != "fedcba9876543210" {
		t.Errorf("secrets = %v, %v", s, err)
	}
	c.WebhookSecrets = ""
	if _, err := c.secrets(); err == nil {
		t.Error("no secrets accepted")
	}
	for in, ok := range map[string]bool{"always": true, "1s": true, "250ms": true, "0s": false, "never": false} {
		c.NATSSync = in
		if _, _, err := c.syncSetting(); (err == nil) != ok {
			t.Errorf("--nats-sync %q: err = %v", in, err)
		}
	}
}
