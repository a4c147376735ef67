// Package errquote quotes what an error message names, one way for the
// whole daemon: one reads "invalid ... line N '...'" alike for smtpd.conf,
// ctl, the whitelist and lib/blocked.
//
// It is also the one escaper of text that comes from the network on its
// way to a terminal or a log: a server's reply quoted by the smtp program,
// a -d transcript, a log line naming what a client said. A terminal obeys
// what it is sent: ESC [ 2 J clears the screen, an OSC sequence sets the
// window title or writes to the clipboard, and C1 controls (U+0080 to
// U+009F; CSI is U+009B) do the same in one character. So every control
// character is shown, never sent: C0 controls (but tab, where kept),
// DEL and bytes that are not UTF-8 as \xNN, C1 controls as \u0080 to
// \u009f. Unicode format characters (category Cf: the bidirectional
// overrides and isolates U+202A-U+202E and U+2066-U+2069, zero-width
// spaces and joiners) are shown as \uXXXX too: they send no command, but
// reorder or hide what follows them on the screen, so that an address
// holding U+202E would make a log line read other than it is. Printable
// UTF-8 is left alone, and the escaped text escapes to itself, so text
// may pass through more than one layer that escapes it.
package errquote

import (
	"unicode"
	"unicode/utf8"
)

// Max is how many bytes of s Quote shows before "...".
const Max = 80

const hex = "0123456789abcdef"

// Quote returns s in single quotes as rc would, a quote inside doubled.
// It is cut to Max bytes, with control characters (tab and newline
// included) shown escaped, so that a long or strange line makes a short
// error of one line.
func Quote(s string) string {
	b := make([]byte, 0, min(len(s), Max)+8)
	b = append(b, '\'')
	for i := 0; i < len(s); {
		if i >= Max {
			b = append(b, "..."...)
			break
		}
		if s[i] == '\'' {
			b = append(b, "''"...)
			i++
			continue
		}
		var n int
		b, n = appendChar(b, s[i:], false)
		i += n
	}
	return string(append(b, '\''))
}

// Escape returns s with its control characters escaped, tabs kept: for
// text of one line that came from the network, a reply or a client's
// command. A newline in s is escaped too.
func Escape(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c >= 0x7f {
			return string(AppendEscaped(make([]byte, 0, len(s)+16), s))
		}
	}
	return s // the common case: printable ASCII, no copy
}

// AppendEscaped appends s to b as Escape returns it.
func AppendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		var n int
		b, n = appendChar(b, s[i:], true)
		i += n
	}
	return b
}

// appendChar appends the first character of s (a UTF-8 sequence, or one
// byte that is not UTF-8), escaped if it is a control, and returns how
// many bytes of s it took.
func appendChar(b []byte, s string, keepTab bool) ([]byte, int) {
	r, n := utf8.DecodeRuneInString(s)
	switch {
	case r == utf8.RuneError && n <= 1, r < ' ' && !(keepTab && r == '\t'), r == 0x7f:
		c := s[0]
		return append(b, '\\', 'x', hex[c>>4], hex[c&15]), 1
	case r >= 0x80 && r <= 0x9f:
		return append(b, '\\', 'u', '0', '0', hex[r>>4], hex[r&15]), n
	case r > 0x9f && unicode.Is(unicode.Cf, r):
		if r > 0xffff {
			b = append(b, '\\', 'U', '0', '0', hex[r>>20&15], hex[r>>16&15])
		} else {
			b = append(b, '\\', 'u')
		}
		return append(b, hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15]), n
	}
	return append(b, s[:n]...), n
}
