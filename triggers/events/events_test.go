package events_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/dialogwerk/dialogwerk/triggers/events"
)

const good = `{"specversion":"1.0","id":"ev-1","source":"/billing/sap","type":"contract.ending",
 "subject":"K100001","time":"2026-11-23T09:30:00+01:00",
 "data":{"contract":"V-1","product":"strom","ends_on":"2027-01-31","notice_until":"2026-12-31"}}`

func TestParseValid(t *testing.T) {
	t.Parallel()
	evs, errs := events.ParseRequest([]byte(good))
	if errs != nil {
		t.Fatalf("unexpected errors: %v", errs[0])
	}
	if len(evs) != 1 {
		t.Fatalf("got %d events", len(evs))
	}
	ev := evs[0]
	if ev.ID != "ev-1" || ev.Type != events.TypeContractEnding || ev.Subject != "K100001" || ev.Source != "/billing/sap" {
		t.Errorf("attributes not parsed: %+v", ev)
	}
	if ev.Time.IsZero() || ev.Time.UTC().Hour() != 8 {
		t.Errorf("time = %v", ev.Time)
	}
	var d events.ContractEnding
	if err := events.DecodeData(ev, &d); err != nil {
		t.Fatal(err)
	}
	if d.EndsOn.Format("2006-01-02") != "2027-01-31" || d.NoticeUntil == nil {
		t.Errorf("data = %+v", d)
	}
	if !json.Valid(ev.Raw) {
		t.Error("raw is not valid JSON")
	}
}

func TestParseBatchUnknownTypeAccepted(t *testing.T) {
	t.Parallel()
	body := `[` + good + `,{"specversion":"1.0","id":"ev-2","source":"urn:crm","type":"citycard.used","subject":"K2","data":{"facility":"pool"},"x-extension":"kept"}]`
	evs, errs := events.ParseRequest([]byte(body))
	if errs != nil {
		t.Fatalf("errors: %v", errs[0])
	}
	if len(evs) != 2 || evs[1].Type != "citycard.used" {
		t.Fatalf("events = %+v", evs)
	}
	if !strings.Contains(string(evs[1].Raw), "x-extension") {
		t.Error("extension attribute not kept in raw event")
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	t.Parallel()
	mod := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(good), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	data := func(f func(d map[string]any)) func(m map[string]any) {
		return func(m map[string]any) { f(m["data"].(map[string]any)) }
	}
	tests := []struct {
		name, body, field string
	}{
		{"empty body", "  ", "body"},
		{"not JSON", "{nope", "event"},
		{"array of garbage", "[1,2", "body"},
		{"empty batch", "[]", "body"},
		{"missing id", mod(func(m map[string]any) { delete(m, "id") }), "id"},
		{"numeric id", mod(func(m map[string]any) { m["id"] = 7 }), "id"},
		{"id with space", mod(func(m map[string]any) { m["id"] = "a b" }), "id"},
		{"wrong specversion", mod(func(m map[string]any) { m["specversion"] = "0.3" }), "specversion"},
		{"missing source", mod(func(m map[string]any) { delete(m, "source") }), "source"},
		{"bad type", mod(func(m map[string]any) { m["type"] = "contract ending" }), "type"},
		{"wildcard type", mod(func(m map[string]any) { m["type"] = "contract.>" }), "type"},
		{"missing subject", mod(func(m map[string]any) { delete(m, "subject") }), "subject"},
		{"bad time", mod(func(m map[string]any) { m["time"] = "yesterday" }), "time"},
		{"xml content type", mod(func(m map[string]any) { m["datacontenttype"] = "application/xml" }), "datacontenttype"},
		{"binary data", mod(func(m map[string]any) { m["data_base64"] = "AAAA" }), "data_base64"},
		{"missing data", mod(func(m map[string]any) { delete(m, "data") }), "data"},
		{"data not object", mod(func(m map[string]any) { m["data"] = "x" }), "data"},
		{"bad product", mod(data(func(d map[string]any) { d["product"] = "internet" })), "data.product"},
		{"bad ends_on", mod(data(func(d map[string]any) { d["ends_on"] = "31.01.2027" })), "data.ends_on"},
		{"numeric contract", mod(data(func(d map[string]any) { d["contract"] = 5 })), "data.contract"},
		{"notice after end", mod(data(func(d map[string]any) { d["notice_until"] = "2027-02-01" })), "data.notice_until"},
		{"backpayment no amount", `{"specversion":"1.0","id":"b","source":"/b","type":"billing.backpayment_expected","subject":"K1","data":{"due_on":"2027-01-01"}}`, "data.amount_eur"},
		{"backpayment string amount", `{"specversion":"1.0","id":"b","source":"/b","type":"billing.backpayment_expected","subject":"K1","data":{"amount_eur":"12","due_on":"2027-01-01"}}`, "data.amount_eur"},
		{"enquiry no agent", `{"specversion":"1.0","id":"c","source":"/c","type":"service.cancellation_enquiry","subject":"K1","data":{"contract":"V","touchpoint":"phone"}}`, "data.agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			evs, errs := events.ParseRequest([]byte(tt.body))
			if len(errs) == 0 {
				t.Fatalf("accepted %+v", evs)
			}
			if errs[0].Field != tt.field {
				t.Errorf("field = %q (%s), want %q", errs[0].Field, errs[0].Reason, tt.field)
			}
			if errs[0].Reason == "" || !strings.Contains(errs[0].Error(), tt.field) {
				t.Errorf("error %q does not name the field", errs[0].Error())
			}
			if evs != nil {
				t.Error("events returned alongside errors")
			}
		})
	}
}

func TestParseBatchErrorIndexAndDuplicates(t *testing.T) {
	t.Parallel()
	bad := strings.Replace(good, `"subject":"K100001"`, `"subject":""`, 1)
	body := "[" + good + "," + strings.Replace(good, "ev-1", "ev-2", 1) + "," + bad + "," + good + "]"
	_, errs := events.ParseRequest([]byte(body))
	if len(errs) != 2 {
		t.Fatalf("got %d errors, want 2: %v", len(errs), errs)
	}
	if errs[0].Index != 2 || errs[0].Field != "subject" {
		t.Errorf("first error = %+v, want index 2 subject", errs[0])
	}
	if errs[1].Index != 3 || errs[1].Field != "id" {
		t.Errorf("second error = %+v, want index 3 id (duplicate)", errs[1])
	}
}

func TestParseBatchLimit(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i <= events.MaxBatch; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strings.Replace(good, "ev-1", fmt.Sprintf("ev-%d", i), 1))
	}
	b.WriteString("]")
	_, errs := events.ParseRequest([]byte(b.String()))
	if len(errs) != 1 || errs[0].Field != "body" || !strings.Contains(errs[0].Reason, "1000") {
		t.Fatalf("errs = %v", errs)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[" + good + "," + good + "]"))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"/s","type":"billing.backpayment_expected","subject":"K","data":{"amount_eur":1e400,"due_on":"2027-13-01"}}`))
	f.Add([]byte(`[{"data":null},null,[]]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, errs := events.ParseRequest(body)
		if (evs == nil) == (errs == nil) {
			t.Fatalf("want exactly one of events (%d) and errors (%d)", len(evs), len(errs))
		}
		for _, e := range errs {
			if e.Field == "" || e.Reason == "" {
				t.Fatalf("error without field or reason: %+v", e)
			}
		}
		for _, ev := range evs {
			if ev.ID == "" || ev.Type == "" || ev.Subject == "" || ev.Source == "" || !json.Valid(ev.Raw) {
				t.Fatalf("accepted incomplete event %+v", ev)
			}
		}
	})
}

// The example shipped for operators must stay valid.
func TestDeployExampleIsValid(t *testing.T) {
	t.Parallel()
	body, err := os.ReadFile("../../deploy/examples/events.json")
	if err != nil {
		t.Fatal(err)
	}
	evs, errs := events.ParseRequest(body)
	if errs != nil {
		t.Fatalf("deploy/examples/events.json: %v", errs[0])
	}
	types := map[string]bool{}
	for _, ev := range evs {
		types[ev.Type] = true
	}
	for _, typ := range []string{events.TypeContractEnding, events.TypeBackpaymentExpected, events.TypeCancellationEnquiry} {
		if !types[typ] {
			t.Errorf("example lacks %s", typ)
		}
	}
}
