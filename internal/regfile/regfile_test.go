package regfile

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// within runs f and fails the test if it has not returned after 10 s: a
// read that waits on a FIFO never would. The FIFO is opened for writing
// to let such a read go, so that the test can end.
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

// TestRefused: a FIFO (with no writer), /dev/zero, a directory, a socket
// and a symbolic link to any of them are refused at once, as not regular
// files; a file longer than the bound as too large.
func TestRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, nil, 0644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 1<<30); err != nil { // sparse: 1 GiB of zeros
		t.Fatal(err)
	}
	for _, l := range [][2]string{{"zero", "/dev/zero"}, {"fifolink", fifo}, {"dirlink", dir}} {
		if err := os.Symlink(l[1], filepath.Join(dir, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		want error
	}{
		{fifo, ErrNotRegular},
		{"/dev/zero", ErrNotRegular},
		{filepath.Join(dir, "zero"), ErrNotRegular},
		{filepath.Join(dir, "fifolink"), ErrNotRegular},
		{filepath.Join(dir, "dirlink"), ErrNotRegular},
		{dir, ErrNotRegular},
		{huge, ErrTooLarge},
		{filepath.Join(dir, "nosuch"), fs.ErrNotExist},
	} {
		var b []byte
		err := within(t, fifo, func() (err error) { b, err = Read(tc.name, 1<<20); return err })
		if !errors.Is(err, tc.want) || b != nil {
			t.Errorf("Read(%s) = %d bytes, %v; want %v", tc.name, len(b), err, tc.want)
		}
	}
	// A socket cannot even be opened.
	if _, err := Read(sock, 1<<20); err == nil {
		t.Errorf("Read of a socket succeeded")
	}
}

// TestRead: a regular file is read whole up to the bound, through a link
// too, and a file that says it is empty but is not (as /proc files do) is
// held to the bound all the same.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("0123456789"), 0644); err != nil {
		t.Fatal(err)
	}
	os.Symlink(f, filepath.Join(dir, "link"))
	for _, tc := range []struct {
		name string
		max  int64
		want string
		err  error
	}{
		{f, 10, "0123456789", nil},
		{filepath.Join(dir, "link"), 100, "0123456789", nil},
		{f, 9, "", ErrTooLarge},
	} {
		b, err := Read(tc.name, tc.max)
		if string(b) != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Read(%s, %d) = %q, %v; want %q, %v", tc.name, tc.max, b, err, tc.want, tc.err)
		}
	}
	if _, err := os.Stat("/proc/self/status"); err == nil {
		if b, err := Read("/proc/self/status", 16); !errors.Is(err, ErrTooLarge) || b != nil {
			t.Errorf("Read of /proc/self/status bounded to 16 bytes: %q, %v", b, err)
		}
	}
	if err := Reason(&os.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}); err != fs.ErrNotExist {
		t.Errorf("Reason = %v", err)
	}
}
