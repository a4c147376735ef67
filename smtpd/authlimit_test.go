package smtpd

import (
	"net/netip"
	"testing"
	"time"
)

// TestAuthLimiterBounded: however many clients fail, the limiter remembers
// at most authClients, and forgets the clients it has locked out last.
func TestAuthLimiterBounded(t *testing.T) {
	var l authLimiter
	now := time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC)
	locked := clientNet(netip.MustParseAddr("192.0.2.1"))
	for range authFailMax {
		l.failed(locked, now)
	}
	for i := range 3 * authClients {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.failed(clientNet(ip), now)
		if len(l.m) > authClients {
			t.Fatalf("%d clients remembered, want at most %d", len(l.m), authClients)
		}
	}
	if !l.locked(locked, now) {
		t.Errorf("the locked-out client was forgotten for clients that failed once")
	}
	// Once their window is over, clients are forgotten first.
	later := now.Add(authFailWindow + time.Second)
	l.failed(clientNet(netip.MustParseAddr("192.0.2.2")), later)
	if len(l.m) > authClients || !l.locked(locked, later) {
		t.Errorf("%d clients, locked %v", len(l.m), l.locked(locked, later))
	}
}
