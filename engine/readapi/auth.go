package readapi

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// RequireBearer lets a request through to next only with
// "Authorization: Bearer <token>" naming one of tokens; with no tokens every
// request is refused.
func RequireBearer(tokens []string, next http.Handler) http.Handler {
	var keys [][]byte
	for _, t := range tokens {
		if t != "" {
			keys = append(keys, []byte(t))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		match := 0
		for _, k := range keys {
			match |= subtle.ConstantTimeCompare([]byte(got), k)
		}
		if !ok || match != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dialogwerk"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "missing or wrong bearer token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
