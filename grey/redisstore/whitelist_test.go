package redisstore

import (
	"context"
	"errors"
	"log"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/grey"
	"smtpfs/test/testlib"
)

// TestWhitelistShared: lines written at one host, comments and order
// kept, read the same at another; a bad line refuses the whole write;
// the writer's index has them when Add returns, the other's soon after;
// unwhitelist at one host takes the exact entry out at both.
func TestWhitelistShared(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	a, b := newHost(t, r, clk), newHost(t, r, clk)
	wa, wb := a.store.Whitelist(), b.store.Whitelist()
	text := "# partners\n192.0.2.0/24 partner.example\n\n198.51.100.7\tmx1.example.net\n2001:db8::/32\n"
	if err := wa.Add(text); err != nil {
		t.Fatal(err)
	}
	if !wa.Contains(netip.MustParseAddr("192.0.2.99")) || wa.Len() != 3 {
		t.Errorf("A's index after Add: %d entries", wa.Len())
	}
	err := wb.Add("203.0.113.1\n300.1.2.3 bad\n")
	if err == nil || !strings.Contains(err.Error(), "invalid whitelist entry '300.1.2.3 bad' (line 2)") {
		t.Errorf("a bad line: %v", err)
	}
	for _, w := range []grey.WhitelistStore{wa, wb} {
		if got, err := w.Bytes(); string(got) != text || err != nil {
			t.Errorf("Bytes = %q, %v; want %q", got, err, text)
		}
	}
	testlib.WaitFor(t, 10*time.Second, "B's index to follow", func() bool {
		return wb.Contains(netip.MustParseAddr("2001:db8:5::1")) && wb.Len() == 3
	})
	if wb.Contains(netip.MustParseAddr("203.0.113.1")) {
		t.Errorf("a refused write reached the index")
	}

	if n, err := wb.Remove(netip.MustParsePrefix("192.0.2.7/32")); n != 0 || err != nil {
		t.Errorf("Remove of an address inside an entry: %d, %v", n, err)
	}
	if n, err := wb.Remove(netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")); n != 2 || err != nil {
		t.Errorf("Remove = %d, %v; want 2", n, err)
	}
	if wb.Contains(netip.MustParseAddr("192.0.2.99")) {
		t.Errorf("B still has the removed entry")
	}
	testlib.WaitFor(t, 10*time.Second, "A's index to lose the removed entries", func() bool {
		return !wa.Contains(netip.MustParseAddr("192.0.2.99")) && wa.Len() == 1
	})
	want := "# partners\n\n198.51.100.7\tmx1.example.net\n"
	if got, _ := wa.Bytes(); string(got) != want {
		t.Errorf("after Remove: %q, want %q", got, want)
	}
	// The greylist no longer finds the removed network in Redis's set
	// either.
	a.check(netip.MustParseAddr("192.0.2.99"), []string{"bob"}, false, "registering")
}

// TestAddClient: the greylist's own additions are made once, whichever
// host passes the client, and not at all when a network already covers
// it.
func TestAddClient(t *testing.T) {
	r := testlib.NewRedis(t)
	clk := newClock()
	a, b := newHost(t, r, clk), newHost(t, r, clk)
	if err := a.store.Whitelist().Add("192.0.2.0/24 pool\n"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, h := range []*host{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.store.Whitelist().AddClient("198.51.100.9", netip.MustParsePrefix("198.51.100.9/32"))
			h.store.Whitelist().AddClient("192.0.2.9", netip.MustParsePrefix("192.0.2.9/32"))
		}()
	}
	wg.Wait()
	if got, _ := b.store.Whitelist().Bytes(); string(got) != "192.0.2.0/24 pool\n198.51.100.9\n" {
		t.Errorf("whitelist %q", got)
	}
}

// TestWhitelistTooLong: the size bound holds for the shared list as for
// the file, and an append over it changes nothing.
func TestWhitelistTooLong(t *testing.T) {
	r := testlib.NewRedis(t)
	h := newHost(t, r, newClock())
	w := h.store.Whitelist()
	if err := w.Add("192.0.2.1\n"); err != nil {
		t.Fatal(err)
	}
	rdb(t, r).Set(context.Background(), keyBytes, grey.MaxWhitelist-5, 0)
	if err := w.Add("192.0.2.2\n"); !errors.Is(err, grey.ErrTooLong) {
		t.Errorf("Add past the bound: %v", err)
	}
	if err := w.AddClient("192.0.2.3", netip.MustParsePrefix("192.0.2.3/32")); !errors.Is(err, grey.ErrTooLong) {
		t.Errorf("AddClient past the bound: %v", err)
	}
	if got, _ := w.Bytes(); string(got) != "192.0.2.1\n" {
		t.Errorf("whitelist %q", got)
	}
}

// TestImport: the first host's file goes in as it is (but for a repeated
// entry); the same text again adds nothing, even after an unwhitelist;
// another host's file adds only what the store lacks: new entries, new
// comments and the blank lines after them; malformed lines are skipped.
func TestImport(t *testing.T) {
	r := testlib.NewRedis(t)
	h := newHost(t, r, newClock())
	w := h.store.Shared()
	first := "# partners\n192.0.2.0/24 partner.example\n\n198.51.100.7 mx1\n198.51.100.7\nnot-an-address\n2001:db8::/32"
	if n, err := w.Import([]byte(first)); n != 5 || err != nil {
		t.Errorf("first import: %d, %v", n, err)
	}
	want := "# partners\n192.0.2.0/24 partner.example\n\n198.51.100.7 mx1\n2001:db8::/32\n"
	if got, _ := w.Bytes(); string(got) != want {
		t.Errorf("after the first import %q, want %q", got, want)
	}
	if _, err := w.Remove(netip.MustParsePrefix("198.51.100.7/32")); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Import([]byte(first)); n != -1 || err != nil {
		t.Errorf("the same text again: %d, %v; want -1 (done before)", n, err)
	}
	second := "# partners\n192.0.2.0/24 other name\n\n# host b's own\n203.0.113.0/24\n\n10.0.0.1\n"
	if n, err := w.Import([]byte(second)); n != 4 || err != nil {
		t.Errorf("second import: %d, %v; want 4", n, err)
	}
	want = "# partners\n192.0.2.0/24 partner.example\n\n2001:db8::/32\n# host b's own\n203.0.113.0/24\n\n10.0.0.1\n"
	if got, _ := w.Bytes(); string(got) != want {
		t.Errorf("after the second import %q, want %q", got, want)
	}
	testlib.WaitFor(t, 10*time.Second, "the index to have the imported entries", func() bool {
		return w.Contains(netip.MustParseAddr("10.0.0.1")) && w.Len() == 4
	})
}

// TestImportAtOpen: a store opened with Import imports the local
// whitelist once Redis answers, and says so; opened again with the same
// file, it adds nothing.
func TestImportAtOpen(t *testing.T) {
	r := testlib.NewRedis(t)
	r.Kill()
	var logs logbuf
	open := func() *Store {
		s, err := Open(r.URL(0), Options{Log: log.New(&logs, "", 0), Mirror: true,
			Import: func() ([]byte, error) { return []byte("# mine\n192.0.2.1\n"), nil }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := open()
	// Redis is down: the import waits for it.
	s.Whitelist().Contains(client)
	if err := s.Whitelist().Reload(); err == nil {
		t.Errorf("Reload with Redis down: no error")
	}
	r.Restart()
	testlib.WaitFor(t, 20*time.Second, "the import", func() bool {
		return strings.Contains(logs.String(), "imported the local whitelist: 2 lines added") && s.Whitelist().Len() == 1
	})
	s.Close()
	s2 := open()
	testlib.WaitFor(t, 10*time.Second, "the index", func() bool { return s2.Whitelist().Len() == 1 })
	if got, _ := s2.Whitelist().Bytes(); string(got) != "# mine\n192.0.2.1\n" {
		t.Errorf("whitelist %q after the second open", got)
	}
}

// TestDirect: a store without Mirror (the smtpd program's) has no index:
// the Check script finds whitelisted clients in Redis's set.
func TestDirect(t *testing.T) {
	r := testlib.NewRedis(t)
	s, err := Open(r.URL(0), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Whitelist().Add("192.0.2.0/25\n"); err != nil {
		t.Fatal(err)
	}
	var logs logbuf
	g := grey.New(s, log.New(&logs, "", 0))
	if s.Whitelist().Contains(client) {
		t.Errorf("a store without Mirror answered Contains")
	}
	if !g.Check(local, client, "", []string{"bob"}) || !strings.Contains(logs.String(), "192.0.2.7 whitelisted") {
		t.Errorf("not whitelisted through the script:\n%s", logs.String())
	}
	if g.Check(local, netip.MustParseAddr("192.0.2.200"), "", []string{"bob"}) {
		t.Errorf("192.0.2.200 passed")
	}
}

// TestWhitelistLarge: a list of many lines is read in chunks, whole and
// appended to, and Remove finds an entry among them.
func TestWhitelistLarge(t *testing.T) {
	r := testlib.NewRedis(t)
	a := newHost(t, r, newClock())
	const n = 3*chunk + 17
	if err := a.store.Whitelist().Add(fill(n)); err != nil {
		t.Fatal(err)
	}
	b := newHost(t, r, newClock())
	testlib.WaitFor(t, 20*time.Second, "B's index", func() bool { return b.store.Whitelist().Len() == n })
	if err := a.store.Whitelist().Add("192.0.2.1\n"); err != nil {
		t.Fatal(err)
	}
	testlib.WaitFor(t, 10*time.Second, "B's index to take the append", func() bool {
		return b.store.Whitelist().Contains(netip.MustParseAddr("192.0.2.1"))
	})
	if k, err := b.store.Whitelist().Remove(netip.MustParsePrefix("10.0.50.0/32")); k != 1 || err != nil {
		t.Errorf("Remove = %d, %v", k, err)
	}
	text, _ := a.store.Whitelist().Bytes()
	if lines := strings.Count(string(text), "\n"); lines != n || strings.Contains(string(text), "10.0.50.0 ") {
		t.Errorf("%d lines, want %d", lines, n)
	}
}
