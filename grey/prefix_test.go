package grey

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"192.0.2.7", "192.0.2.7/32"},
		{"192.0.2.7/24", "192.0.2.0/24"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"10.1", "10.1.0.0/16"},
		{"10.1.2", "10.1.2.0/24"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:DB8::/32", "2001:db8::/32"},
		{"2001:db8::1/64", "2001:db8::/64"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7/120", "192.0.2.0/24"},
		{"::/0", "::/0"},
		{"", ""},
		{"10", ""},
		{"1.2.3.4.5", ""},
		{"192.0.2.7/33", ""},
		{"192.0.2.7/", ""},
		{"fe80::1%eth0", ""},
		{"example.com", ""},
		{"1.2.3.256", ""},
		{"10.1/16/", ""},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParsePrefix(%q) = %v, want an error", tt.in, p)
		case tt.want != "" && err != nil:
			t.Errorf("ParsePrefix(%q): %v", tt.in, err)
		case tt.want != "" && p.String() != tt.want:
			t.Errorf("ParsePrefix(%q) = %v, want %s", tt.in, p, tt.want)
		}
	}
}

// randPrefix makes a prefix clustered in a small space, so that random
// prefixes overlap, nest and touch.
func randPrefix(r *rand.Rand) netip.Prefix {
	if r.IntN(2) == 0 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))})
		p, _ := a.Prefix(22 + r.IntN(11))
		return p
	}
	var b [16]byte
	b[0], b[1], b[14], b[15] = 0x20, 0x01, byte(r.IntN(4)), byte(r.IntN(256))
	p, _ := netip.AddrFrom16(b).Prefix(118 + r.IntN(11))
	return p
}

func randAddr(r *rand.Rand) netip.Addr {
	return randPrefix(r).Addr().Next().Next() // near edges, sometimes past them
}

func naive(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// TestIndexAgainstList checks the merged index, built at once and built
// entry by entry through the recent set, against a linear scan.
func TestIndexAgainstList(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		n := 1 + r.IntN(300)
		ps := make([]netip.Prefix, n)
		var whole set
		for i := range ps {
			ps[i] = randPrefix(r)
			whole.add(ps[i])
		}
		whole.normalize()
		built := &index{base: whole}
		grown := &index{}
		for _, p := range ps {
			var s set
			s.add(p)
			s.normalize()
			grown = grown.with(s, 1)
		}
		for range 2000 {
			a := randAddr(r)
			want := naive(ps, a)
			if got := built.contains(a); got != want {
				t.Fatalf("round %d: built index contains(%v) = %v, want %v", round, a, got, want)
			}
			if got := grown.contains(a); got != want {
				t.Fatalf("round %d: grown index contains(%v) = %v, want %v", round, a, got, want)
			}
		}
		for _, p := range ps {
			if !built.contains(p.Addr()) || !built.contains(p.Masked().Addr()) {
				t.Fatalf("round %d: %v not found", round, p)
			}
		}
	}
}

func TestIndexMergesIntoBase(t *testing.T) {
	x := &index{}
	for i := range recentMax + 10 {
		var s set
		s.add(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 32))
		s.normalize()
		x = x.with(s, 1)
	}
	if x.recent.ranges() > recentMax {
		t.Errorf("recent set has %d ranges, want at most %d", x.recent.ranges(), recentMax)
	}
	if x.entries != recentMax+10 {
		t.Errorf("entries = %d, want %d", x.entries, recentMax+10)
	}
	for _, a := range []string{"10.0.0.0", "10.16.9.0"} {
		if !x.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not found", a)
		}
	}
	if x.contains(netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("10.0.0.1 found")
	}
}

// TestCoalesceEdges covers ranges that touch the ends of the address space.
func TestCoalesceEdges(t *testing.T) {
	var s set
	for _, p := range []string{"255.255.255.255/32", "255.255.255.0/24", "0.0.0.0/32", "0.0.0.1/32", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "ffff:ffff:ffff:ffff::/64", "::/128", "::1/128", "::2/127"} {
		s.add(netip.MustParsePrefix(p))
	}
	s.normalize()
	if len(s.a4) != 2 || len(s.a6) != 2 {
		t.Errorf("ranges %v %v, want 2 of each", s.a4, s.a6)
	}
	for _, a := range []string{"255.255.255.255", "0.0.0.1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::3"} {
		if !s.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not found", a)
		}
	}
	for _, a := range []string{"0.0.0.2", "255.255.254.255", "::4", "ffff:ffff:ffff:fffe::"} {
		if s.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s found", a)
		}
	}
}

func TestEachLine(t *testing.T) {
	long := strings.Repeat("x", chunk+10)
	tests := []struct {
		name, in string
		lines    []string
		tail     string
	}{
		{"empty", "", nil, ""},
		{"lines", "a\nb\n", []string{"a", "b"}, ""},
		{"tail", "a\nb", []string{"a"}, "b"},
		{"blank", "\n\n", []string{"", ""}, ""},
		{"long", "a\n" + long + "\nb\n", []string{"a", "xxxxx", "b"}, ""},
		{"long tail", "a\n" + long, []string{"a", "xxxxx"}, ""},
	}
	for _, tt := range tests {
		var got []string
		var nums []int
		used, n, tail, err := eachLine(strings.NewReader(tt.in), int64(len(tt.in)), 7, 4, func(l string, n int) {
			got = append(got, l)
			nums = append(nums, n)
		})
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if strings.Join(got, "|") != strings.Join(tt.lines, "|") || tail != tt.tail {
			t.Errorf("%s: lines %q tail %q, want %q %q", tt.name, got, tail, tt.lines, tt.tail)
		}
		if n != strings.Count(tt.in, "\n") || used != int64(strings.LastIndexByte(tt.in, '\n')+1) && tt.name != "long tail" {
			t.Errorf("%s: used %d, %d lines", tt.name, used, n)
		}
		for i, k := range nums {
			if k != 7+i {
				t.Errorf("%s: line %d numbered %d", tt.name, i, k)
			}
		}
	}
}

// TestIndexDense scatters 10,000 random hosts over a /16 and a /112, so
// that ranges merge and the summary has hundreds of blocks, and checks
// every address of both, built at once and grown through the recent set.
func TestIndexDense(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	in := map[netip.Addr]bool{}
	var whole set
	grown := &index{}
	for range 10000 {
		var a netip.Addr
		if r.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(256)), byte(r.IntN(256))})
		} else {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(r.IntN(256)), 15: byte(r.IntN(256))})
		}
		in[a] = true
		p := netip.PrefixFrom(a, a.BitLen())
		whole.add(p)
		var s set
		s.add(p)
		s.normalize()
		grown = grown.with(s, 1)
	}
	whole.normalize()
	built := &index{base: whole}
	if len(whole.k4) < 100 || len(whole.k6) < 100 {
		t.Fatalf("only %d and %d blocks", len(whole.k4), len(whole.k6))
	}
	for i := range 1 << 16 {
		for _, a := range []netip.Addr{
			netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}),
		} {
			if built.contains(a) != in[a] || grown.contains(a) != in[a] {
				t.Fatalf("%v: built %v, grown %v, want %v", a, built.contains(a), grown.contains(a), in[a])
			}
		}
	}
	for _, a := range []string{"9.255.255.255", "10.1.0.0", "2001:db8::1:0", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"} {
		if built.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s found", a)
		}
	}
}
