package grey

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"smtpfs/internal/regfile"
)

// within runs f and fails the test if it has not returned in 5 s: a FIFO
// opened for reading without O_NONBLOCK waits for a writer for ever.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s hung on a FIFO", what)
	}
}

// A whitelist or lib/blocked replaced by a FIFO is refused, not waited on:
// both are read from inside SMTP sessions.
func TestFIFOFiles(t *testing.T) {
	dir := t.TempDir()
	white := filepath.Join(dir, "whitelist")
	blocked := filepath.Join(dir, "blocked")
	for _, p := range []string{white, blocked} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
	}
	ip := netip.MustParseAddr("192.0.2.7")
	within(t, "OpenWhitelist", func() {
		w, err := OpenWhitelist(white, nil)
		if err == nil {
			if w.Contains(ip) {
				t.Error("a FIFO whitelisted 192.0.2.7")
			}
			if err := w.Add("192.0.2.7"); !errors.Is(err, regfile.ErrNotRegular) {
				t.Errorf("Add to a FIFO: %v, want %v", err, regfile.ErrNotRegular)
			}
		}
	})
	within(t, "Blocked.Classify", func() {
		b := NewBlocked(blocked, nil)
		if a := b.Classify(ip, "example.com!bob"); a != None {
			t.Errorf("Classify with a FIFO: %v, want none", a)
		}
		if err := b.Reload(); err == nil || !strings.Contains(err.Error(), regfile.ErrNotRegular.Error()) {
			t.Errorf("Reload of a FIFO: %v, want %q", err, regfile.ErrNotRegular)
		}
	})
}
