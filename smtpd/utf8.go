package smtpd

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"smtpfs/smtp"
)

// SMTPUTF8 (RFC 6531, RFC 6532).
//
// We offer SMTPUTF8 after EHLO (never after HELO: RFC 6531 §3.1). A
// transaction whose MAIL carries the SMTPUTF8 parameter may use UTF-8 in
// the local parts and domains of its MAIL and RCPT paths (RFC 6531 §3.3:
// atext, qtextSMTP and sub-domain take UTF8-non-ascii); without it, a
// non-ASCII address is refused with 553 5.6.7 (RFC 6531 §3.7.4.1). The
// 8-bit bytes of a command line must be well-formed UTF-8 with no C1
// control (U+0080-U+009F), and only MAIL and RCPT may have them; every
// limit of RFC 5321 §4.5.3.1 still counts octets, not characters. ESMTP
// parameter values stay ASCII.
//
// A domain in U-labels is routed by its A-label (smtp.ALabel): ours or
// not, relayed or not, its MX; the address keeps the U-labels the client
// wrote, in the queue and in the message.
//
// The message may have UTF-8 header fields (RFC 6532) when SMTPUTF8 was
// given. If it has, or an address is UTF-8, it is queued with
// Params.SMTPUTF8, so that it leaves only to a server that offers
// SMTPUTF8 (else it bounces, 5.6.7). One that said SMTPUTF8 and is ASCII
// throughout is not marked: Go's net/smtp, for one, says SMTPUTF8 to
// every server that offers it, and such mail must still reach a next hop
// without SMTPUTF8 (RFC 6531 §3.4 asks clients not to say it needlessly;
// Postfix relays it the same way). Without the
// parameter, raw 8-bit bytes in the header are accepted as they always
// were (8-bit data, as with 8BITMIME): refusing them now would lose the
// legacy mail (Latin-1 subjects) that servers have accepted for decades,
// and such a message is not an SMTPUTF8 message, so it is relayed as it
// came.

// errNeedUTF8 refuses a non-ASCII address in a transaction without
// SMTPUTF8 (RFC 6531 §3.7.4.1: 553 5.6.7). The address is shown in ASCII
// (Go's \u escapes): the client did not say it takes UTF-8.
func errNeedUTF8(addr string) *smtp.Reply {
	return smtp.Replyf(553, "5.6.7", "%s ... non-ASCII address requires SMTPUTF8 on MAIL FROM", strconv.QuoteToASCII(addr))
}

var errParamUTF8 = smtp.Replyf(501, "5.5.4", "non-ASCII MAIL or RCPT parameter value")

// utf8Command reports whether a command line whose verb is verb may have
// the 8-bit bytes it has: MAIL or RCPT only, well-formed UTF-8, no C1
// control.
func utf8Command(verb string, line []byte) bool {
	if verb != "MAIL" && verb != "RCPT" || !utf8.Valid(line) {
		return false
	}
	for _, r := range string(line) {
		if r >= 0x80 && r <= 0x9f {
			return false
		}
	}
	return true
}

// checkUTF8 checks a MAIL or RCPT path and its parameters against the
// transaction: a non-ASCII address needs SMTPUTF8 on MAIL; a parameter
// value is ASCII always.
func (s *session) checkUTF8(p mailPath, params []param) *smtp.Reply {
	for _, pm := range params {
		if !isASCII(pm.value) {
			return errParamUTF8
		}
	}
	if !s.utf8 && !isASCII(p.Local) || !s.utf8 && p.UDomain != "" {
		return errNeedUTF8(p.Addr())
	}
	return nil
}

// needsUTF8 reports whether the message of the transaction, with header
// h, needs SMTPUTF8 at the next hop: MAIL said SMTPUTF8, and an address
// or the header has UTF-8 in it.
func (s *session) needsUTF8(sp *spool, h headerInfo) bool {
	return s.utf8 && smtp.NeedsSMTPUTF8(sp.head(h.end), append([]string{s.from.Addr()}, s.rcptAddrs()...)...)
}

// utf8Param takes MAIL's SMTPUTF8 parameter (RFC 6531 §3.4: no value;
// EHLO only).
func (s *session) utf8Param(pm param) *smtp.Reply {
	if !s.esmtp { // not offered after HELO
		return errParam
	}
	if pm.value != "" {
		return errArgs
	}
	s.utf8 = true
	return nil
}

// parseUDomain parses a domain with U-labels (RFC 6531 §3.3 sub-domain
// =/ U-label), as written, into its A-label (for routing) and the form
// it keeps in the address: lower case, no final dot.
func parseUDomain(s string) (alabel, written string, err *smtp.Reply) {
	written = strings.ToLower(strings.TrimSuffix(s, "."))
	a, e := smtp.ALabel(written)
	if e != nil || !validDomain(a) {
		return "", "", errPathSyntax
	}
	return a, written, nil
}

// utf8BoxName is BoxName for a local part that is not ASCII. The mapping
// from such a local part to its box, a directory under box/:
//
//   - the local part is put in NFC (RFC 6532 §3.1 recommends it; two
//     canonically equivalent spellings are one user), its part before '+'
//     is the box, lower case (Unicode simple lower case, then NFC again),
//     at most 64 octets, like an ASCII box;
//   - every character of the box is an ASCII letter, digit, '.', '-' or
//     '_', or a Unicode letter, combining mark or decimal digit; the tag
//     may also have '+' and '='. So '/', NUL and every control, format
//     character (U+202E RIGHT-TO-LEFT OVERRIDE, U+200B, U+200D), space,
//     symbol (U+2215 DIVISION SLASH) and punctuation (U+FF0F FULLWIDTH
//     SOLIDUS) are refused;
//   - a character NFKC would change (fullwidth and halfwidth forms,
//     ligatures, superscripts, U+2126 OHM SIGN after NFC is Ω and fine)
//     is refused: it looks like another name, and would make a second
//     box for it;
//   - the box does not start with '.', '-' or a combining mark, nor end
//     with '.' ("jörg.+x"); its dots separate non-empty atoms (a
//     dot-string), so it is never "." or "..".
//
// A box name is the UTF-8 of those characters, so two local parts share
// a box only if they are the same after NFC and lower case. An ASCII
// local part keeps BoxName's rules.
func utf8BoxName(local string) (string, error) {
	bad := fmt.Errorf("invalid user name %q", local)
	if len(local) > maxLocal || !utf8.ValidString(local) {
		return "", bad
	}
	n := norm.NFC.String(local)
	if norm.NFKC.String(n) != n || len(n) > maxLocal || !isDotString(n) {
		return "", bad
	}
	box, tag, _ := strings.Cut(n, "+")
	box = norm.NFC.String(strings.ToLower(box))
	if box == "" || len(box) > maxLocal || box[0] == '.' || box[0] == '-' || box[len(box)-1] == '.' ||
		!boxRunes(box, "._-") || !boxRunes(tag, "._-+=") {
		return "", bad
	}
	if r, _ := utf8.DecodeRuneInString(box); unicode.IsMark(r) {
		return "", bad
	}
	return box, nil
}

// boxRunes reports whether s is made of ASCII letters and digits, the
// bytes of extra, and non-ASCII letters, marks and decimal digits.
func boxRunes(s, extra string) bool {
	for _, r := range s {
		switch {
		case r < 0x80:
			if c := byte(r); !isAlpha(c) && !isDigit(c) && strings.IndexByte(extra, c) < 0 {
				return false
			}
		case !unicode.IsLetter(r) && !unicode.IsMark(r) && !unicode.Is(unicode.Nd, r):
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
