package grey

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzWhitelistLine checks the whitelist line parser: an entry it accepts
// reads back the same from its text, and the index built from it holds
// exactly its addresses; a line Add accepts is one the loader accepts.
func FuzzWhitelistLine(f *testing.F) {
	for _, s := range strings.Split(sampleWhitelist, "\n") {
		f.Add(s)
	}
	for _, s := range []string{"::ffff:1.2.3.4/100", "0.0.0.0/0", "::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "1.2.3.4\tname\x00", "fe80::1%eth0", "10.1/16", " \t#x", "1.2.3.4/024"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		p, ok, err := parseEntry(line)
		if cerr := checkEntry(line); cerr == nil && err != nil {
			t.Fatalf("checkEntry accepts %q, parseEntry refuses it: %v", line, err)
		}
		if !ok {
			return
		}
		if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("parseEntry(%q) = %v: not a clean prefix", line, p)
		}
		again, err := ParsePrefix(formatPrefix(p))
		if err != nil || again != p {
			t.Fatalf("%q: %v formats as %q, which reads back as %v, %v", line, p, formatPrefix(p), again, err)
		}
		var s set
		s.add(p)
		s.normalize()
		first, last := p.Addr(), lastAddr(p)
		if !s.contains(first) || !s.contains(last) || !s.covers(p) {
			t.Fatalf("%v: index misses its ends %v %v", p, first, last)
		}
		if b := first.Prev(); b.IsValid() && b.BitLen() == first.BitLen() && s.contains(b) {
			t.Fatalf("%v: index holds %v", p, b)
		}
		if a := last.Next(); a.IsValid() && s.contains(a) {
			t.Fatalf("%v: index holds %v", p, a)
		}
	})
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		b := p.Addr().As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom4(b)
	}
	b := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// FuzzBlocked checks the lib/blocked parser: it never panics, and when it
// accepts a file, every address listed under a verb gets that verdict or
// an earlier one.
func FuzzBlocked(f *testing.F) {
	f.Add("block 192.0.2.1\nallow 192.0.2.0/24\n*deny spam.example, !root\n", "192.0.2.1", "spam.example!bob")
	f.Add("* delay *.example!info*\nrelay 2001:db8::/32 10.1\n", "2001:db8::1", "a.example!info")
	f.Add("dial 203.0.113.0\\#28 # comment\nBLOCK ::FFFF:1.2.3.4\n", "1.2.3.4", "")
	f.Add("*block a!b!c!d!e!f!g!h!i!j!k!l\n", "::1", "a!b!c!d!e!f!g!h!i!j!k!l")
	f.Add("*\n", "", "")
	f.Fuzz(func(t *testing.T, text, ip, sender string) {
		tab, err := parseBlocked(strings.NewReader(text), int64(len(text)), "blocked")
		if err != nil {
			return
		}
		b := NewBlocked("/nonexistent/blocked", nil)
		b.tab.Store(tab)
		b.tick.next.Store(1 << 62) // never stat
		if a, err := netip.ParseAddr(ip); err == nil {
			b.Classify(a, sender)
		}
		b.Classify(netip.Addr{}, sender)
		for _, line := range strings.Split(text, "\n") {
			w := fields(line)
			if len(w) < 2 || strings.HasPrefix(w[0], "*") {
				continue
			}
			v := verbs[w[0]]
			for _, arg := range w[1:] {
				p, err := ParsePrefix(strings.ReplaceAll(arg, "#", "/"))
				if err != nil {
					t.Fatalf("accepted file has bad address %q", arg)
				}
				if got := b.Classify(p.Addr(), ""); got == None || got > v {
					t.Fatalf("%v listed under %s, classified %v", p, w[0], got)
				}
			}
		}
	})
}

// FuzzFileName checks that triplet file names stay in their directory and
// that recipients that differ get different files.
func FuzzFileName(f *testing.F) {
	for _, s := range []string{"example.org!bob", "../x", ".", "..", "a/b", "x\x00", strings.Repeat("a", 300), "%2F", "~"} {
		f.Add(s, strings.ToUpper(s))
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		na, nb := fileName(a), fileName(b)
		if a == "" {
			if na != "" {
				t.Fatalf("fileName(\"\") = %q", na)
			}
			return
		}
		if na == "" || len(na) > maxName || strings.ContainsAny(na, "/\x00") || na[0] == '.' {
			t.Fatalf("fileName(%q) = %q", a, na)
		}
		if (na == nb) != (asciiLower(a) == asciiLower(b)) {
			t.Fatalf("fileName(%q) = %q, fileName(%q) = %q", a, na, b, nb)
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
