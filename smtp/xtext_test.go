package smtp

import "testing"

// xtext (RFC 3461 §4) round trips, and bad xtext is refused.
func TestXtext(t *testing.T) {
	for _, c := range []struct{ plain, x string }{
		{"", ""},
		{"abc", "abc"},
		{"a+b=c d", "a+2Bb+3Dc+20d"},
		{"\x00\x7f\xff", "+00+7F+FF"},
		{"rfc822;bob@example.com", "rfc822;bob@example.com"},
	} {
		if got := EncodeXtext(c.plain); got != c.x {
			t.Errorf("EncodeXtext(%q) = %q, want %q", c.plain, got, c.x)
		}
		if got, err := DecodeXtext(c.x); err != nil || got != c.plain {
			t.Errorf("DecodeXtext(%q) = %q, %v; want %q", c.x, got, err, c.plain)
		}
	}
	for _, bad := range []string{"+", "+2", "+2b", "+G0", "a=b", "a b", "\x7f", "é"} {
		if got, err := DecodeXtext(bad); err == nil {
			t.Errorf("DecodeXtext(%q) = %q, want an error", bad, got)
		}
	}
}
