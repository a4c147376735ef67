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
// its errors for that table (README, "Errors a shell sees"), so that a
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

// Errno returns the errno for the text of a 9P error. The table is looked
// up first in the text outside single quotes, where smtpfs's errors show
// what the client sent ('bogus on'), so that a word of the client's cannot
// choose the errno; then in the whole text. A text that holds no word of
// the table is EIO (9pfuse says ERANGE, "Numerical result out of range").
func Errno(text string) syscall.Errno {
	for _, s := range []string{unquoted(text), text} {
		s = strings.ToLower(s)
		for _, w := range errWords {
			if strings.Contains(s, w.word) {
				return w.errno
			}
		}
	}
	return syscall.EIO
}

// unquoted returns text without its rc-quoted parts: from a quote to the
// next quote that is not doubled, or to the end.
func unquoted(text string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(text); i++ {
		switch {
		case text[i] != '\'':
			if !in {
				b.WriteByte(text[i])
			}
		case in && i+1 < len(text) && text[i+1] == '\'':
			i++ // '' inside quotes
		default:
			in = !in
			b.WriteByte(' ')
		}
	}
	return b.String()
}

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
