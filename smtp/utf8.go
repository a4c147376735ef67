package smtp

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// idnaStrict converts a domain as IDNA2008 itself does (RFC 5891 §4):
// no UTS #46 mapping, so that a code point IDNA2008 disallows (U+2215
// DIVISION SLASH, fullwidth forms, symbols, U+202E) is refused rather than
// mapped or let through; with the Bidi rule (RFC 5893), the joiner rules
// and DNS's length limits (RFC 1035 §2.3.4: 63 octets a label).
var idnaStrict = idna.New(idna.ValidateForRegistration(), idna.Transitional(false),
	idna.CheckHyphens(true), idna.CheckJoiners(true))

// ALabel returns domain with its U-labels as A-labels (IDNA2008, RFC
// 5890 §2.3.2.1: "xn--..."), lower case, for routing, MX lookups and
// comparing with our domains. An ASCII domain is returned lower case and
// otherwise as it is (an address literal too); a domain that is not
// valid IDNA is an error. RFC 6531 §3.2: an SMTPUTF8 message may name
// domains in U-labels; DNS knows only A-labels.
func ALabel(domain string) (string, error) {
	if isASCII(domain) {
		return strings.ToLower(domain), nil
	}
	for _, r := range domain {
		// x/net/idna follows UTS #46's table, which lets symbols IDNA2008
		// disallows through (U+2215 DIVISION SLASH is "valid, NV8"):
		// IDNA2008's letters, marks and digits only (RFC 5892 §2.1-2.2).
		if r >= 0x80 && !unicode.IsLetter(r) && !unicode.IsMark(r) && !unicode.Is(unicode.Nd, r) {
			return "", fmt.Errorf("invalid internationalized domain %q: %U is not a letter, mark or digit", domain, r)
		}
	}
	// Case is folded first (IDNA2008 has no upper case) and the result
	// put in NFC, as RFC 5891 §5.2 asks of lookup input.
	a, err := idnaStrict.ToASCII(norm.NFC.String(strings.ToLower(strings.TrimSuffix(domain, "."))))
	if err != nil {
		return "", fmt.Errorf("invalid internationalized domain %q: %v", domain, err)
	}
	return a, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// NeedsSMTPUTF8 reports whether a message needs SMTPUTF8 (RFC 6531 §3.4):
// an address is not ASCII, or its header has UTF-8 in it (RFC 6532).
// head is the message, or its start: the header is what comes before the
// first empty line (LF or CRLF line ends). A header whose 8-bit bytes are
// not UTF-8 is old 8-bit data, sent as it always was.
func NeedsSMTPUTF8(head []byte, addrs ...string) bool {
	for _, a := range addrs {
		if !isASCII(a) {
			return true
		}
	}
	h := head
	switch {
	case bytes.HasPrefix(head, []byte("\n")), bytes.HasPrefix(head, []byte("\r\n")):
		h = nil
	default:
		if i := bytes.Index(head, []byte("\n\n")); i >= 0 {
			h = head[:i]
		}
		if i := bytes.Index(h, []byte("\n\r\n")); i >= 0 {
			h = h[:i]
		}
	}
	return !isASCII(string(h)) && utf8.Valid(h)
}

// A StatusError is a failure of our own, not a server's reply, that has
// an enhanced status code (RFC 3463) for the DSN that reports it.
type StatusError struct {
	Enh string // "5.6.7"
	Msg string
}

func (e *StatusError) Error() string { return e.Enh + " " + e.Msg }

// EnhancedStatus returns the enhanced status code.
func (e *StatusError) EnhancedStatus() string { return e.Enh }
