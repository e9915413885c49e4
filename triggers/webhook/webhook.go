// Package webhook is the HTTP way in for billing and CRM systems:
// POST /v1/events with one CloudEvent or a batch, HMAC-signed per source.
// It answers 202 only after the event bus has stored every event.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/dialogwerk/dialogwerk/triggers/events"
)

// Publisher stores events durably; it is the one way in shared with the
// in-process sources (schedules, agents).
type Publisher interface {
	Publish(ctx context.Context, sender string, evs []events.Event) (Stored, error)
}

// Stored is what the bus did with a publish.
type Stored struct {
	// Accepted counts events stored for the first time.
	Accepted int `json:"accepted"`
	// Duplicates counts events whose id the bus had already stored.
	Duplicates int `json:"duplicates"`
}

// Config configures the handler.
type Config struct {
	// Secrets are the per-source HMAC keys; at least one is required.
	Secrets []Secret
	// Tolerance is the allowed signature age; default 5 minutes.
	Tolerance time.Duration
	// MaxBody is the largest accepted request body; default 8 MiB.
	MaxBody int64
	// PublishTimeout bounds the wait for the bus; default 10 s.
	PublishTimeout time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now (tests set it).
	Now func() time.Time
}

// Handler serves POST /v1/events.
type Handler struct {
	cfg Config
	pub Publisher
}

// New validates cfg and returns the handler.
func New(cfg Config, pub Publisher) (*Handler, error) {
	if len(cfg.Secrets) == 0 {
		return nil, errors.New("webhook: at least one source secret is required")
	}
	for i, s := range cfg.Secrets {
		if s.Source == "" || len(s.Key) < 16 {
			return nil, fmt.Errorf("webhook: secret %d: source name required and key at least 16 bytes", i)
		}
	}
	if pub == nil {
		return nil, errors.New("webhook: publisher is required")
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = DefaultTolerance
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 8 << 20
	}
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Handler{cfg: cfg, pub: pub}, nil
}

type errorBody struct {
	Error  string               `json:"error"`
	Errors []*events.FieldError `json:"errors,omitempty"`
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "use POST"})
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasPrefix(mt, "application/cloudevents")) {
			writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: "Content-Type must be application/json or application/cloudevents(-batch)+json"})
			return
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.cfg.MaxBody+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "reading body: " + err.Error()})
		return
	}
	if int64(len(body)) > h.cfg.MaxBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("body larger than %d bytes", h.cfg.MaxBody)})
		return
	}
	sender, err := Verify(h.cfg.Secrets, r.Header.Get(SignatureHeader), body, h.cfg.Now(), h.cfg.Tolerance)
	if err != nil {
		h.cfg.Logger.LogAttrs(r.Context(), slog.LevelWarn, "webhook rejected", slog.String("component", "webhook"), slog.String("reason", err.Error()))
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: err.Error()})
		return
	}
	evs, ferrs := events.ParseRequest(body)
	if ferrs != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid event(s); nothing was accepted", Errors: ferrs})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.PublishTimeout)
	defer cancel()
	res, err := h.pub.Publish(ctx, sender, evs)
	if err != nil {
		h.cfg.Logger.LogAttrs(ctx, slog.LevelError, "storing events failed", slog.String("component", "webhook"), slog.String("sender", sender), slog.Int("events", len(evs)), slog.Any("error", err))
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "events could not be stored; retry with the same ids"})
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
