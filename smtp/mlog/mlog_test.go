package mlog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLog(t *testing.T) {
	dir := t.TempDir()
	var tee bytes.Buffer
	l := New(filepath.Join(dir, "log"), &tee)
	l.Now = func() time.Time { return time.Date(2026, 11, 4, 9, 5, 7, 0, time.UTC) }
	l.Logger("smtpd").Printf("ehlo from %s as %s", "192.0.2.7", "evil\r\nNov 4 forged")
	l.Logger("smtp.fail").Print("no route")
	want := "Nov  4 09:05:07 smtpd: ehlo from 192.0.2.7 as evil\\x0d\\x0aNov 4 forged\n"
	got, err := os.ReadFile(filepath.Join(dir, "log", "smtpd"))
	if err != nil || string(got) != want {
		t.Errorf("smtpd file = %q, %v; want %q", got, err, want)
	}
	// The logs say who mails whom: the daemon's group may read them,
	// others not (the directory is made 0750, the files 0640).
	for name, mode := range map[string]os.FileMode{"log": 0750, "log/smtpd": 0640, "log/smtp.fail": 0640} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, mode)
		}
	}
	if !strings.HasPrefix(tee.String(), want) || !strings.HasSuffix(tee.String(), "smtp.fail: no route\n") {
		t.Errorf("tee = %q", tee.String())
	}
	// Rotation: after Reopen, lines go to a new file of the same name.
	os.Rename(filepath.Join(dir, "log", "smtpd"), filepath.Join(dir, "log", "smtpd.0"))
	l.Reopen()
	l.Logger("smtpd").Print("after")
	if got, _ := os.ReadFile(filepath.Join(dir, "log", "smtpd")); !strings.HasSuffix(string(got), "smtpd: after\n") {
		t.Errorf("after reopen: %q", got)
	}
	l.Close()
}

func TestLongAndConcurrent(t *testing.T) {
	var tee lockedBuf
	l := New("", &tee)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Logger("x").Print(strings.Repeat("a", 3*MaxLine))
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(tee.String(), "\n"), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d lines, want 8", len(lines))
	}
	for _, ln := range lines {
		if !strings.HasSuffix(ln, "...") || len(ln) > MaxLine+40 {
			t.Errorf("line not cut: %d bytes", len(ln))
		}
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *lockedBuf) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// TestTerminalEscapes: what a peer says reaches the log, and a terminal
// that shows it, with no control a terminal obeys: ESC sequences, C1
// controls (CSI is U+009B) and bytes that are not UTF-8 are escaped; tabs
// and printable UTF-8 stay.
func TestTerminalEscapes(t *testing.T) {
	var tee bytes.Buffer
	l := New("", &tee)
	l.Now = func() time.Time { return time.Date(2026, 11, 4, 9, 5, 7, 0, time.UTC) }
	l.Logger("smtp").Printf("reply %s", "550 \x1b[2J\u009b2J\x9b31m gr\u00fc\u00dfe\there\x07")
	want := "Nov  4 09:05:07 smtp: reply 550 \\x1b[2J\\u009b2J\\x9b31m gr\u00fc\u00dfe\there\\x07\n"
	if got := tee.String(); got != want {
		t.Errorf("logged %q, want %q", got, want)
	}
	// A cut in the middle of a character leaves no stray byte.
	tee.Reset()
	l.Logger("x").Print(strings.Repeat("a", MaxLine-1) + "\u00e9\u00e9")
	if got := tee.String(); !strings.HasSuffix(got, "a...\n") {
		t.Errorf("cut line ends %q", got[len(got)-10:])
	}
}
