package grey

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchEntries is the whitelist size the performance target is set for.
const benchEntries = 1_000_000

// bigWhitelist is a whitelist of n entries as operators have them: half
// IPv4, half IPv6; mostly single hosts (what the greylist appends), some
// networks (/16 to /30, /32 to /64), a third with a host name; and
// addresses to look up, half of them inside an entry.
func bigWhitelist(n int) (text string, lookups []netip.Addr) {
	r := rand.New(rand.NewPCG(7, 11))
	var b strings.Builder
	b.Grow(n * 40)
	b.WriteString("# generated for the benchmarks\n")
	for i := range n {
		var p netip.Prefix
		if i%2 == 0 {
			a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
			bits := 32
			if r.IntN(5) == 0 {
				bits = 16 + r.IntN(15)
			}
			p, _ = a.Prefix(bits)
		} else {
			var x [16]byte
			x[0], x[1] = 0x20, byte(r.IntN(4))
			for j := 2; j < 16; j++ {
				x[j] = byte(r.IntN(256))
			}
			bits := 128
			if r.IntN(10) < 3 {
				bits = 32 + r.IntN(33)
			}
			p, _ = netip.AddrFrom16(x).Prefix(bits)
		}
		b.WriteString(formatPrefix(p))
		if i%3 == 0 {
			fmt.Fprintf(&b, " mx%d.example.net", i)
		}
		b.WriteByte('\n')
		if i%(n/min(n, 4096)) == 0 {
			lookups = append(lookups, p.Addr(), randAddrLike(r, p.Addr()))
		}
	}
	return b.String(), lookups
}

// randAddrLike is a random address of a's family.
func randAddrLike(r *rand.Rand, a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	var x [16]byte
	x[0] = 0x20
	for j := 1; j < 16; j++ {
		x[j] = byte(r.IntN(256))
	}
	return netip.AddrFrom16(x)
}

var bigOnce = sync.OnceValues(func() (string, []netip.Addr) { return bigWhitelist(benchEntries) })

func writeBig(b *testing.B) (path string, lookups []netip.Addr) {
	text, lookups := bigOnce()
	path = filepath.Join(b.TempDir(), "whitelist")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	return path, lookups
}

// BenchmarkWhitelistContains is the lookup the greylist makes for every
// message: a million entries, half the lookups found.
func BenchmarkWhitelistContains(b *testing.B) {
	path, lookups := writeBig(b)
	w, err := OpenWhitelist(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	found := 0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if w.Contains(lookups[i%len(lookups)]) {
			found++
		}
	}
	if found == 0 {
		b.Fatal("nothing found")
	}
	x := w.idx.Load()
	b.ReportMetric(float64(x.base.bytes()+x.recent.bytes()), "index-bytes")
	b.ReportMetric(float64(x.base.ranges()+x.recent.ranges()), "ranges")
	b.ReportMetric(float64(w.Len()), "entries")
}

// BenchmarkWhitelistLoad reads and indexes a million-entry file.
func BenchmarkWhitelistLoad(b *testing.B) {
	path, _ := writeBig(b)
	b.ReportAllocs()
	for b.Loop() {
		w, err := OpenWhitelist(path, nil)
		if err != nil || w.Len() != benchEntries {
			b.Fatalf("%v, %d entries", err, w.Len())
		}
	}
}

// BenchmarkWhitelistAdd appends one entry to a million-entry whitelist,
// synced, as a greylist pass does.
func BenchmarkWhitelistAdd(b *testing.B) {
	path, _ := writeBig(b)
	w, err := OpenWhitelist(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := w.Add(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)); err != nil {
			b.Fatal(err)
		}
	}
}

func benchGreylist(b *testing.B, whitelist string) (*Greylist, *clock) {
	root := b.TempDir()
	if whitelist != "" {
		if err := os.MkdirAll(filepath.Join(root, "grey"), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "grey", "whitelist"), []byte(whitelist), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	g, err := Open(root, nil)
	if err != nil {
		b.Fatal(err)
	}
	clk := newClock()
	g.Now = clk.Now
	return g, clk
}

// BenchmarkCheckWhitelisted is Check for a client on a million-entry
// whitelist.
func BenchmarkCheckWhitelisted(b *testing.B) {
	text, lookups := bigOnce()
	g, _ := benchGreylist(b, text)
	rcpts := []string{"example.org!bob", "example.org!carol"}
	b.ReportAllocs()
	for b.Loop() {
		if !g.Check(local, lookups[0], "example.com!alice", rcpts) {
			b.Fatal("refused")
		}
	}
}

// BenchmarkCheckGreylisted is Check for a client that retries too soon:
// a whitelist miss and a stat per recipient.
func BenchmarkCheckGreylisted(b *testing.B) {
	g, _ := benchGreylist(b, "")
	rcpts := []string{"example.org!bob", "example.org!carol"}
	g.Check(local, client, "example.com!alice", rcpts)
	b.ReportAllocs()
	for b.Loop() {
		if g.Check(local, client, "example.com!alice", rcpts) {
			b.Fatal("passed")
		}
	}
}

// BenchmarkCheckFirstSight is Check for a new client: a triplet file made
// for each recipient.
func BenchmarkCheckFirstSight(b *testing.B) {
	g, _ := benchGreylist(b, "")
	rcpts := []string{"example.org!bob", "example.org!carol"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		remote := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if g.Check(local, remote, "example.com!alice", rcpts) {
			b.Fatal("passed")
		}
	}
}

// BenchmarkExpire walks 10,000 triplets, none of them old.
func BenchmarkExpire(b *testing.B) {
	g, _ := benchGreylist(b, "")
	for i := range 5000 {
		g.Check(local, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "", []string{"a", "b"})
	}
	b.ResetTimer()
	for b.Loop() {
		if _, kept, err := g.Expire(context.Background()); kept != 10000 || err != nil {
			b.Fatal(kept, err)
		}
	}
}

// BenchmarkClassify looks up a lib/blocked of 100,000 networks and 30,000
// sender patterns, for senders that match a pattern or none.
func BenchmarkClassify(b *testing.B) {
	text, lookups := bigWhitelist(100_000)
	var f strings.Builder
	for i, line := range strings.Split(text, "\n") {
		if addr, _, _ := strings.Cut(line, " "); addr != "" && addr[0] != '#' {
			fmt.Fprintf(&f, "%s %s\n", []string{"block", "deny", "dial", "delay"}[i%4], addr)
		}
	}
	for i := range 10_000 {
		fmt.Fprintf(&f, "*block spam%d.example *.bulk%d.example !user%d*\n", i, i, i)
	}
	path := filepath.Join(b.TempDir(), "blocked")
	if err := os.WriteFile(path, []byte(f.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	bl := NewBlocked(path, nil)
	start := time.Now()
	if err := bl.Reload(); err != nil {
		b.Fatal(err)
	}
	load := time.Since(start)
	b.ReportAllocs()
	senders := []string{"mail.bulk9.example!someone", "example.com!user42-list", "relay.example!example.net!nobody"}
	for i := 0; b.Loop(); i++ {
		bl.Classify(lookups[i%len(lookups)], senders[i%len(senders)])
	}
	b.ReportMetric(float64(load.Milliseconds()), "load-ms")
}
