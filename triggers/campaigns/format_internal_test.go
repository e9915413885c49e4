package campaigns

import (
	"encoding/json"
	"testing"
	"time"
)

func TestFormatEuro(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{1234.5, "1.234,50 €"},
		{0.0, "0,00 €"},
		{0.005, "0,01 €"},
		{0.004, "0,00 €"},
		{12.345, "12,35 €"},
		{999.999, "1.000,00 €"},
		{100.0, "100,00 €"},
		{1000.0, "1.000,00 €"},
		{123456.0, "123.456,00 €"},
		{1234567.89, "1.234.567,89 €"},
		{-1234.5, "-1.234,50 €"},
		{-0.004, "0,00 €"}, // no "minus zero"
		{float32(2.5), "2,50 €"},
		{42, "42,00 €"},
		{json.Number("1234.5"), "1.234,50 €"},
	}
	for _, tt := range tests {
		got, err := formatEuro(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("euro(%v) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []any{"12", nil, json.Number("zwölf"), true} {
		if got, err := formatEuro(bad); err == nil {
			t.Errorf("euro(%#v) = %q, want an error", bad, got)
		}
	}
}

func TestFormatDate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{"2027-01-31", "31.01.2027"},
		{"2026-12-01", "01.12.2026"},
		{time.Date(2027, 2, 3, 23, 30, 0, 0, time.UTC), "03.02.2027"},
	}
	for _, tt := range tests {
		got, err := formatDate(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("date(%v) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []any{"31.01.2027", "2027-02-30", "", 20270131, nil} {
		if got, err := formatDate(bad); err == nil {
			t.Errorf("date(%#v) = %q, want an error", bad, got)
		}
	}
}

func TestProductName(t *testing.T) {
	t.Parallel()
	for in, want := range map[any]string{"strom": "Strom", "gas": "Erdgas", "wasser": "Trinkwasser", "waerme": "Fernwärme", "glasfaser": "glasfaser", 3: ""} {
		if got := productName(in); got != want {
			t.Errorf("product(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestDaysUntil counts calendar days in Europe/Berlin. The expected value
// is computed around the call, so a test running across midnight passes.
func TestDaysUntil(t *testing.T) {
	t.Parallel()
	today := func() time.Time {
		n := time.Now().In(berlin)
		return time.Date(n.Year(), n.Month(), n.Day(), 0, 0, 0, 0, time.UTC)
	}
	for _, offset := range []int{-3, 0, 1, 30, 365} {
		before := today()
		target := before.AddDate(0, 0, offset)
		got, err := daysUntil(target.Format(time.DateOnly))
		after := today()
		if err != nil {
			t.Fatal(err)
		}
		if got != offset && got != int(target.Sub(after).Hours()/24) {
			t.Errorf("days(%s) = %d, want %d", target.Format(time.DateOnly), got, offset)
		}
		if got2, err := daysUntil(target); err != nil || got2 != got {
			t.Errorf("days(time %v) = %d, %v; want %d", target, got2, err, got)
		}
	}
	if _, err := daysUntil("morgen"); err == nil {
		t.Error("days(\"morgen\") accepted")
	}
	if _, err := daysUntil(3); err == nil {
		t.Error("days(3) accepted")
	}
}
