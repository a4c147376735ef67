package test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// TestQueuePrivacy: what says who mails whom is private to the daemon's
// user: the queue, the greylist's triplets and whitelist, and the logs
// (the daemon's group may read those). A mail root made by an older
// smtpfs, with grey/ and log/ open to all, is closed at start.
func TestQueuePrivacy(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	for _, d := range []string{"lib", "grey", "log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(root, d), 0755)
	}
	// Deliveries go to a port where nobody listens: the message stays.
	if err := os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte("smarthost tcp!127.0.0.1!1\n"), 0644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, root, "-g")
	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Fatalf("first attempt: %q, want %q", got, greyRefusal)
	}
	fsys := fstest.Dial(t, d.NineP[0])
	if err := fstest.Write(fsys, "whitelist", plan9.OWRITE, "192.0.2.9\n"); err != nil {
		t.Fatal(err)
	}
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, "From: glenda@localhost\nTo: rob@example.net\n\nhello\n"); err != nil {
		t.Fatal(err)
	}
	var msg string
	testlib.WaitFor(t, 10*time.Second, "the message in the queue", func() bool {
		m, _ := filepath.Glob(filepath.Join(root, "queue", "*.msg"))
		if len(m) == 1 {
			msg = m[0]
		}
		return msg != ""
	})
	for name, mode := range map[string]os.FileMode{
		"grey": 0700, "grey/tmp": 0700, "grey/tmp/127.0.0.1/127.0.0.5": 0700,
		"grey/tmp/127.0.0.1/127.0.0.5/bob@localhost": 0600, "grey/whitelist": 0600,
		"log": 0750, "log/smtpd": 0640, "log/9p": 0640,
		"queue": 0700, msg[len(root)+1:]: 0600, msg[len(root)+1:len(msg)-4] + ".env": 0600,
	} {
		if fi, err := os.Stat(filepath.Join(root, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, mode)
		}
	}
}
