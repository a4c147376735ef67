package grey

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"smtpfs/internal/errquote"
)

// chunk is how much of a file is read at a time. Lines are cut out of one
// string per chunk, so loading a million lines costs a few dozen
// allocations, not a million.
const chunk = 1 << 20

// eachLine calls fn with every newline-terminated line read from r (without
// its newline) and its number, counting from first. It returns the bytes
// consumed, through the last newline, and the unterminated text after it,
// which may be a line still being written, and the number of lines
// consumed. A line longer than maxLen is passed on cut to maxLen+1 bytes,
// so that fn can refuse it; the rest of it is skipped. size, when known
// and small, saves allocating a whole chunk for a few lines.
func eachLine(r io.Reader, size int64, first, maxLen int, fn func(line string, n int)) (used int64, lines int, tail string, err error) {
	buf := make([]byte, min(max(size+1, 2*int64(maxLen)+2), chunk))
	have, n := 0, first
	skip := false // in the middle of an overlong line
	for {
		m, rerr := r.Read(buf[have:])
		have += m
		data := buf[:have]
		if end := bytes.LastIndexByte(data, '\n'); end >= 0 {
			s := string(data[:end+1])
			for s != "" {
				i := strings.IndexByte(s, '\n')
				if !skip {
					fn(s[:min(i, maxLen+1)], n)
				}
				s, skip, n = s[i+1:], false, n+1
			}
			used += int64(end + 1)
			have = copy(buf, data[end+1:])
		} else if have == len(buf) {
			if !skip {
				fn(string(data[:min(maxLen+1, have)]), n)
				skip = true
			}
			used += int64(have)
			have = 0
		}
		if rerr == io.EOF {
			if skip {
				return used, n - first, "", nil
			}
			return used, n - first, string(buf[:have]), nil
		}
		if rerr != nil {
			return used, n - first, "", rerr
		}
	}
}

// A stamp is what a cheap stat tells about a version of a file. A file
// whose stamp has not changed is taken not to have changed.
type stamp struct {
	ino   uint64
	size  int64
	mtime int64 // ns
}

func stampOf(fi os.FileInfo) stamp {
	s := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// statEvery bounds how often a file is checked for changes: at most once a
// second, whatever the rate of lookups.
const statEvery = time.Second

// A ticker says when a check is due, without a lock: of the callers that
// find it due, one wins.
type ticker struct{ next atomic.Int64 }

func (t *ticker) due(now time.Time) bool {
	n, next := now.UnixNano(), t.next.Load()
	return n >= next && t.next.CompareAndSwap(next, n+int64(statEvery))
}

// quote quotes s for an error message (errquote.Quote).
func quote(s string) string { return errquote.Quote(s) }

// errFull is appendLines's refusal to grow a file past its limit.
var errFull = errors.New("file full")

// appendLines writes text, whole lines, at the end of f, which is open
// for reading and appending, and syncs it: a file whose last line lacks
// its newline gets one first, so that the text starts a line of its own,
// and the text gets one at its end. If the file would grow past limit,
// nothing is written and the error is errFull.
func appendLines(f *os.File, text string, limit int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if size := fi.Size(); size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err == nil && last[0] != '\n' {
			text = "\n" + text
		}
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	if fi.Size()+int64(len(text)) > limit {
		return errFull
	}
	if _, err := f.WriteString(text); err != nil {
		return err
	}
	return f.Sync()
}
