package twiliosim

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Failure is an error answer the sim gives instead of accepting a message.
// Zero fields are filled in: Status defaults to 500, Code to Twilio's code
// for the status (429 → 20429, 5xx → 20500, 401 → 20003, 404 → 20404,
// other 4xx → 21211), Message to a Twilio-like text.
type Failure struct {
	// Status is the HTTP status code.
	Status int
	// Code is the Twilio error code in the JSON answer.
	Code int
	// Message is the error message in the JSON answer.
	Message string
}

// RateLimited is Twilio's 429 "Too Many Requests" (code 20429), transient.
func RateLimited() Failure { return Failure{Status: 429} }

// ServerError is a 500 (code 20500), transient.
func ServerError() Failure { return Failure{Status: 500} }

// Unavailable is a 503 (code 20500), transient.
func Unavailable() Failure { return Failure{Status: 503} }

// InvalidNumber is a 400 "not a valid phone number" (code 21211), permanent.
func InvalidNumber() Failure { return Failure{Status: 400, Code: 21211} }

func (f Failure) apiError() *apiError {
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	if f.Code == 0 {
		switch {
		case f.Status == 429:
			f.Code = 20429
		case f.Status >= 500:
			f.Code = 20500
		case f.Status == 401:
			f.Code = 20003
		case f.Status == 404:
			f.Code = 20404
		default:
			f.Code = 21211
		}
	}
	if f.Message == "" {
		switch f.Code {
		case 20429:
			f.Message = "Too Many Requests"
		case 20500:
			f.Message = "Internal Server Error"
		case 21211:
			f.Message = "The 'To' number is not a valid phone number."
		default:
			f.Message = http.StatusText(f.Status)
		}
	}
	return &apiError{f.Status, f.Code, f.Message}
}

// failures holds the injected failures. armed lets the hot path skip the
// lock when nothing is injected.
type failures struct {
	armed  atomic.Bool
	mu     sync.Mutex
	next   map[string][]Failure // per recipient, in order
	anyN   int                  // fail the next anyN requests with anyF
	anyF   Failure
	every  int // fail every every-th request with everyF
	everyF Failure
	count  int // requests seen while every > 0
}

// take returns the failure for the current request to recipient, if any.
func (f *failures) take(recipient string) (Failure, bool) {
	if !f.armed.Load() {
		return Failure{}, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.rearm()
	if q := f.next[recipient]; len(q) > 0 {
		if len(q) == 1 {
			delete(f.next, recipient)
		} else {
			f.next[recipient] = q[1:]
		}
		return q[0], true
	}
	if f.anyN > 0 {
		f.anyN--
		return f.anyF, true
	}
	if f.every > 0 {
		f.count++
		if f.count%f.every == 0 {
			return f.everyF, true
		}
	}
	return Failure{}, false
}

// rearm recomputes armed; f.mu must be held.
func (f *failures) rearm() {
	f.armed.Store(len(f.next) > 0 || f.anyN > 0 || f.every > 0)
}

// FailNext makes the next request to recipient (an E.164 number, with or
// without "whatsapp:") fail with f. Calls queue up: two FailNext calls fail
// the next two requests, in order. Per-recipient failures come before
// FailNextN and FailEvery.
func (s *Server) FailNext(recipient string, f Failure) {
	r, _ := strings.CutPrefix(recipient, "whatsapp:")
	s.fail.mu.Lock()
	defer s.fail.mu.Unlock()
	s.fail.next[r] = append(s.fail.next[r], f)
	s.fail.rearm()
}

// FailNextN makes the next n create requests, to any recipient, fail with f
// (replacing an earlier FailNextN).
func (s *Server) FailNextN(n int, f Failure) {
	s.fail.mu.Lock()
	defer s.fail.mu.Unlock()
	s.fail.anyN, s.fail.anyF = max(n, 0), f
	s.fail.rearm()
}

// FailEvery makes every n-th create request fail with f, until cleared;
// n <= 0 turns it off. FailEvery(20, RateLimited()) rate-limits 5 % of the
// traffic.
func (s *Server) FailEvery(n int, f Failure) {
	s.fail.mu.Lock()
	defer s.fail.mu.Unlock()
	s.fail.every, s.fail.everyF, s.fail.count = max(n, 0), f, 0
	s.fail.rearm()
}

// ClearFailures removes every injected failure.
func (s *Server) ClearFailures() {
	s.fail.mu.Lock()
	defer s.fail.mu.Unlock()
	clear(s.fail.next)
	s.fail.anyN, s.fail.every, s.fail.count = 0, 0, 0
	s.fail.rearm()
}

// handleFailures is POST /sim/failures. Form fields: status (default 500),
// code, message; then one of
//
//	to=+4915112345678&count=2   the next 2 requests to that recipient fail
//	count=10                    the next 10 requests fail
//	every=20                    every 20th request fails (every=0 stops it)
func (s *Server) handleFailures(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "cannot parse form", http.StatusBadRequest)
		return
	}
	num := func(name string, def int) (int, error) {
		v := r.Form.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s must be a non-negative number", name)
		}
		return n, nil
	}
	var f Failure
	status, err1 := num("status", 500)
	code, err2 := num("code", 0)
	count, err3 := num("count", 1)
	every, err4 := num("every", 0)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if status < 400 || status > 599 {
		http.Error(w, "status must be 400–599", http.StatusBadRequest)
		return
	}
	f = Failure{Status: status, Code: code, Message: r.Form.Get("message")}
	switch to := r.Form.Get("to"); {
	case r.Form.Has("every"):
		s.FailEvery(every, f)
	case to != "":
		for range count {
			s.FailNext(to, f)
		}
	default:
		s.FailNextN(count, f)
	}
	w.WriteHeader(http.StatusNoContent)
}
