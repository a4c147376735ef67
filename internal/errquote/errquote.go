// Package errquote quotes what an error message names, one way for the
// whole daemon: one reads "invalid ... line N '...'" alike for smtpd.conf,
// ctl, the whitelist and lib/blocked.
package errquote

import "strings"

// Max is how many bytes of s Quote shows before "...".
const Max = 80

// Quote returns s in single quotes as rc would, a quote inside doubled.
// It is cut to Max bytes, with control characters shown as \xNN, so that
// a long or strange line makes a short error of one line.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		if i == Max {
			b.WriteString("...")
			break
		}
		switch c := s[i]; {
		case c < ' ' || c == 0x7f:
			b.WriteString(`\x`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&15])
		case c == '\'':
			b.WriteString("''")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}
