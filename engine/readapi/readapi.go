// Package readapi serves what the engine recorded, for integrations, tests
// and (later) the console: GET /v1/customers/{id}/messages lists a customer's
// decisions and messages with channel, status, reason and timestamps.
package readapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"

	"github.com/dialogwerk/dialogwerk/engine/journal"
)

// Timeline reads a customer's decisions.
type Timeline interface {
	Timeline(ctx context.Context, customerID string, limit int) ([]journal.Entry, error)
}

// Customers tells whether a customer exists.
type Customers interface {
	Exists(ctx context.Context, id string) (bool, error)
}

// Handler serves the read API.
type Handler struct {
	tl   Timeline
	cust Customers
	log  *slog.Logger
	h    http.Handler
}

var customerRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// New returns the handler. Requests need "Authorization: Bearer <token>" with
// one of tokens; with no tokens configured every request is refused.
func New(tl Timeline, cust Customers, tokens []string, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	h := &Handler{tl: tl, cust: cust, log: log.With(slog.String("component", "readapi"))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/customers/{id}/messages", h.messages)
	h.h = RequireBearer(tokens, mux)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

type messagesResponse struct {
	Customer string          `json:"customer"`
	Entries  []journal.Entry `json:"entries"`
}

func (h *Handler) messages(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !customerRe.MatchString(id) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "id: not a customer number", "field": "id"})
		return
	}
	limit := 200
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit: must be 1…1000", "field": "limit"})
			return
		}
		limit = n
	}
	entries, err := h.tl.Timeline(r.Context(), id, limit)
	if err != nil {
		h.log.LogAttrs(r.Context(), slog.LevelError, "reading timeline", slog.Any("error", err))
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "could not read the timeline"})
		return
	}
	if len(entries) == 0 {
		ok, err := h.cust.Exists(r.Context(), id)
		if err != nil {
			h.log.LogAttrs(r.Context(), slog.LevelError, "checking customer", slog.Any("error", err))
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "could not read the customer"})
			return
		}
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "customer not found"})
			return
		}
	}
	if entries == nil {
		entries = []journal.Entry{}
	}
	writeJSON(w, http.StatusOK, messagesResponse{Customer: id, Entries: entries})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
