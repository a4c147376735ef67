package test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// TestQueueMinFree: while the mail root's file system has less free space
// than minfree, a message written to the 9P queue file fails the write
// that completes its header, as a temporary failure; with minfree lowered
// through ctl, it is queued.
func TestQueueMinFree(t *testing.T) {
	d := startNinep(t, "minfree 1024g\nsmarthost tcp!127.0.0.1!1\n")
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Root, &st); err != nil || int64(st.Bavail)*int64(st.Bsize) >= 1<<40 {
		t.Skipf("the test file system has a terabyte free or more (%v)", err)
	}
	msg := "From: glenda@localhost\nTo: rob@example.net\n\nhello\n"
	for _, ds := range d.NineP {
		fsys := fstest.Dial(t, ds)
		err := fstest.Write(fsys, "queue", plan9.OWRITE, msg)
		if want := "temporary failure: 452 4.3.1 insufficient system storage"; ninepErr(err) != want {
			t.Errorf("%s: queue with no room: %q, want %q", ds, ninepErr(err), want)
		}
		if q := fstest.Read(t, fsys, "queue"); q != "" {
			t.Errorf("%s: queued with no room: %q", ds, q)
		}
	}
	testlib.WaitFor(t, 10*time.Second, "the refusal in the log", func() bool {
		return strings.Contains(readLog(d, "runq"), "runq: refused a message: ") &&
			strings.Contains(readLog(d, "9p"), "9p: queue: message not queued: 452 4.3.1 insufficient system storage")
	})

	fsys := fstest.Dial(t, d.NineP[0])
	if err := fstest.Write(fsys, "ctl", plan9.OWRITE, "minfree 1m\n"); err != nil {
		t.Fatal(err)
	}
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, msg); err != nil {
		t.Errorf("queue with room: %v", err)
	}
	if q := fstest.Read(t, fsys, "queue"); !strings.Contains(q, " glenda@localhost rob@example.net ") {
		t.Errorf("queue after minfree 1m: %q", q)
	}
}

// readLog returns the daemon's log file of facility ("runq", "9p").
func readLog(d *Daemon, facility string) string {
	b, _ := os.ReadFile(filepath.Join(d.Root, "log", facility))
	return string(b)
}
