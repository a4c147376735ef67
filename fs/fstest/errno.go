package fstest

import (
	"bytes"
	"syscall"
)

// errortab is plan9port's 9pfuse table (src/cmd/9pfuse/errstr.c at
// 59ab62e), entry for entry, so that tests can tell which errno a shell
// gets for an error of the tree under 9pfuse without running it.
var errortab = []struct {
	text string
	err  syscall.Errno
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
	{"no such", syscall.ENODEV},
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

// errmax is plan9port's ERRMAX: lib9pclient copies an Rerror into a
// buffer of this size (werrstr), so 9pfuse reads at most errmax-1 bytes.
const errmax = 128

// FuseErrno returns the errno plan9port's 9pfuse gives the process whose
// request failed with the 9P error text ename: that of the first entry of
// its table found anywhere in what a C string of ERRMAX bytes holds of the
// text (up to a NUL), ignoring ASCII case (cistrstr), else ERANGE ("who
// knows - be blatantly wrong").
func FuseErrno(ename string) syscall.Errno {
	e := []byte(ename)
	if i := bytes.IndexByte(e, 0); i >= 0 {
		e = e[:i]
	}
	if len(e) > errmax-1 {
		e = e[:errmax-1]
	}
	for i, c := range e {
		if 'A' <= c && c <= 'Z' {
			e[i] = c + 'a' - 'A'
		}
	}
	for _, t := range errortab {
		if bytes.Contains(e, []byte(t.text)) {
			return t.err
		}
	}
	return syscall.ERANGE
}
