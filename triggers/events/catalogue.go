package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// The event types of the catalogue (DESIGN §2) that the core understands.
// Unknown types are accepted and stored; a campaign may use them later.
const (
	TypeContractEnding      = "contract.ending"
	TypeBackpaymentExpected = "billing.backpayment_expected"
	TypeCancellationEnquiry = "service.cancellation_enquiry"
)

// Products a utility contract can be for.
var products = map[string]bool{"strom": true, "gas": true, "wasser": true, "waerme": true}

// Date is a calendar date in JSON as "YYYY-MM-DD".
type Date struct{ time.Time }

// UnmarshalJSON parses "YYYY-MM-DD".
func (d *Date) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("must be a date string \"YYYY-MM-DD\"")
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return fmt.Errorf("must be a date \"YYYY-MM-DD\", got %q", s)
	}
	d.Time = t
	return nil
}

// MarshalJSON writes "YYYY-MM-DD".
func (d Date) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.Format(time.DateOnly))
}

// ContractEnding is the data of contract.ending.
type ContractEnding struct {
	Contract    string `json:"contract"`
	Product     string `json:"product"`
	EndsOn      Date   `json:"ends_on"`
	NoticeUntil *Date  `json:"notice_until,omitempty"`
}

// BackpaymentExpected is the data of billing.backpayment_expected.
type BackpaymentExpected struct {
	Contract  string  `json:"contract,omitempty"`
	AmountEUR float64 `json:"amount_eur"`
	DueOn     Date    `json:"due_on"`
	Period    string  `json:"period,omitempty"`
}

// CancellationEnquiry is the data of service.cancellation_enquiry.
type CancellationEnquiry struct {
	Contract   string `json:"contract"`
	Agent      string `json:"agent"`
	Touchpoint string `json:"touchpoint"`
	Note       string `json:"note,omitempty"`
}

// validateData checks the data of the known types; unknown types need only be
// JSON (already guaranteed by the envelope decoder).
func validateData(typ string, data json.RawMessage) *FieldError {
	switch typ {
	case TypeContractEnding:
		var d ContractEnding
		if ferr := decodeData(data, &d); ferr != nil {
			return ferr
		}
		switch {
		case d.Contract == "":
			return dataErr("contract", "is required (the contract number)")
		case !products[d.Product]:
			return dataErr("product", "must be one of strom, gas, wasser, waerme")
		case d.EndsOn.IsZero():
			return dataErr("ends_on", "is required (\"YYYY-MM-DD\")")
		case d.NoticeUntil != nil && d.NoticeUntil.After(d.EndsOn.Time):
			return dataErr("notice_until", "must not be after ends_on")
		}
	case TypeBackpaymentExpected:
		var d BackpaymentExpected
		if ferr := decodeData(data, &d); ferr != nil {
			return ferr
		}
		switch {
		case d.AmountEUR <= 0:
			return dataErr("amount_eur", "must be a positive amount in euro")
		case d.AmountEUR > 1e6:
			return dataErr("amount_eur", "is implausibly high (over 1,000,000)")
		case d.DueOn.IsZero():
			return dataErr("due_on", "is required (\"YYYY-MM-DD\")")
		}
	case TypeCancellationEnquiry:
		var d CancellationEnquiry
		if ferr := decodeData(data, &d); ferr != nil {
			return ferr
		}
		switch {
		case d.Contract == "":
			return dataErr("contract", "is required (the contract number)")
		case d.Agent == "":
			return dataErr("agent", "is required (the agent's id)")
		case d.Touchpoint == "":
			return dataErr("touchpoint", "is required (e.g. \"phone\", \"counter\", \"web\")")
		}
	}
	return nil
}

// DecodeData decodes an event's data into v (one of the typed data structs).
func DecodeData(ev Event, v any) error {
	if ferr := decodeData(ev.Data, v); ferr != nil {
		return ferr
	}
	return nil
}

// decodeData decodes a data object into the struct v field by field, so an
// error names the exact field ("data.ends_on").
func decodeData(data json.RawMessage, v any) *FieldError {
	if !present(data) {
		return dataErr("", "is required for this event type")
	}
	if bytes.TrimSpace(data)[0] != '{' {
		return dataErr("", "must be a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return dataErr("", "must be a JSON object")
	}
	rv := reflect.ValueOf(v).Elem()
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		raw, ok := fields[name]
		if !ok || !present(raw) {
			continue
		}
		if err := json.Unmarshal(raw, rv.Field(i).Addr().Interface()); err != nil {
			return dataErr(name, fieldReason(err))
		}
	}
	return nil
}

func fieldReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		switch te.Type.Kind() {
		case reflect.Float64, reflect.Int, reflect.Int64:
			return "must be a number"
		case reflect.String:
			return "must be a string"
		}
		return "has the wrong type"
	}
	return err.Error()
}

func dataErr(field, reason string) *FieldError {
	f := "data"
	if field != "" {
		f += "." + field
	}
	return &FieldError{Field: f, Reason: reason}
}
