package errquote

import (
	"strings"
	"testing"
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
