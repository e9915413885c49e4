// Package replay is the operators' handle on dead letters: list the events
// that failed processing, with the reason, and put them back on the event
// stream once the cause is fixed (a customer imported, a template repaired).
package replay

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/dialogwerk/dialogwerk/triggers/eventbus"
)

// Bus is what the handler needs of the event bus.
type Bus interface {
	DeadLetters(ctx context.Context, limit int) ([]eventbus.DeadLetter, error)
	Replay(ctx context.Context, limit int) (int, error)
}

// Handler serves GET /v1/dead-letters and POST /v1/dead-letters/replay.
// Authentication is the caller's (it is mounted behind the API tokens).
type Handler struct {
	bus Bus
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the handler.
func New(bus Bus, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{bus: bus, log: log.With(slog.String("component", "replay")), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /v1/dead-letters", h.list)
	h.mux.HandleFunc("POST /v1/dead-letters/replay", h.replay)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func limit(r *http.Request) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 100, true
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= 10000
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	n, ok := limit(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit: must be 1…10000", "field": "limit"})
		return
	}
	dls, err := h.bus.DeadLetters(r.Context(), n)
	if err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelError, "listing dead letters", slog.Any("error", err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "could not read dead letters"})
		return
	}
	if dls == nil {
		dls = []eventbus.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead_letters": dls})
}

func (h *Handler) replay(w http.ResponseWriter, r *http.Request) {
	n, ok := limit(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit: must be 1…10000", "field": "limit"})
		return
	}
	done, err := h.bus.Replay(r.Context(), n)
	if err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelError, "replaying dead letters", slog.Int("replayed", done), slog.Any("error", err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "replay stopped early", "replayed": done})
		return
	}
	h.log.LogAttrs(r.Context(), slog.LevelInfo, "dead letters replayed", slog.Int("replayed", done))
	writeJSON(w, http.StatusOK, map[string]int{"replayed": done})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
