package grey

import (
	"cmp"
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// ParsePrefix parses an address or network as the whitelist and lib/blocked
// write it, in the grammar of smtpd.conf's ournets: a.b.c.d/n or an IPv6
// prefix; a bare address is that one host (as in 9front, not the /24 of
// Bell Labs); a.b and a.b.c mean the /16 and /24 networks, as the smtpd(6)
// man page says. IPv4-mapped IPv6 forms are taken as IPv4. Host bits are
// cleared: 192.0.2.7/24 is 192.0.2.0/24.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errBadAddr
		}
		return normPrefix(p), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, errBadAddr
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	if n := strings.Count(s, "."); n == 1 || n == 2 {
		a, err := netip.ParseAddr(s + strings.Repeat(".0", 3-n))
		if err == nil && a.Is4() {
			return netip.PrefixFrom(a, 8*(n+1)), nil
		}
	}
	return netip.Prefix{}, errBadAddr
}

var errBadAddr = errors.New("not an address or network")

// formatPrefix renders p as ParsePrefix reads it: a bare address for one host.
func formatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// The index is a set of addresses kept as sorted, non-overlapping,
// non-adjacent ranges, one slice per address family, searched by bisection.
// Overlapping and nested entries are merged when the index is built, so
// every address inside any entry is found (upas's ratfs missed addresses
// under overlapping blocks, upas.md §9 item 18). A range costs 8 bytes for
// IPv4 and 32 for IPv6, plus a thirty-second of that for the summary that
// guides the search (see set); 1,000,000 entries are at most 33 MB.

// v4 and v6 are addresses as integers, so that ranges compare cheaply.
type v4 uint32

type v6 struct{ hi, lo uint64 }

// point is what the range code needs of an address type.
type point[T any] interface {
	comparable
	cmp(T) int
	succ() (T, bool) // the next address, false after the last one
}

func (a v4) cmp(b v4) int { return cmp.Compare(a, b) }

func (a v4) succ() (v4, bool) { return a + 1, a != math.MaxUint32 }

func (a v6) cmp(b v6) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a v6) succ() (v6, bool) {
	switch {
	case a.lo != math.MaxUint64:
		return v6{a.hi, a.lo + 1}, true
	case a.hi != math.MaxUint64:
		return v6{a.hi + 1, 0}, true
	}
	return a, false
}

// span is the closed range [lo, hi].
type span[T point[T]] struct{ lo, hi T }

func to4(a netip.Addr) v4 {
	b := a.As4()
	return v4(binary.BigEndian.Uint32(b[:]))
}

func to6(a netip.Addr) v6 {
	b := a.As16()
	return v6{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// span4 and span6 give the range of addresses in p, which is masked.
func span4(p netip.Prefix) span[v4] {
	lo := to4(p.Addr())
	return span[v4]{lo, lo | v4(math.MaxUint32>>p.Bits())}
}

func span6(p netip.Prefix) span[v6] {
	lo := to6(p.Addr())
	hi := lo
	if b := p.Bits(); b < 64 {
		hi.hi |= math.MaxUint64 >> b
		hi.lo = math.MaxUint64
	} else {
		hi.lo |= math.MaxUint64 >> (b - 64)
	}
	return span[v6]{lo, hi}
}

// normalize sorts s and merges overlapping and adjacent ranges, in place,
// then gives back the room merging freed, if it is worth a copy: the
// result is kept for as long as the index.
func normalize[T point[T]](s []span[T]) []span[T] {
	slices.SortFunc(s, func(a, b span[T]) int { return a.lo.cmp(b.lo) })
	s = coalesce(s)
	if cap(s) > len(s)+len(s)/8+64 {
		s = slices.Clone(s)
	}
	return s
}

// coalesce merges overlapping and adjacent ranges of s, which is sorted by
// lo, in place.
func coalesce[T point[T]](s []span[T]) []span[T] {
	out := s[:0]
	for _, r := range s {
		if n := len(out); n > 0 {
			last := &out[n-1]
			next, ok := last.hi.succ()
			if !ok || r.lo.cmp(next) <= 0 {
				if r.hi.cmp(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// union returns the normalized union of the normalized a and b, in a new
// slice: linear, so adding to a large index costs one copy.
func union[T point[T]](a, b []span[T]) []span[T] {
	out := make([]span[T], 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || len(a) > 0 && a[0].lo.cmp(b[0].lo) <= 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return coalesce(out)
}

// A set is an immutable set of addresses, both families: the ranges,
// and a summary of them, every fanout-th range's start. The summary (55
// KB for half a million IPv4 ranges, 220 KB for as many IPv6 ones) stays
// in the processor's cache from one lookup to the next while the ranges
// do not, so a lookup costs a few cache misses in the block of ranges its
// summary key picks, not one for each of twenty probes.
type set struct {
	a4 []span[v4]
	a6 []span[v6]
	k4 []v4 // a4[i*fanout].lo
	k6 []v6 // a6[i*fanout].lo
}

const fanout = 32

// find4 and find6 report whether x lies in one of the ranges of s, whose
// summary is keys: the last key at or below x picks a block of fanout
// ranges, and in it the last range starting at or below x must also end
// at or above x. They are written out for each type because they are the
// hot path.
func find4(s []span[v4], keys []v4, x v4) bool {
	i, j := 0, len(keys)
	for i < j {
		h := int(uint(i+j) >> 1)
		if keys[h] <= x {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == 0 {
		return false
	}
	blk := s[(i-1)*fanout : min(i*fanout, len(s))]
	i, j = 0, len(blk)
	for i < j {
		h := int(uint(i+j) >> 1)
		if blk[h].lo <= x {
			i = h + 1
		} else {
			j = h
		}
	}
	return i > 0 && x <= blk[i-1].hi
}

func find6(s []span[v6], keys []v6, x v6) bool {
	i, j := 0, len(keys)
	for i < j {
		h := int(uint(i+j) >> 1)
		if le6(keys[h], x) {
			i = h + 1
		} else {
			j = h
		}
	}
	if i == 0 {
		return false
	}
	blk := s[(i-1)*fanout : min(i*fanout, len(s))]
	i, j = 0, len(blk)
	for i < j {
		h := int(uint(i+j) >> 1)
		if le6(blk[h].lo, x) {
			i = h + 1
		} else {
			j = h
		}
	}
	return i > 0 && le6(x, blk[i-1].hi)
}

func le6(a, b v6) bool { return a.hi < b.hi || a.hi == b.hi && a.lo <= b.lo }

// summary returns the start of every fanout-th range of s.
func summary[T point[T]](s []span[T]) []T {
	k := make([]T, 0, (len(s)+fanout-1)/fanout)
	for i := 0; i < len(s); i += fanout {
		k = append(k, s[i].lo)
	}
	return k
}

// add appends p, which is masked, to s. Callers add everything, then
// normalize once.
func (s *set) add(p netip.Prefix) {
	if p.Addr().Is4() {
		s.a4 = append(s.a4, span4(p))
	} else {
		s.a6 = append(s.a6, span6(p))
	}
}

// normalize makes s searchable: sorted, merged, summarized.
func (s *set) normalize() {
	s.a4, s.a6 = normalize(s.a4), normalize(s.a6)
	s.k4, s.k6 = summary(s.a4), summary(s.a6)
}

func (s *set) contains(ip netip.Addr) bool {
	if ip.Is4() {
		return find4(s.a4, s.k4, to4(ip))
	}
	return find6(s.a6, s.k6, to6(ip))
}

// covers reports whether all of p (masked) is in s.
func (s *set) covers(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return covers(s.a4, span4(p))
	}
	return covers(s.a6, span6(p))
}

// covers reports whether one range of s holds all of r: the last range
// starting at or below r.lo must end at or above r.hi.
func covers[T point[T]](s []span[T], r span[T]) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].lo.cmp(r.lo) > 0 })
	return i > 0 && s[i-1].hi.cmp(r.hi) >= 0
}

func (s *set) ranges() int { return len(s.a4) + len(s.a6) }

func (s *set) bytes() int { return 8*cap(s.a4) + 32*cap(s.a6) + 4*cap(s.k4) + 16*cap(s.k6) }

func unionSet(a, b set) set {
	u := set{a4: union(a.a4, b.a4), a6: union(a.a6, b.a6)}
	u.k4, u.k6 = summary(u.a4), summary(u.a6)
	return u
}

// An index is what a whitelist or a lib/blocked verb answers from: a large
// base set and a small set of recent additions, so that adding one entry
// copies the small set, not the large one. When the recent set grows past
// recentMax ranges it is merged into the base. An index is never changed
// once built; a new one replaces it.
type index struct {
	base, recent set
	entries      int // entries read, before merging
}

const recentMax = 4096

// with returns an index that also holds s (normalized), made of n entries.
func (x *index) with(s set, n int) *index {
	nx := &index{base: x.base, recent: unionSet(x.recent, s), entries: x.entries + n}
	if nx.recent.ranges() > recentMax {
		nx.base, nx.recent = unionSet(nx.base, nx.recent), set{}
	}
	return nx
}

// covers reports whether all of p is in the base or in the recent set.
func (x *index) covers(p netip.Prefix) bool {
	return x.base.covers(p) || x.recent.covers(p)
}

// contains reports whether ip is in the index; ip must be unmapped and
// have no zone. It does not allocate.
func (x *index) contains(ip netip.Addr) bool {
	return x.base.contains(ip) || x.recent.contains(ip)
}

// canon is ip as the index stores it: IPv4-mapped addresses as IPv4,
// without an IPv6 zone.
func canon(ip netip.Addr) netip.Addr { return ip.Unmap().WithZone("") }
