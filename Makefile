# Dialogwerk — run `make help` for the targets.
SHELL := /bin/bash
GO    ?= go
TOOLS := $(CURDIR)/.tools
MAILDEV_VERSION := 3.0.0
MAILDEV := $(TOOLS)/node_modules/.bin/maildev
export DIALOGWERK_MAILDEV := $(MAILDEV)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: tools
tools: $(MAILDEV) ## install what the demo and the tests need (MailDev from npm, PostgreSQL check)
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ echo "PostgreSQL server binaries missing: apt-get install postgresql (.ci/run does this)"; exit 1; }

$(MAILDEV):
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-audit --no-fund --loglevel=error maildev@$(MAILDEV_VERSION)

.PHONY: run
run: tools build ## run the demo town Musterstadt on embedded defaults and keep it up for a person to look
	./bin/dialogwerk demo --keep --listen 127.0.0.1:8080 --sim-listen 127.0.0.1:8090 \
		--maildev-web-port 1080 --maildev-smtp-port 1025

.PHONY: demo
demo: tools build ## run the demo non-interactively; prints the summary line
	./bin/dialogwerk demo

.PHONY: test
test: tools ## run the whole test suite with -race against real PostgreSQL, NATS, SMTP and MailDev
	DIALOGWERK_TEST_STRICT=1 $(GO) test -race -count=1 -timeout 15m ./...

.PHONY: bench
bench: tools ## measure ingest and end-to-end throughput, latency and memory (prints a BENCH line)
	$(GO) run ./cmd/dwbench

.PHONY: fuzz
fuzz: ## fuzz the parsers of outside input for a short while each
	$(GO) test -run '^$$' -fuzz FuzzParseRequest -fuzztime 30s -fuzzminimizetime 5s ./triggers/events
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime 30s -fuzzminimizetime 5s ./triggers/webhook
	$(GO) test -run '^$$' -fuzz FuzzParseCampaign -fuzztime 30s -fuzzminimizetime 5s ./triggers/campaigns
	$(GO) test -run '^$$' -fuzz FuzzValidate -fuzztime 30s -fuzzminimizetime 5s ./channels/twiliosim
	$(GO) test -run '^$$' -fuzz FuzzSegments -fuzztime 30s -fuzzminimizetime 5s ./channels/twilio

.PHONY: build
build: ## build bin/dialogwerk
	$(GO) build -o bin/dialogwerk ./cmd/dialogwerk

.PHONY: lint
lint: ## gofmt and go vet
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

.PHONY: verify
verify: lint test ## lint and test, as CI does
