package twilio

import "unicode/utf16"

// SMS segment sizes: a single message carries 160 GSM-7 septets or 70 UCS-2
// units; a part of a concatenated message loses room to the user data header
// and carries 153 or 67.
const (
	gsmSingle, gsmPart   = 160, 153
	ucs2Single, ucs2Part = 70, 67
)

// Segments returns how many SMS segments body is billed as, the way Twilio
// counts them: GSM-7 when every character is in the GSM 03.38 basic
// character set (which includes ÄÖÜäöüß) or its extension table (^{}\[~]|€
// and form feed, two septets each), UCS-2 otherwise (one unit per UTF-16
// code unit, so emoji take two). An extension character or a surrogate pair
// is never split across segments. The empty body has 0 segments.
func Segments(body string) int {
	if body == "" {
		return 0
	}
	gsm := true
	septets, units := 0, 0
	for _, r := range body {
		switch n := septets7(r); {
		case n == 0:
			gsm = false
		case gsm:
			septets += n
		}
		units += utf16.RuneLen(r)
	}
	if gsm {
		return split(body, septets, gsmSingle, gsmPart, septets7)
	}
	return split(body, units, ucs2Single, ucs2Part, ucs2Units)
}

// split packs body's characters greedily into segments of part units after
// checking whether all total units fit into one single segment.
func split(body string, total, single, part int, cost func(rune) int) int {
	if total <= single {
		return 1
	}
	segments, used := 1, 0
	for _, r := range body {
		c := cost(r)
		if used+c > part {
			segments++
			used = 0
		}
		used += c
	}
	return segments
}

func ucs2Units(r rune) int {
	if n := utf16.RuneLen(r); n > 0 {
		return n
	}
	return 1 // invalid UTF-8 arrives as U+FFFD, one unit
}

// septets7 returns the GSM-7 septets r takes: 1 for the basic set, 2 for
// the extension table (escape + character), 0 when GSM-7 cannot carry r.
func septets7(r rune) int {
	if r < 0x80 {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return 1
		}
		switch r {
		case '@', '$', '\n', '\r', '_', ' ', '!', '"', '#', '%', '&', '\'', '(', ')', '*',
			'+', ',', '-', '.', '/', ':', ';', '<', '=', '>', '?':
			return 1
		case '\f', '^', '{', '}', '\\', '[', '~', ']', '|':
			return 2
		}
		return 0 // ` and the other control characters
	}
	switch r {
	// Basic set, in GSM 03.38 table order.
	case '£', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', 'Ø', 'ø', 'Å', 'å',
		'Δ', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 'Æ', 'æ', 'ß', 'É',
		'¤', '¡', 'Ä', 'Ö', 'Ñ', 'Ü', '§', '¿', 'ä', 'ö', 'ñ', 'ü', 'à':
		return 1
	case '€':
		return 2
	}
	return 0
}
