package twiliosim

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// apiError is a Twilio-shaped error answer.
type apiError struct {
	Status  int    `json:"status"`
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Twilio limits the sim enforces.
const (
	maxBody  = 1600 // characters in Body (21617)
	maxMedia = 10   // MediaUrl values (21623)
)

// request is a validated create-message request.
type request struct {
	to, from, service  string
	whatsapp           bool
	body, contentSID   string
	contentVars        map[string]string
	media              []string
	statusCallback     string
	recipient          string // To without the channel prefix
	viaServiceNoSender bool   // MessagingServiceSid without From
}

// validate checks a create-message form the way Twilio does, in Twilio's
// order, and returns the first problem found.
func validate(f url.Values) (request, *apiError) {
	var q request
	q.to = f.Get("To")
	if q.to == "" {
		return q, &apiError{400, 21604, "A 'To' phone number is required."}
	}
	q.recipient, q.whatsapp = strings.CutPrefix(q.to, "whatsapp:")
	if !isE164(q.recipient) {
		// Twilio quotes the number; so does the sim, so that adapters are
		// tested against leaking it.
		return q, &apiError{400, 21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", q.to)}
	}

	q.from, q.service = f.Get("From"), f.Get("MessagingServiceSid")
	if q.from == "" && q.service == "" {
		return q, &apiError{400, 21603, "A 'From' phone number or a 'MessagingServiceSid' is required."}
	}
	if q.service != "" && !isSID(q.service, "MG") {
		return q, &apiError{400, 21701, "The Messaging Service Sid is invalid."}
	}
	if q.from != "" {
		addr, wa := strings.CutPrefix(q.from, "whatsapp:")
		if wa != q.whatsapp {
			return q, &apiError{400, 21910, "Invalid From and To pair. From and To should be of the same channel."}
		}
		if !isE164(addr) && (wa || !isShortCode(addr) && !isAlphaSender(addr)) {
			return q, &apiError{400, 21212, fmt.Sprintf("The 'From' number %s is not a valid phone number, shortcode, or alphanumeric sender ID.", q.from)}
		}
	}
	q.viaServiceNoSender = q.from == ""

	q.body, q.contentSID, q.media = f.Get("Body"), f.Get("ContentSid"), f["MediaUrl"]
	if q.body == "" && q.contentSID == "" && len(q.media) == 0 {
		return q, &apiError{400, 21619, "A text message body or media urls must be specified."}
	}
	if utf8.RuneCountInString(q.body) > maxBody {
		return q, &apiError{400, 21617, "The concatenated message body exceeds the 1600 character limit."}
	}
	if q.contentSID != "" && !isSID(q.contentSID, "HX") {
		return q, &apiError{400, 21655, "The ContentSid is Invalid."}
	}
	if v := f.Get("ContentVariables"); v != "" {
		if err := json.Unmarshal([]byte(v), &q.contentVars); err != nil || q.contentVars == nil {
			return q, &apiError{400, 21656, "The ContentVariables Parameter is invalid."}
		}
	}
	if len(q.media) > maxMedia {
		return q, &apiError{400, 21623, "The number of media files exceeds the limit of 10."}
	}
	for _, m := range q.media {
		if !isHTTPURL(m) {
			return q, &apiError{400, 21620, "Invalid media URL(s)."}
		}
	}
	if q.statusCallback = f.Get("StatusCallback"); q.statusCallback != "" && !isHTTPURL(q.statusCallback) {
		return q, &apiError{400, 21609, "Invalid StatusCallback url."}
	}
	return q, nil
}

// magic are Twilio's test numbers that always fail the same way.
func magic(recipient string) *apiError {
	switch recipient {
	case "+15005550001":
		return &apiError{400, 21211, "The 'To' number +15005550001 is not a valid phone number."}
	case "+15005550002":
		return &apiError{400, 21612, "The 'To' phone number is not currently reachable via SMS."}
	case "+15005550003":
		return &apiError{400, 21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number."}
	case "+15005550004":
		return &apiError{400, 21610, "Attempt to send to unsubscribed recipient."}
	case "+15005550009":
		return &apiError{400, 21614, "'To' number is not a valid mobile number."}
	}
	return nil
}

// isE164 reports whether s is +[1-9] followed by 6 to 14 digits.
func isE164(s string) bool {
	if len(s) < 8 || len(s) > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9' {
		return false
	}
	return allDigits(s[2:])
}

func isShortCode(s string) bool { return len(s) >= 5 && len(s) <= 6 && allDigits(s) }

// isAlphaSender reports whether s is an alphanumeric sender ID: 1–11
// letters, digits and spaces, with at least one letter.
func isAlphaSender(s string) bool {
	if len(s) == 0 || len(s) > 11 {
		return false
	}
	letter := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
			letter = true
		case '0' <= c && c <= '9', c == ' ':
		default:
			return false
		}
	}
	return letter
}

// isSID reports whether s is prefix followed by 32 lowercase hex digits.
func isSID(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != 32 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// segments is the number of SMS segments Twilio bills for body: GSM-7 when
// every character is in the GSM 03.38 basic or extension table (extension
// characters take two septets), UCS-2 otherwise. A single segment holds 160
// septets or 70 UTF-16 units; concatenated segments lose room to the UDH and
// hold 153 or 67, and never split an escape sequence or a surrogate pair.
func segments(body string) int {
	if body == "" {
		return 0
	}
	single, multi, cost := 160, 153, gsmCost
	total := 0
	for _, r := range body {
		c := gsmCost(r)
		if c == 0 {
			single, multi, cost, total = 70, 67, ucs2Cost, 0
			for _, r := range body {
				total += ucs2Cost(r)
			}
			break
		}
		total += c
	}
	if total <= single {
		return 1
	}
	n, used := 1, 0
	for _, r := range body {
		c := cost(r)
		if used+c > multi {
			n, used = n+1, 0
		}
		used += c
	}
	return n
}

func ucs2Cost(r rune) int {
	if r > 0xFFFF {
		return 2
	}
	return 1
}

// gsmCost is the number of septets r takes in GSM-7, or 0 when r is not
// representable.
func gsmCost(r rune) int {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return 1
	}
	switch r {
	case '\n', '\r', ' ', '!', '"', '#', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
		':', ';', '<', '=', '>', '?', '@', '_', '$',
		'£', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', 'Ø', 'ø', 'Å', 'å', 'Δ', 'Φ', 'Γ', 'Λ', 'Ω', 'Π',
		'Ψ', 'Σ', 'Θ', 'Ξ', 'Æ', 'æ', 'ß', 'É', '¤', '¡', 'Ä', 'Ö', 'Ñ', 'Ü', '§', '¿', 'ä', 'ö',
		'ñ', 'ü', 'à':
		return 1
	case '^', '{', '}', '\\', '[', ']', '~', '|', '€', '\f':
		return 2
	}
	return 0
}
