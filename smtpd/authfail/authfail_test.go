package authfail

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// A limiter is what both stores answer (the server's AuthLimiter).
type limiter interface {
	Locked(client netip.Prefix, now time.Time) (bool, error)
	Failed(client netip.Prefix, now time.Time) (bool, error)
}

var t0 = time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC)

func client(s string) netip.Prefix {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p
	}
	a := netip.MustParseAddr(s)
	return netip.PrefixFrom(a, a.BitLen())
}

// stores returns a fresh store of each kind.
func stores(t *testing.T) map[string]limiter {
	return map[string]limiter{
		"memory": &Memory{},
		"file":   NewFile(filepath.Join(t.TempDir(), "grey", "authfail")),
	}
}

// TestPolicy: Max failures within Window lock a client out for Lockout,
// that client only; failures spread over more than Window do not add up.
func TestPolicy(t *testing.T) {
	for name, l := range stores(t) {
		t.Run(name, func(t *testing.T) {
			fail := func(c netip.Prefix, now time.Time) bool {
				t.Helper()
				locked, err := l.Failed(c, now)
				if err != nil {
					t.Fatal(err)
				}
				return locked
			}
			locked := func(c netip.Prefix, now time.Time) bool {
				t.Helper()
				locked, err := l.Locked(c, now)
				if err != nil {
					t.Fatal(err)
				}
				return locked
			}
			a, b, v6 := client("192.0.2.7"), client("192.0.2.8"), client("2001:db8::/64")
			for i := range Max - 1 {
				if fail(a, t0.Add(time.Duration(i)*time.Second)) {
					t.Fatalf("locked after %d failures", i+1)
				}
				fail(v6, t0)
			}
			if locked(a, t0.Add(time.Minute)) {
				t.Fatalf("locked after %d failures", Max-1)
			}
			if !fail(a, t0.Add(time.Minute)) || !locked(a, t0.Add(time.Minute)) {
				t.Fatalf("not locked after %d failures", Max)
			}
			if locked(b, t0.Add(time.Minute)) || locked(v6, t0.Add(time.Minute)) || locked(client("2001:db8::/128"), t0) {
				t.Errorf("others locked out too")
			}
			if !locked(a, t0.Add(time.Minute+Lockout-time.Second)) || locked(a, t0.Add(time.Minute+Lockout)) {
				t.Errorf("the lockout does not last %v", Lockout)
			}
			// The window: v6 failed Max-1 times at t0; one more after the
			// window is the first of a new one.
			if fail(v6, t0.Add(Window+time.Second)) || locked(v6, t0.Add(Window+time.Second)) {
				t.Errorf("failures more than %v apart added up", Window)
			}
		})
	}
}

// TestLockedOutSurvivesCrowd: however many clients fail, a locked-out
// client stays locked out, and the store stays bounded.
func TestLockedOutSurvivesCrowd(t *testing.T) {
	for name, l := range stores(t) {
		t.Run(name, func(t *testing.T) {
			a := client("192.0.2.1")
			for range Max {
				l.Failed(a, t0)
			}
			n := 2 * memClients
			if testing.Short() {
				n = memClients / 2
			}
			for i := range n {
				ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				if _, err := l.Failed(client(ip.String()), t0.Add(time.Second)); err != nil {
					t.Fatal(err)
				}
			}
			if locked, _ := l.Locked(a, t0.Add(time.Minute)); !locked {
				t.Errorf("the locked-out client was forgotten for %d clients that failed once", n)
			}
			switch l := l.(type) {
			case *Memory:
				if len(l.m) > memClients {
					t.Errorf("%d clients remembered, want at most %d", len(l.m), memClients)
				}
			case *File:
				if size := fileSizeOf(t, l); size != fileSize {
					t.Errorf("file of %d bytes, want %d", size, fileSize)
				}
			}
		})
	}
}
