package smtpd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMaildirNoProc: without /proc to link an unnamed file through, the
// Maildir does not write one it could not name: the first delivery goes
// through tmp/ and succeeds.
func TestMaildirNoProc(t *testing.T) {
	have := procFDs
	procFDs = func() bool { return false }
	defer func() { procFDs = have }()
	m := NewMaildir(t.TempDir())
	m.linkUnnamed = func(*os.File, string) error {
		t.Error("an unnamed file to link")
		return errNoUnnamed
	}
	if err := m.Deliver(context.Background(), "", []string{"bob"}, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(m.Dir, "bob", "new")); len(ents) != 1 || !m.named.Load() {
		t.Errorf("%d messages, through tmp/ from now on: %v; want 1, true", len(ents), m.named.Load())
	}
}
