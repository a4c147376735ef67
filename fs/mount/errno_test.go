package mount

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"smtpfs/fs/mount/p9c"
)

// TestErrno: the daemon's error texts get 9pfuse's errnos, and a word
// inside quotes, which is the client's, does not choose.
func TestErrno(t *testing.T) {
	for _, tc := range []struct {
		text string
		want syscall.Errno
	}{
		{"invalid ctl line 1 'bogus on': unknown verb 'bogus'", syscall.EINVAL},
		{"invalid ctl line 1 'x busy': unknown verb 'x'", syscall.EINVAL},                // "busy" quoted
		{"invalid ctl line 1 'access denied''s': unknown verb 'access'", syscall.EINVAL}, // a doubled quote inside
		{"invalid whitelist entry 'x': not an address", syscall.EINVAL},                  // "entry" is ENOENT, last
		{"invalid ctl line 1 'delete nosuchid': not found: nosuchid", syscall.ENOENT},    // "not found" before "invalid"
		{"permission denied", syscall.EACCES},
		{"Permission Denied", syscall.EACCES},
		{"log busy: too many readers", syscall.EBUSY},
		{"line too long", syscall.E2BIG},
		{"message too long", syscall.E2BIG},
		{"interrupted", syscall.EINTR},
		{"temporary failure: 452 4.3.1 insufficient system storage", syscall.EAGAIN},
		{"file does not exist", syscall.ENOENT},
		{"file already exists", syscall.EEXIST},
		{"operation not permitted", syscall.EPERM},
		{"not a directory", syscall.ENOTDIR},
		{"is a directory", syscall.EISDIR},
		{"unknown fid", syscall.EIO},             // no word of the table
		{"'permission denied'", syscall.EACCES},  // nothing outside quotes: the whole text
		{"invalid line 'x busy", syscall.EINVAL}, // an unclosed quote runs to the end
	} {
		if got := Errno(tc.text); got != tc.want {
			t.Errorf("Errno(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
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
