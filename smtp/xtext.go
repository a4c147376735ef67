package smtp

import (
	"errors"
	"strings"
)

// xtext (RFC 3461 §4): the encoding of the values of ENVID and ORCPT, and
// of AUTH= (RFC 4954 §5). A character from "!" to "~" but "+" and "="
// stands for itself; any other octet is "+" and two upper-case hex digits.

// EncodeXtext returns s as xtext.
func EncodeXtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// DecodeXtext decodes xtext. It refuses what RFC 3461 §4 does not allow:
// an octet outside "!".."~", a bare "=", and a "+" not followed by two
// upper-case hex digits.
func DecodeXtext(x string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(x); i++ {
		c := x[i]
		switch {
		case c == '+':
			if i+2 >= len(x) || !upperHex(x[i+1]) || !upperHex(x[i+2]) {
				return "", errors.New(`bad xtext: "+" not followed by two upper-case hex digits`)
			}
			b.WriteByte(unhex(x[i+1])<<4 | unhex(x[i+2]))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", errors.New("bad xtext: a character that must be encoded as +XX")
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func upperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}
