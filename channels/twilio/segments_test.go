package twilio_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dialogwerk/dialogwerk/channels/twilio"
)

type segmentCase struct {
	name string
	body string
	want int
}

func segmentBodies() []segmentCase {
	r := strings.Repeat
	return []segmentCase{
		{"short", "Hallo", 1},
		{"German basic set", "Grüße aus Köln: Änderung Ihres Abschlags, Straße Öde, Übergabe ÄÖÜäöüß", 1},
		{"160 GSM", r("a", 160), 1},
		{"161 GSM", r("a", 161), 2},
		{"306 GSM", r("a", 306), 2},
		{"307 GSM", r("a", 307), 3},
		{"160 umlauts", r("ü", 160), 1},
		{"euro counts two", r("a", 159) + "€", 2},
		{"80 euro", r("€", 80), 1},
		{"81 euro", r("€", 81), 2},
		{"brackets count two", r("[", 80), 1},
		{"escape never split", r("a", 152) + r("€", 77), 3},
		{"backtick is not GSM", "Preis `neu`", 1},
		{"en dash makes UCS-2", "Vertrag endet – bitte melden", 1},
		{"70 UCS-2", r("–", 70), 1},
		{"71 UCS-2", r("–", 71), 2},
		{"134 UCS-2", r("–", 134), 2},
		{"135 UCS-2", r("–", 135), 3},
		{"35 emoji", r("😀", 35), 1},
		{"36 emoji", r("😀", 36), 2},
		{"surrogate pair never split", r("ł", 66) + r("😀", 34), 3},
		{"GSM turned UCS-2 by one char", r("a", 100) + "ç", 2},
		{"1600 GSM", r("a", 1600), 11},
	}
}

func TestSegments(t *testing.T) {
	t.Parallel()
	if got := twilio.Segments(""); got != 0 {
		t.Errorf("Segments(\"\") = %d, want 0", got)
	}
	for _, tt := range segmentBodies() {
		if got := twilio.Segments(tt.body); got != tt.want {
			t.Errorf("%s: Segments = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func FuzzSegments(f *testing.F) {
	for _, tt := range segmentBodies() {
		f.Add(tt.body)
	}
	f.Add("\xff\xfe")
	f.Fuzz(func(t *testing.T, body string) {
		n := twilio.Segments(body)
		chars := utf8.RuneCountInString(body)
		if body == "" && n != 0 || body != "" && (n < 1 || n > chars) {
			t.Fatalf("Segments = %d for %d characters", n, chars)
		}
		if m := twilio.Segments(body + body); m < n {
			t.Fatalf("doubling the body lowered segments from %d to %d", n, m)
		}
	})
}
