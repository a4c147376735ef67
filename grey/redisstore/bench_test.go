package redisstore

import (
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"smtpfs/grey"
	"smtpfs/test/testlib"
)

// The benchmarks run against a private redis-server on loopback, as the
// tests do: greylist decisions per second and their latency with the
// Redis store (a Lua script a Check), and the rate at which whitelisted
// clients are accepted with the Redis store and with the file store, at
// a million entries (both answer from a local index).

// benchStore opens a mirrored store on a fresh Redis for b.
func benchStore(b *testing.B, mirror bool) (*Store, *testlib.Redis) {
	r := testlib.NewRedis(b)
	s, err := Open(r.URL(0), Options{Mirror: mirror})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, r
}

// workers is how many sessions ask at once in the concurrent benchmarks.
const workers = 16

// BenchmarkCheckFirstSight is the Check of a new client, two recipients
// registered: the script's every step (whitelist candidates, sweep,
// bounds, two ZADDs), each client new, by one session and by 16 at once.
func BenchmarkCheckFirstSight(b *testing.B) {
	for _, sessions := range []int{1, workers} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			s, _ := benchStore(b, true)
			g := grey.New(s, nil)
			rcpts := []string{"example.org!bob", "example.org!carol"}
			var n atomic.Uint32
			testlib.Concurrently(b, sessions, "decisions/s", func(int) error {
				i := n.Add(1)
				if g.Check(local, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "", rcpts) {
					return fmt.Errorf("client %d passed", i)
				}
				return nil
			})
			if u := g.Unchecked(); u > 0 {
				b.Fatalf("%d Checks the store could not answer", u)
			}
		})
	}
}

// BenchmarkCheckGreylisted is the Check of clients retrying too soon, 16
// at once: two lookups, nothing written.
func BenchmarkCheckGreylisted(b *testing.B) {
	s, _ := benchStore(b, true)
	g := grey.New(s, nil)
	rcpts := []string{"example.org!bob", "example.org!carol"}
	clients := make([]netip.Addr, workers)
	for w := range clients {
		clients[w] = netip.AddrFrom4([4]byte{10, 9, 0, byte(w)})
		g.Check(local, clients[w], "", rcpts)
	}
	testlib.Concurrently(b, workers, "decisions/s", func(w int) error {
		if g.Check(local, clients[w], "", rcpts) {
			return fmt.Errorf("client %v passed", clients[w])
		}
		return nil
	})
	if u := g.Unchecked(); u > 0 {
		b.Fatalf("%d Checks the store could not answer", u)
	}
}

// BenchmarkCheckWhitelistedInRedis is the Check of a whitelisted client
// that the local index does not have (the smtpd program's store, or an
// entry appended elsewhere a moment ago): the script finds it in Redis's
// set, 16 at once.
func BenchmarkCheckWhitelistedInRedis(b *testing.B) {
	s, _ := benchStore(b, false)
	if err := s.Whitelist().Add("10.0.0.0/8\n"); err != nil {
		b.Fatal(err)
	}
	g := grey.New(s, nil)
	rcpts := []string{"example.org!bob"}
	testlib.Concurrently(b, workers, "decisions/s", func(w int) error {
		if !g.Check(local, netip.AddrFrom4([4]byte{10, 1, 2, byte(w)}), "", rcpts) {
			return fmt.Errorf("refused")
		}
		return nil
	})
}

// millionEntries is the whitelist of the accept benchmark: a million
// entries, half IPv4 (a fifth of them networks), half IPv6 (a third of
// them networks), a third with a name; and the addresses to look up, each
// inside an entry.
var millionEntries = sync.OnceValues(func() (string, []netip.Addr) {
	const n = 1_000_000
	r := rand.New(rand.NewPCG(7, 11))
	var b strings.Builder
	b.Grow(n * 40)
	b.WriteString("# generated for the benchmarks\n")
	var lookups []netip.Addr
	for i := range n {
		var p netip.Prefix
		if i%2 == 0 {
			bits := 32
			if r.IntN(5) == 0 {
				bits = 16 + r.IntN(15)
			}
			p, _ = netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}).Prefix(bits)
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
		b.WriteString(grey.FormatPrefix(p))
		if i%3 == 0 {
			fmt.Fprintf(&b, " mx%d.example.net", i)
		}
		b.WriteByte('\n')
		if i%250 == 0 {
			lookups = append(lookups, p.Addr())
		}
	}
	return b.String(), lookups
})

// BenchmarkAcceptWhitelisted is the rate at which the greylist accepts
// whitelisted clients, all cores asking, with a million entries in the
// file store (grey/whitelist) and in the Redis store (its local index,
// loaded from Redis). The README compares the two rates.
func BenchmarkAcceptWhitelisted(b *testing.B) {
	text, lookups := millionEntries()
	rcpts := []string{"example.org!bob"}
	run := func(b *testing.B, g *grey.Greylist) {
		var i atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !g.Check(local, lookups[i.Add(1)%uint64(len(lookups))], "", rcpts) {
					b.Error("a whitelisted client was refused")
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "accepts/s")
		b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
	}
	b.Run("file", func(b *testing.B) {
		root := b.TempDir()
		os.MkdirAll(filepath.Join(root, "grey"), 0o700)
		if err := os.WriteFile(filepath.Join(root, "grey", "whitelist"), []byte(text), 0o600); err != nil {
			b.Fatal(err)
		}
		g, err := grey.Open(root, log.New(discard{}, "", 0))
		if err != nil {
			b.Fatal(err)
		}
		run(b, g)
	})
	b.Run("redis", func(b *testing.B) {
		s, _ := benchStore(b, true)
		lines := strings.SplitAfter(text, "\n")
		start := time.Now()
		for len(lines) > 1 {
			part := lines[:min(20000, len(lines)-1)]
			lines = lines[len(part):]
			if err := addWithin(s, strings.Join(part, "")); err != nil {
				b.Fatal(err)
			}
		}
		stored := time.Since(start)
		start = time.Now()
		if err := s.Whitelist().Reload(); err != nil || s.Whitelist().Len() != 1_000_000 {
			b.Fatalf("index of %d entries: %v", s.Whitelist().Len(), err)
		}
		loaded := time.Since(start)
		g := grey.New(s, log.New(discard{}, "", 0))
		run(b, g)
		b.ReportMetric(stored.Seconds(), "store-s")
		b.ReportMetric(loaded.Seconds(), "load-s")
	})
}

// addWithin appends text, however long it takes: the benchmark's
// loading is not a session's.
func addWithin(s *Store, text string) error {
	var err error
	for range 3 {
		if err = s.Whitelist().Add(text); err == nil {
			return nil
		}
		<-s.Back()
	}
	return err
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
