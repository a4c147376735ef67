package fs

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
)

// errnos are the kinds as the errno 9pfuse gives.
var errnos = map[kind]syscall.Errno{
	kindInvalid: syscall.EINVAL, kindNotFound: syscall.ENOENT, kindTooLong: syscall.E2BIG,
	kindTemporary: syscall.EAGAIN, kindIO: syscall.EIO, kindPerm: syscall.EACCES,
	kindBusy: syscall.EBUSY, kindIntr: syscall.EINTR,
}

// TestFuseTable: the table the tree shields its errors with is 9pfuse's,
// as fstest.FuseErrno (the test's copy of errstr.c) reads it.
func TestFuseTable(t *testing.T) {
	for _, e := range fuseErrors {
		want, ok := errnos[e.errno]
		if got := fstest.FuseErrno(e.word); ok && got != want || !ok && got.Error() == "" {
			t.Errorf("%q: 9pfuse gives %v, the tree's table says %s", e.word, got, e.errno)
		}
	}
	for k, lead := range leads {
		if got := fstest.FuseErrno(lead + "x"); got != errnos[k] {
			t.Errorf("lead %q of %s: 9pfuse gives %v", lead, k, got)
		}
	}
}

// hostile are user texts that quote words of 9pfuse's table.
var hostile = []string{
	"no such verb", "greylist bogus", "Permission", "access denied", "file exists", "exist",
	"not found", "not implemented", "i/o", "INPUT/OUTPUT", "timeout", "too long", "interrupted",
	"bad file", "a fid here", "temporary", "memory", "is a directory", "directory", "argument",
	"pipe", "in use", "busy", "illegal", "invalid", "read-only", "stale nfs", "protocol", "entry",
	"nO sUcH\x00hidden", strings.Repeat("no such ", 40), "permitted permission access exists",
	"noo such", "\\x6eo such", "n\\x6f such",
}

// TestClientError: whatever the user text an error quotes, 9pfuse makes
// the errno of its kind of it, and the text still says what it said.
func TestClientError(t *testing.T) {
	type tc struct {
		err  error
		want syscall.Errno
	}
	var cases []tc
	for _, h := range hostile {
		q := "'" + h + "'"
		cases = append(cases,
			tc{fmt.Errorf("invalid ctl line 1 %s: unknown verb %s", q, q), syscall.EINVAL},
			tc{fmt.Errorf("invalid whitelist entry %s: not an address or network", q), syscall.EINVAL},
			tc{fmt.Errorf("usage: %s", h), syscall.EINVAL},
			tc{fmt.Errorf("invalid ctl line 1 %s: %w: %s", q, ErrNotFound, h), syscall.ENOENT},
			tc{fmt.Errorf("%w: whitelist: open /x/%s: no space left on device", ErrIO, h), syscall.EIO},
			tc{fmt.Errorf("%w: %s", ErrTooLong, h), syscall.E2BIG},
			tc{smtp.Replyf(452, "4.3.1", "insufficient system storage %s", h), syscall.EAGAIN},
		)
	}
	cases = append(cases,
		tc{errLineTooLong, syscall.E2BIG}, tc{errTooLong, syscall.E2BIG},
		tc{errors.New("no recipients"), syscall.EINVAL},
	)
	for _, c := range cases {
		got := clientError("ctl", c.err)
		if e := fstest.FuseErrno(got.Error()); e != c.want {
			t.Errorf("%q became %q: 9pfuse gives %v, want %v", c.err, got, e, c.want)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("%q: the error is not kept", c.err)
		}
		// Undo the escapes: the text is the backend's, with at most a
		// lead in front (escapes are not told from a user's own \x).
		if plain := unescape(got.Error()); !strings.Contains(c.err.Error(), `\`) && !strings.HasSuffix(plain, strings.ReplaceAll(c.err.Error(), "\x00", `\x00`)) {
			t.Errorf("%q became %q", c.err, got)
		}
	}
	for _, e := range []error{errPerm, errBusy, errInterrupted, errFid} {
		want := map[error]syscall.Errno{errPerm: syscall.EACCES, errBusy: syscall.EBUSY,
			errInterrupted: syscall.EINTR, errFid: syscall.EBADF}[e]
		if got := fstest.FuseErrno(e.Error()); got != want {
			t.Errorf("%q: 9pfuse gives %v, want %v", e, got, want)
		}
	}
	if got := clientError("ctl", errors.New("invalid ctl line 1 'greylist on': x")).Error(); got != "invalid ctl line 1 'greylist on': x" {
		t.Errorf("a text with nothing to escape became %q", got)
	}
	if got := clientError("ctl", errors.New("invalid ctl line 1 'no such verb': unknown verb 'no'")).Error(); got != `invalid ctl line 1 '\x6eo such verb': unknown verb 'no'` {
		t.Errorf("no such verb: %q", got)
	}
}

// unescape undoes the escapes of shield.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			var c byte
			if _, err := fmt.Sscanf(s[i+2:i+4], "%02x", &c); err == nil && ('a' <= c|0x20 && c|0x20 <= 'z') {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FuzzNinepText: any text, of any kind, becomes an error 9pfuse maps to
// that kind.
func FuzzNinepText(f *testing.F) {
	for _, h := range hostile {
		f.Add(h, uint8(0))
	}
	kinds := []kind{kindInvalid, kindNotFound, kindTooLong, kindTemporary, kindIO, kindPerm, kindBusy, kindIntr}
	f.Fuzz(func(t *testing.T, text string, k uint8) {
		kd := kinds[int(k)%len(kinds)]
		got := ninepText(kd, leads[kd], text)
		if e := fstest.FuseErrno(got); e != errnos[kd] {
			t.Fatalf("ninepText(%s, %q) = %q: 9pfuse gives %v", kd, text, got, e)
		}
	})
}

// TestWithKind: an error marked with a kind keeps its text, and gets the
// kind's lead only when it does not say its kind by itself.
func TestWithKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{WithKind(errors.New("whitelist too long"), ErrTooLong), "whitelist too long"},
		{WithKind(errors.New("whitelist: write: no space left on device"), ErrIO), "i/o error: whitelist: write: no space left on device"},
		{WithKind(errors.New("whitelist: open: permission denied"), ErrIO), `i/o error: whitelist: open: \x70ermission denied`},
	} {
		if got := clientError("whitelist entry", tc.err).Error(); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.err, got, tc.want)
		}
	}
	if WithKind(nil, ErrIO) != nil {
		t.Errorf("WithKind(nil) is not nil")
	}
}

// TestProtocolErrors: the protocol's own errors name their errno to
// 9pfuse (no ERANGE): a fid error EBADF, an internal error EIO.
func TestProtocolErrors(t *testing.T) {
	for text, want := range map[string]syscall.Errno{
		errUnknownFid: syscall.EBADF, errWalkOpen: syscall.EBADF, errInternal: syscall.EIO,
	} {
		if got := fstest.FuseErrno(text); got != want {
			t.Errorf("%q: 9pfuse gives %v, want %v", text, got, want)
		}
	}
}
