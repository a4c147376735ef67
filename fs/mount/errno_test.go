package mount

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"smtpfs/fs/fstest"
	"smtpfs/fs/mount/p9c"
)

// TestErrno: the daemon's error texts get 9pfuse's errnos: the first word
// of its table in what 9pfuse reads of the text, a word the daemon quotes
// from the client escaped ('\x62usy') and so not read.
func TestErrno(t *testing.T) {
	for _, tc := range []struct {
		text string
		want syscall.Errno
	}{
		{"invalid ctl line 1 'bogus on': unknown verb 'bogus'", syscall.EINVAL},
		{`invalid ctl line 1 'x \x62usy': unknown verb 'x'`, syscall.EINVAL},                   // "busy" quoted, escaped
		{`invalid ctl line 1 '\x61ccess denied''s': unknown verb '\x61ccess'`, syscall.EINVAL}, // a doubled quote inside
		{"invalid whitelist entry 'x': not an address", syscall.EINVAL},                        // "entry" is ENOENT, last
		{"invalid ctl line 1 'delete nosuchid': not found: nosuchid", syscall.ENOENT},          // "not found" before "invalid"
		{"not found: 'x busy'", syscall.ENOENT},                                                // the first word of the table, wherever it is
		{"permission denied", syscall.EACCES},
		{"Permission Denied", syscall.EACCES},
		{"log busy: too many readers", syscall.EBUSY},
		{"too many fids in use", syscall.EBUSY},
		{"line too long", syscall.E2BIG},
		{"message too long", syscall.E2BIG},
		{"interrupted", syscall.EINTR},
		{"temporary failure: 452 4.3.1 insufficient system storage", syscall.EAGAIN},
		{"i/o error: whitelist: not a regular file", syscall.EIO},
		{"file does not exist", syscall.ENOENT},
		{"file already exists", syscall.EEXIST},
		{"operation not permitted", syscall.EPERM},
		{"not a directory", syscall.ENOTDIR},
		{"is a directory", syscall.EISDIR},
		{"unknown fid for this file", syscall.EBADF},
		{"unknown fid", syscall.EIO}, // no word of the table: ERANGE under 9pfuse, so the daemon never says it
		{"unknown fid on this connection", syscall.EBADF},
		{"walk of an open fid not allowed", syscall.EBADF},
		{"internal i/o error", syscall.EIO},
		{"'permission denied'", syscall.EACCES},
		{"invalid: " + strings.Repeat("x", 200) + " busy", syscall.EINVAL}, // past what 9pfuse reads
		{strings.Repeat("x", 126) + "busy", syscall.EIO},
		{"invalid\x00 busy", syscall.EINVAL},
		{"x\x00 busy", syscall.EIO}, // a C string ends at its NUL
	} {
		if got := Errno(tc.text); got != tc.want {
			t.Errorf("Errno(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

// FuzzErrno: smtpfs mount gives the errno 9pfuse gives (fstest.FuseErrno,
// errstr.c's table as 9pfuse reads it) for every text, but EIO for its
// ERANGE.
func FuzzErrno(f *testing.F) {
	f.Add("invalid ctl line 1 'x busy': unknown verb 'x'")
	f.Add("not found: 'x busy'")
	f.Add(strings.Repeat("x", 126) + "busy")
	f.Fuzz(func(t *testing.T, text string) {
		want := fstest.FuseErrno(text)
		if want == syscall.ERANGE {
			want = syscall.EIO
		}
		if got := Errno(text); got != want {
			t.Fatalf("Errno(%q) = %v, 9pfuse gives %v", text, got, want)
		}
	})
}

// TestErrnoOfClient: what the 9P client returns becomes an errno.
func TestErrnoOfClient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{p9c.Error("permission denied"), syscall.EACCES},
		{fmt.Errorf("open: %w", p9c.Error("invalid x")), syscall.EINVAL},
		{p9c.ErrInterrupted, syscall.EINTR},
		{context.Canceled, syscall.EINTR},
		{p9c.ErrTooManyFids, syscall.ENFILE},
		{fmt.Errorf("9P connection lost: EOF"), syscall.EIO},
	} {
		if got := errno(tc.err); got != tc.want {
			t.Errorf("errno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
