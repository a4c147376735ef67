package testlib

import (
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it is true, and fails the
// test if it is still false after timeout. It is for state that changes
// behind an interface the test cannot wait on (a file appearing, a clunk
// arriving after the shell returned), never a substitute for a channel.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for d := time.Millisecond; !cond(); d = min(2*d, 100*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(d)
	}
}
