package authfail

import (
	"net/netip"
	"testing"
	"time"
)

// TestMemoryForgetsStaleFirst: when the memory is full, the clients whose
// window is over are forgotten first, and the locked-out ones last.
func TestMemoryForgetsStaleFirst(t *testing.T) {
	var l Memory
	locked := client("192.0.2.1")
	for range Max {
		l.Failed(locked, t0)
	}
	for i := range memClients - 1 { // full, with the locked-out client
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Failed(client(ip.String()), t0)
	}
	later := t0.Add(Window + time.Second)
	l.Failed(client("192.0.2.2"), later)
	if len(l.m) != 2 {
		t.Errorf("%d clients remembered, want the locked-out one and the new one", len(l.m))
	}
	if ok, _ := l.Locked(locked, later); !ok {
		t.Errorf("the locked-out client was forgotten")
	}
}
