package fs

import (
	"errors"
	"strings"
)

// What a shell sees of an error. Through FUSE an Rerror becomes an errno,
// and plan9port's 9pfuse picks it by the first entry of its table
// (src/cmd/9pfuse/errstr.c) whose text is found anywhere in the first
// ERRMAX-1 bytes of the error, ignoring case; none gives ERANGE. So the
// errno is not the error's lead word but whichever table entry comes first:
// "invalid ctl line 1 'no such verb'" would be ENOENT, since "no such" is
// in the table before "invalid". The tree decides the errno of each error
// by what went wrong (a kind, below), and the Rerror text says it: the
// kind's word is in it, early, and every word of the table that would
// have 9pfuse choose another errno has its first letter written \xNN
// ('\x6eo such verb'). The text keeps its meaning for a 9P client, and the
// log has it as it was. mount9p makes every error of open and write
// EINVAL, whatever its text.

// A kind is the errno an error is meant to become under 9pfuse.
type kind string

const (
	kindInvalid   kind = "EINVAL" // a bad ctl line, entry or message
	kindNotFound  kind = "ENOENT" // it names what is not there: a message id, a whitelist entry
	kindTooLong   kind = "E2BIG"  // a line or message over its limit
	kindTemporary kind = "EAGAIN" // try again later: the queue has no room
	kindIO        kind = "EIO"    // the daemon could not store it
	kindPerm      kind = "EACCES" // the file does not allow it
	kindBusy      kind = "EBUSY"  // too many readers
	kindIntr      kind = "EINTR"  // a read given up
)

// leads start the text of an error that does not say its kind early
// enough by itself. Each holds its kind's word and no other of the table.
var leads = map[kind]string{
	kindInvalid:   "invalid: ",
	kindNotFound:  "not found: ",
	kindTooLong:   "too long: ",
	kindTemporary: "temporary failure: ",
	kindIO:        "i/o error: ",
	kindPerm:      "permission denied: ",
	kindBusy:      "busy: ",
	kindIntr:      "interrupted: ",
}

// Errors a backend wraps (fmt.Errorf("%w: ...", fs.ErrNotFound)) to say
// which kind its error is; any other error of a backend is a bad line,
// entry or message (EINVAL), or, with a Temporary method that says true
// (a 4xx *smtp.Reply), a temporary failure (EAGAIN).
var (
	ErrNotFound = errors.New("not found") // ENOENT
	ErrTooLong  = errors.New("too long")  // E2BIG
	ErrIO       = errors.New("i/o error") // EIO
)

// WithKind returns err, its text unchanged, as one of kind (ErrNotFound,
// ErrTooLong, ErrIO) for errors.Is: for a backend whose error says what
// it is in its own words ("whitelist too long").
func WithKind(err, kind error) error {
	if err == nil {
		return nil
	}
	return &kindError{err, kind}
}

type kindError struct{ err, kind error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// fuseErrors is 9pfuse's table, in its order (plan9port
// src/cmd/9pfuse/errstr.c at 59ab62e): "entry" is last, after "invalid".
// A second "no such" (ENODEV) can never match and is left out.
var fuseErrors = []struct {
	word  string
	errno kind
}{
	{"permitted", "EPERM"}, {"permission", kindPerm}, {"access", kindPerm},
	{"exists", "EEXIST"}, {"exist", kindNotFound}, {"no such", kindNotFound},
	{"not found", kindNotFound}, {"not implemented", "ENOSYS"},
	{"input/output", kindIO}, {"timeout", "ETIMEDOUT"}, {"timed out", "ETIMEDOUT"},
	{"i/o", kindIO}, {"too long", kindTooLong}, {"interrupt", kindIntr},
	{"bad file", "EBADF"}, {" fid ", "EBADF"}, {"temporar", kindTemporary},
	{"memory", "ENOMEM"}, {"is a directory", "EISDIR"}, {"directory", "ENOTDIR"},
	{"argument", kindInvalid}, {"pipe", "EPIPE"}, {"in use", kindBusy},
	{"busy", kindBusy}, {"illegal", kindInvalid}, {"invalid", kindInvalid},
	{"read-only", "EROFS"}, {"read only", "EROFS"}, {"stale ", "ESTALE"},
	{"proto", "EPROTO"}, {"entry", kindNotFound},
}

// errmax is how much of an error 9pfuse reads: plan9port's ERRMAX less
// the string's NUL (and the text has none: ninepText escapes them).
const errmax = 128 - 1

// fuseEntry returns the index of the table entry 9pfuse picks for the
// error text s, -1 when none is found (ERANGE).
func fuseEntry(s string) int {
	low := lower(s[:min(len(s), errmax)])
	for i, e := range fuseErrors {
		if strings.Contains(low, e.word) {
			return i
		}
	}
	return -1
}

// fuseErrno returns the errno 9pfuse makes of the error text s.
func fuseErrno(s string) kind {
	if i := fuseEntry(s); i >= 0 {
		return fuseErrors[i].errno
	}
	return "ERANGE"
}

// ninepText returns text as an Rerror that 9pfuse maps to k: text with
// the words that would map elsewhere escaped, and lead in front unless
// text then says k by itself within what 9pfuse reads. lead must hold a
// word of k and no other word of the table.
func ninepText(k kind, lead, text string) string {
	// A C string ends at a NUL: 9pfuse would not read past one.
	text = strings.ReplaceAll(text, "\x00", `\x00`)
	if s := shield(k, text, 0); mapsTo(s, k) {
		return s
	}
	return shield(k, lead+text, len(lead))
}

// mapsTo reports whether 9pfuse makes the errno k of s.
func mapsTo(s string, k kind) bool { return fuseErrno(s) == k }

// shield escapes, in s[from:], the first letter of every word of the
// table that 9pfuse would find before a word of kind k. Each round removes
// every occurrence of one word, and an escape (backslash, x, two hex
// digits) never completes a word of the table, so there are at most as
// many rounds as entries.
func shield(k kind, s string, from int) string {
	for range fuseErrors {
		i := fuseEntry(s)
		if i < 0 || fuseErrors[i].errno == k {
			break
		}
		s = escapeWord(s, fuseErrors[i].word, from)
	}
	return s
}

// escapeWord writes as \xNN the first letter of each occurrence of word
// in s (ignoring case) that starts at or after from, or, for an
// occurrence that starts before from and runs past it, the first letter
// past from.
func escapeWord(s, word string, from int) string {
	var b strings.Builder
	low := lower(s)
	last := 0
	for i := 0; i < len(s); {
		j := strings.Index(low[i:], word)
		if j < 0 {
			break
		}
		start, end := i+j, i+j+len(word)
		at := -1
		for p := max(start, from); p < end; p++ {
			if c := s[p]; 'a' <= c|0x20 && c|0x20 <= 'z' {
				at = p
				break
			}
		}
		if at >= 0 {
			b.WriteString(s[last:at])
			b.WriteString(`\x`)
			b.WriteByte("0123456789abcdef"[s[at]>>4])
			b.WriteByte("0123456789abcdef"[s[at]&15])
			last = at + 1
		}
		i = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// lower folds the ASCII letters of s to lower case, byte for byte, as
// 9pfuse's cistrstr does: other bytes, UTF-8 included, stay as they are.
func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// kindOf says what kind of error err is: a temporary failure, one of the
// Err values it wraps, or else a bad line, entry or message.
func kindOf(err error) kind {
	switch {
	case isTemporary(err):
		return kindTemporary
	case errors.Is(err, ErrNotFound):
		return kindNotFound
	case errors.Is(err, ErrTooLong), errors.Is(err, errTooLong), errors.Is(err, errLineTooLong):
		return kindTooLong
	case errors.Is(err, ErrIO):
		return kindIO
	}
	return kindInvalid
}

// A ninepError is an error as the tree answers it: its text shielded for
// 9pfuse, the error it came from kept for errors.Is and the log.
type ninepError struct {
	text string
	err  error
}

func (e *ninepError) Error() string { return e.text }
func (e *ninepError) Unwrap() error { return e.err }

// clientError returns err as the tree answers it, for a file whose
// entries are what ("ctl", "whitelist entry", "message"): the backend's
// text, with "temporary failure: " in front of a temporary one, escaped
// where 9pfuse would otherwise pick another errno than err's kind, and
// with a lead that says the kind when the text does not ("invalid ctl:
// ...").
func clientError(what string, err error) error {
	k := kindOf(err)
	text := err.Error()
	lead := leads[k]
	switch k {
	case kindTemporary:
		text = lead + text
	case kindInvalid:
		lead = "invalid " + what + ": "
	}
	return &ninepError{ninepText(k, lead, text), err}
}
