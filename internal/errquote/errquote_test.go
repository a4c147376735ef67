package errquote

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"bogus", "'bogus'"},
		{"it's", "'it''s'"},
		{"a\x01\x7fb\n", `'a\x01\x7fb\x0a'`},
		{strings.Repeat("a", Max), "'" + strings.Repeat("a", Max) + "'"},
		{strings.Repeat("a", Max+1), "'" + strings.Repeat("a", Max) + "...'"},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestQuoteC1: Quote shows C1 controls and bytes that are not UTF-8
// escaped, and printable UTF-8 as it is.
func TestQuoteC1(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"caf\u00e9", "'caf\u00e9'"},
		{"a\u009b2Jb", `'a\u009b2Jb'`},
		{"\xff\x9b", `'\xff\x9b'`},
		{"\x1b[2J", `'\x1b[2J'`},
		{"tab\there", `'tab\x09here'`},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestEscape: every control a terminal obeys is shown, not sent; tabs
// and printable UTF-8 stay; escaped text escapes to itself.
func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"250 ok", "250 ok"},
		{"a\tb", "a\tb"},
		{"\x1b[2J\x1b]0;title\x07", `\x1b[2J\x1b]0;title\x07`},
		{"a\r\nb", `a\x0d\x0ab`},
		{"del\x7f", `del\x7f`},
		{"csi \u009b2J nel \u0085 apc \u009f", `csi \u009b2J nel \u0085 apc \u009f`},
		{"raw \x9b2J \xc2", `raw \x9b2J \xc2`},
		{"gr\u00fc\u00dfe \u263a \ufffd", "gr\u00fc\u00dfe \u263a \ufffd"},
		// Format characters reorder or hide text: shown, not sent.
		{"bob\u202egro.live@x", `bob\u202egro.live@x`},
		{"a\u200bb\u2066c\u2069 \U000e0041", `a\u200bb\u2066c\u2069 \U000e0041`},
	} {
		got := Escape(tc.in)
		if got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again := Escape(got); again != got {
			t.Errorf("Escape(%q) = %q, not itself", got, again)
		}
		for _, c := range []byte(got) {
			if c < ' ' && c != '\t' || c == 0x7f {
				t.Errorf("Escape(%q) = %q has the control byte %#x", tc.in, got, c)
			}
		}
		if !utf8.ValidString(got) || strings.ContainsFunc(got, func(r rune) bool { return r >= 0x80 && r <= 0x9f || unicode.Is(unicode.Cf, r) }) {
			t.Errorf("Escape(%q) = %q: not UTF-8, or a C1 control or format character", tc.in, got)
		}
		if b := AppendEscaped([]byte("x"), tc.in); string(b) != "x"+tc.want {
			t.Errorf("AppendEscaped(%q) = %q", tc.in, b)
		}
	}
}
