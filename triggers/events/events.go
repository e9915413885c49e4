// Package events is the envelope every event travels in: CloudEvents 1.0 in
// JSON structured mode, parsed and validated strictly because it comes from
// outside (billing systems, agents, channel callbacks). Errors name the event
// index and the field, so an integrator can fix the request.
package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Limits on envelope attributes.
const (
	MaxBatch      = 1000 // events per request
	maxIDLen      = 256
	maxTypeLen    = 128
	maxSubjectLen = 64
	maxSourceLen  = 512
)

// Event is one accepted CloudEvent. Raw keeps the event's JSON exactly as
// received (with any extension attributes); it is what the bus stores.
type Event struct {
	ID          string
	Source      string
	Type        string
	Subject     string    // the customer number
	Time        time.Time // when it happened; zero when the sender did not say
	Data        json.RawMessage
	Raw         json.RawMessage
	SpecVersion string
}

// FieldError says which event of a request and which field is wrong.
type FieldError struct {
	// Index of the event in the request (0 for a single event).
	Index int `json:"index"`
	// Field is the attribute path, e.g. "subject" or "data.ends_on".
	Field string `json:"field"`
	// Reason in plain words.
	Reason string `json:"reason"`
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("event %d: %s: %s", e.Index, e.Field, e.Reason)
}

// wire is the JSON shape; every attribute is raw so wrong JSON types become
// field errors rather than a generic decode error.
type wire struct {
	SpecVersion     json.RawMessage `json:"specversion"`
	ID              json.RawMessage `json:"id"`
	Source          json.RawMessage `json:"source"`
	Type            json.RawMessage `json:"type"`
	Subject         json.RawMessage `json:"subject"`
	Time            json.RawMessage `json:"time"`
	DataContentType json.RawMessage `json:"datacontenttype"`
	DataSchema      json.RawMessage `json:"dataschema"`
	Data            json.RawMessage `json:"data"`
	DataBase64      json.RawMessage `json:"data_base64"`
}

var (
	typeRe    = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	subjectRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// ParseRequest parses a request body holding one event object or a JSON
// array of up to MaxBatch events. On invalid input it returns the field
// errors (at most one per event) and no events.
func ParseRequest(body []byte) ([]Event, []*FieldError) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, []*FieldError{{Index: 0, Field: "body", Reason: "empty request body"}}
	}
	if trimmed[0] != '[' {
		ev, ferr := Parse(0, trimmed)
		if ferr != nil {
			return nil, []*FieldError{ferr}
		}
		return []Event{ev}, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(trimmed, &raws); err != nil {
		return nil, []*FieldError{{Index: 0, Field: "body", Reason: "not a JSON array of events: " + jsonReason(err)}}
	}
	if len(raws) == 0 {
		return nil, []*FieldError{{Index: 0, Field: "body", Reason: "empty batch"}}
	}
	if len(raws) > MaxBatch {
		return nil, []*FieldError{{Index: MaxBatch, Field: "body", Reason: fmt.Sprintf("batch holds %d events, at most %d allowed", len(raws), MaxBatch)}}
	}
	evs := make([]Event, 0, len(raws))
	var errs []*FieldError
	seen := make(map[string]int, len(raws))
	for i, raw := range raws {
		ev, ferr := Parse(i, raw)
		if ferr != nil {
			errs = append(errs, ferr)
			continue
		}
		if j, dup := seen[ev.ID]; dup {
			errs = append(errs, &FieldError{Index: i, Field: "id", Reason: fmt.Sprintf("same id as event %d in this batch", j)})
			continue
		}
		seen[ev.ID] = i
		evs = append(evs, ev)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return evs, nil
}

// Parse parses and validates one event, its data included for the known
// types; index is only used in the error.
func Parse(index int, raw []byte) (Event, *FieldError) {
	return parse(index, raw, true)
}

// ParseStored parses an event read back from the bus. The envelope is checked
// again (anything may have been published to NATS directly); the data of the
// known types was checked when the event was accepted and is not decoded a
// second time.
func ParseStored(raw []byte) (Event, *FieldError) {
	return parse(0, raw, false)
}

func parse(index int, raw []byte, checkData bool) (Event, *FieldError) {
	fail := func(field, reason string) (Event, *FieldError) {
		return Event{}, &FieldError{Index: index, Field: field, Reason: reason}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return fail("event", "must be a JSON object")
	}
	var w wire
	if err := json.Unmarshal(raw, &w); err != nil {
		return fail("event", "invalid JSON: "+jsonReason(err))
	}
	var ev Event
	var ok bool
	var reason string

	if ev.SpecVersion, reason, ok = str(w.SpecVersion); !ok {
		return fail("specversion", reason)
	}
	if ev.SpecVersion != "1.0" {
		return fail("specversion", fmt.Sprintf("must be \"1.0\", got %q", ev.SpecVersion))
	}
	if ev.ID, reason, ok = str(w.ID); !ok {
		return fail("id", reason)
	}
	if len(ev.ID) > maxIDLen || !printable(ev.ID) {
		return fail("id", fmt.Sprintf("must be printable ASCII without spaces, at most %d characters", maxIDLen))
	}
	if ev.Source, reason, ok = str(w.Source); !ok {
		return fail("source", reason)
	}
	if _, err := url.Parse(ev.Source); err != nil || len(ev.Source) > maxSourceLen {
		return fail("source", "must be a URI-reference (e.g. \"/billing/sap\" or \"urn:stadtwerke:crm\")")
	}
	if ev.Type, reason, ok = str(w.Type); !ok {
		return fail("type", reason)
	}
	if len(ev.Type) > maxTypeLen || !typeRe.MatchString(ev.Type) {
		return fail("type", "must be dot-separated words of letters, digits, '_' or '-' (e.g. \"contract.ending\")")
	}
	if ev.Subject, reason, ok = str(w.Subject); !ok {
		return fail("subject", reason+" (the customer number)")
	}
	if len(ev.Subject) > maxSubjectLen || !subjectRe.MatchString(ev.Subject) {
		return fail("subject", fmt.Sprintf("must be a customer number of letters, digits, '.', '_' or '-', at most %d characters", maxSubjectLen))
	}
	if present(w.Time) {
		ts, reason, ok := str(w.Time)
		if !ok {
			return fail("time", reason)
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return fail("time", "must be an RFC 3339 timestamp, e.g. \"2026-11-23T09:30:00+01:00\"")
		}
		ev.Time = t
	}
	if present(w.DataContentType) {
		ct, reason, ok := str(w.DataContentType)
		if !ok {
			return fail("datacontenttype", reason)
		}
		if !isJSONContentType(ct) {
			return fail("datacontenttype", "must be application/json (structured JSON mode)")
		}
	}
	if present(w.DataSchema) {
		if _, reason, ok := str(w.DataSchema); !ok {
			return fail("dataschema", reason)
		}
	}
	if present(w.DataBase64) {
		return fail("data_base64", "binary data is not supported; send JSON in \"data\"")
	}
	if present(w.Data) {
		ev.Data = w.Data
	}
	if checkData {
		if ferr := validateData(ev.Type, ev.Data); ferr != nil {
			ferr.Index = index
			return Event{}, ferr
		}
	}
	ev.Raw = raw
	return ev, nil
}

func present(r json.RawMessage) bool {
	return len(r) > 0 && !bytes.Equal(r, []byte("null"))
}

// str decodes a required, non-empty JSON string.
func str(r json.RawMessage) (string, string, bool) {
	if !present(r) {
		return "", "is required", false
	}
	if r[0] != '"' {
		return "", "must be a string", false
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", "must be a string", false
	}
	if strings.TrimSpace(s) == "" {
		return "", "must not be empty", false
	}
	return s, "", true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func isJSONContentType(ct string) bool {
	mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	return err.Error()
}
