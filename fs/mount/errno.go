package mount

import (
	"context"
	"errors"
	"strings"
	"syscall"

	"smtpfs/fs/mount/p9c"
)

// errWords is how an error text becomes an errno: plan9port 9pfuse's
// table (src/cmd/9pfuse/errstr.c), in its order, the first word found in
// the text, in any case, wins. It is 9pfuse's on purpose: the daemon words
// its errors for that table (smtpfs(4), DIAGNOSTICS), so that a
// shell sees the same errno through either mount, and a test through this
// one checks what a 9pfuse user gets.
var errWords = []struct {
	word  string
	errno syscall.Errno
}{
	{"permitted", syscall.EPERM},
	{"permission", syscall.EACCES},
	{"access", syscall.EACCES},
	{"exists", syscall.EEXIST},
	{"exist", syscall.ENOENT},
	{"no such", syscall.ENOENT},
	{"not found", syscall.ENOENT},
	{"not implemented", syscall.ENOSYS},
	{"input/output", syscall.EIO},
	{"timeout", syscall.ETIMEDOUT},
	{"timed out", syscall.ETIMEDOUT},
	{"i/o", syscall.EIO},
	{"too long", syscall.E2BIG},
	{"interrupt", syscall.EINTR},
	{"bad file", syscall.EBADF},
	{" fid ", syscall.EBADF},
	{"temporar", syscall.EAGAIN},
	{"memory", syscall.ENOMEM},
	{"is a directory", syscall.EISDIR},
	{"directory", syscall.ENOTDIR},
	{"argument", syscall.EINVAL},
	{"pipe", syscall.EPIPE},
	{"in use", syscall.EBUSY},
	{"busy", syscall.EBUSY},
	{"illegal", syscall.EINVAL},
	{"invalid", syscall.EINVAL},
	{"read-only", syscall.EROFS},
	{"read only", syscall.EROFS},
	{"stale ", syscall.ESTALE},
	{"proto", syscall.EPROTO},
	{"entry", syscall.ENOENT},
}

// Errno returns the errno for the text of a 9P error, as 9pfuse reads
// it: the first word of the table found in what a C string of Plan 9's
// ERRMAX bytes holds of the text (up to a NUL, at most errmax-1 bytes),
// ignoring ASCII case. The daemon makes each error's text say its kind to
// that reading (smtpfs/fs, errno.go: a word of the table quoted from the
// client is escaped, 'x \x62usy'), so that a shell gets the same errno
// through either mount. A text that holds no word of the table is EIO
// (9pfuse says ERANGE, "Numerical result out of range").
func Errno(text string) syscall.Errno {
	if i := strings.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	b := []byte(text[:min(len(text), errmax-1)])
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	s := string(b)
	for _, w := range errWords {
		if strings.Contains(s, w.word) {
			return w.errno
		}
	}
	return syscall.EIO
}

// errmax is Plan 9's ERRMAX: plan9port's 9P client copies an Rerror
// into a buffer of that size, so 9pfuse reads errmax-1 bytes at most.
const errmax = 128

// errno turns what the client returned into the errno of a FUSE reply.
func errno(err error) syscall.Errno {
	var e p9c.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return Errno(string(e))
	case errors.Is(err, p9c.ErrInterrupted), errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, p9c.ErrTooManyFids):
		return syscall.ENFILE
	}
	return syscall.EIO
}
