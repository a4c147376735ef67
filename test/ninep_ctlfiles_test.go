package test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// TestNinepCtlFIFO: `tlscert` naming a FIFO, written to ctl through 9P,
// fails at once with an error that says why, and an SMTP session opened
// meanwhile is greeted at once: the files a verb names are read neither
// under the lock that sessions take nor without bound. (The daemon used
// to open the FIFO under that lock and wait for a writer; the test then
// finds it waiting, holds the FIFO open so that it goes on waiting in its
// read, and the session is never greeted.)
func TestNinepCtlFIFO(t *testing.T) {
	d := startMail(t, "")
	fifo := filepath.Join(t.TempDir(), "cert.pem")
	if err := syscall.Mkfifo(fifo, 0600); err != nil {
		t.Fatal(err)
	}
	var w *os.File // the FIFO's write end, once the daemon waits on it
	t.Cleanup(func() {
		if w != nil {
			w.Close() // the daemon's read ends, and it can stop
		}
	})
	fsys := fstest.Dial(t, d.NineP[0])
	before := fstest.Read(t, fsys, "ctl")
	done := make(chan error, 1)
	go func() { done <- fstest.Write(fsys, "ctl", plan9.OWRITE, "tlscert "+fifo+"\n") }()
	var ctlErr error
	answered := false
	testlib.WaitFor(t, 10*time.Second, "the ctl write to fail, or to wait on the FIFO", func() bool {
		select {
		case ctlErr = <-done:
			answered = true
			return true
		default:
		}
		// Opening the write end without waiting works only while a
		// reader has the FIFO open: the daemon, waiting on it.
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		w = f
		return err == nil
	})

	r := dialRaw(t, d.SMTP[0], "")
	r.C.SetReadDeadline(time.Now().Add(10 * time.Second))
	r.Expect("220 ")
	r.Send("QUIT")
	r.Expect("221 ")

	if !answered {
		select {
		case ctlErr = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ctl tlscert of a FIFO: no answer after 10s")
		}
	}
	want := "invalid ctl line 1 'tlscert " + fifo + "': invalid tlscert '" + fifo + "': not a regular file"
	if ctlErr == nil || ctlErr.Error() != want {
		t.Errorf("ctl tlscert of a FIFO: %v, want %s", ctlErr, want)
	}
	if got := fstest.Read(t, fsys, "ctl"); got != before {
		t.Errorf("the refused write changed ctl:\n%s", got)
	}
	// A directory is no certificate either, and says so.
	dir := t.TempDir()
	err := fstest.Write(fsys, "ctl", plan9.OWRITE, "tlscert "+dir+"\n")
	if want := "invalid tlscert '" + dir + "': not a regular file"; err == nil || err.Error() != "invalid ctl line 1 'tlscert "+dir+"': "+want {
		t.Errorf("ctl tlscert of a directory: %v", err)
	}
}
