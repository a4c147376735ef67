package conf

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// within runs f and fails the test if it has not returned after 10 s, as
// a read that waits on a FIFO would not; the FIFO is then opened for
// writing to let such a read go, so that the test ends.
func within(t *testing.T, fifo string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Errorf("still reading after 10s")
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		return <-done
	}
}

// badFiles makes what a name may point at besides a file to read: a FIFO
// no one writes, a link to /dev/zero, a directory, a (sparse) file of 64
// MiB.
func badFiles(t *testing.T) (dir, fifo, zero, huge string) {
	dir = t.TempDir()
	fifo, zero, huge = filepath.Join(dir, "fifo"), filepath.Join(dir, "zero"), filepath.Join(dir, "huge")
	if err := syscall.Mkfifo(fifo, 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(huge, nil, 0600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 64<<20); err != nil {
		t.Fatal(err)
	}
	return dir, fifo, zero, huge
}

// TestTLSCertFiles: tlscert refuses at once, with an error that names the
// file and says why, a certificate or key that is a FIFO, /dev/zero, a
// link to it, a directory or a file too long; it never waits on a FIFO
// nor reads without end, and the configuration stays as it was.
func TestTLSCertFiles(t *testing.T) {
	dir, fifo, zero, huge := badFiles(t)
	good := writeCert(t, t.TempDir())
	notRegular, tooLarge := ": not a regular file", ": larger than 1048576 bytes"
	for _, tc := range []struct{ args, file, why string }{
		{fifo, fifo, notRegular},
		{"/dev/zero", "/dev/zero", notRegular},
		{zero, zero, notRegular},
		{dir, dir, notRegular},
		{huge, huge, tooLarge},
		{Quote(good) + " " + fifo, fifo, notRegular},
		{Quote(good) + " " + zero, zero, notRegular},
		{Quote(good) + " " + huge, huge, tooLarge},
		{"/nonexistent.pem", "/nonexistent.pem", ": no such file or directory"},
	} {
		orig := Default()
		var c *Config
		err := within(t, fifo, func() (err error) {
			c, _, err = Apply(orig, "ctl", "tlscert "+tc.args)
			return err
		})
		if want := "invalid tlscert " + quote(tc.file) + tc.why; err == nil || !strings.HasSuffix(err.Error(), ": "+want) {
			t.Errorf("tlscert %s: %v; want an error ending %q", tc.args, err, want)
		}
		if c != orig || c.TLSCert != nil {
			t.Errorf("tlscert %s changed the configuration", tc.args)
		}
	}
	// The good certificate still loads, its key beside it or in it.
	if c, _, err := Apply(Default(), "ctl", "tlscert "+Quote(good)+" "+Quote(good)); err != nil || c.TLSCert == nil {
		t.Errorf("tlscert of a good file: %v", err)
	}
}

// TestLoadFiles: a configuration file replaced by a FIFO, a link to
// /dev/zero or a file too long fails Load (the start, a reload) at once.
func TestLoadFiles(t *testing.T) {
	_, fifo, zero, huge := badFiles(t)
	for _, tc := range []struct{ file, why string }{
		{fifo, "not a regular file"},
		{zero, "not a regular file"},
		{huge, "larger than 1048576 bytes"},
	} {
		err := within(t, fifo, func() error { _, err := Load(tc.file, nil); return err })
		if want := "invalid " + tc.file + ": " + tc.why; err == nil || err.Error() != want {
			t.Errorf("Load(%s) = %v, want %s", tc.file, err, want)
		}
	}
}
