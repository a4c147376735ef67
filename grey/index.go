package grey

import (
	"net/netip"
	"sync/atomic"
)

// An Index is the whitelist's index for a store that keeps the lines
// elsewhere (grey/redisstore): the sorted, merged ranges Whitelist uses,
// answering Contains without locks or allocation, grown by appending
// lines and replaced whole when the lines are rewritten. Its zero value
// is empty and ready. Contains is safe for concurrent use with one
// writer calling Append or Replace.
type Index struct {
	idx atomic.Pointer[index]
}

// An IndexBuilder gathers the entries of whitelist lines for an Index.
// Its zero value is ready.
type IndexBuilder struct {
	s       set
	entries int
}

// Add reads one whitelist line: an entry is added; a comment or blank
// line is nothing; a malformed line is skipped, and the error says why.
func (b *IndexBuilder) Add(line string) error {
	p, ok, err := parseEntry(line)
	if ok {
		b.s.add(p)
		b.entries++
	}
	return err
}

// Entries returns how many entries were added.
func (b *IndexBuilder) Entries() int { return b.entries }

// Contains reports whether ip is covered by an entry; IPv4-mapped IPv6
// addresses are taken as IPv4.
func (x *Index) Contains(ip netip.Addr) bool {
	i := x.idx.Load()
	return i != nil && ip.IsValid() && i.contains(canon(ip))
}

// Len returns the number of entries indexed.
func (x *Index) Len() int {
	if i := x.idx.Load(); i != nil {
		return i.entries
	}
	return 0
}

// Append adds the entries of b to the index.
func (x *Index) Append(b *IndexBuilder) {
	b.s.normalize()
	old := x.idx.Load()
	if old == nil {
		old = &index{}
	}
	x.idx.Store(old.with(b.s, b.entries))
}

// Replace makes the index hold the entries of b alone.
func (x *Index) Replace(b *IndexBuilder) {
	b.s.normalize()
	x.idx.Store(&index{base: b.s, entries: b.entries})
}

// FormatPrefix renders p as the whitelist writes it: a bare address for
// one host.
func FormatPrefix(p netip.Prefix) string { return formatPrefix(p) }
