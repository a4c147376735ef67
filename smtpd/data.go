package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"sync/atomic"
)

// maxTextLine is the longest text line of a message, CRLF included
// (RFC 5321 §4.5.3.1.6).
const maxTextLine = 1000

// Errors of readData. The first three, and an error of the writer, are
// errors of the message: the reader has read on to the real CRLF.CRLF, so
// the session can go on. errWayTooBig and read errors leave the protocol
// out of step.
var (
	errBareEOL   = errors.New("bare CR or LF in message")
	errLongLine  = errors.New("line longer than 1000 octets in message")
	errTooBig    = errors.New("message too big")
	errWayTooBig = errors.New("message far too big")
)

// readData reads the text of DATA from r up to the terminating CRLF.CRLF
// into w, without the terminator and undoing dot-stuffing (RFC 5321
// §4.5.2), and returns the number of bytes written.
//
// DATA ends only on CRLF "." CRLF. A bare CR or a bare LF anywhere makes
// the message fail with errBareEOL, but only once the real end has been
// read, so that "\n.\n" and its kin can neither end the message early nor
// smuggle commands (anchors.md §2.1, the mox approach). A text line over
// 1000 octets gives errLongLine, a message over max bytes errTooBig, and
// an error of w (a full disk) that error, the same way: whatever the first
// error, the rest of the message is read and thrown away, never taken for
// commands. After the first error nothing more is written to w. A client
// that sends more than hard bytes in all gets errWayTooBig at once.
func readData(r *bufio.Reader, w io.Writer, max, hard int64) (int64, error) {
	var (
		n, read   int64
		msgErr    error
		lineStart = true  // the previous line ended in CRLF: a dot here is special
		prevCR    = false // the previous fragment ended in CR
		lineLen   = 0
	)
	for {
		frag, err := r.ReadSlice('\n')
		read += int64(len(frag))
		if read > hard {
			return n, errWayTooBig
		}
		full := err == nil
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if lineStart && full && len(frag) == 3 && frag[0] == '.' && frag[1] == '\r' {
			return n, msgErr
		}
		if lineStart && len(frag) > 0 && frag[0] == '.' {
			frag = frag[1:] // RFC 5321 §4.5.2
		}
		lineLen += len(frag)
		crlf := false
		text := frag // the bytes that must hold no CR
		if full {
			text = frag[:len(frag)-1]
			switch {
			case len(text) > 0 && text[len(text)-1] == '\r':
				crlf, text = true, text[:len(text)-1]
			case len(text) == 0 && prevCR:
				crlf = true
			default:
				msgErr = cmp(msgErr, errBareEOL)
			}
			if lineLen > maxTextLine {
				msgErr = cmp(msgErr, errLongLine)
			}
			lineLen = 0
		}
		if prevCR && !(full && len(text) == 0 && crlf) {
			msgErr = cmp(msgErr, errBareEOL) // a CR that ended the last fragment, not followed by LF
		}
		prevCR = false
		if !full && len(text) > 0 && text[len(text)-1] == '\r' {
			prevCR, text = true, text[:len(text)-1]
		}
		if bytes.IndexByte(text, '\r') >= 0 {
			msgErr = cmp(msgErr, errBareEOL)
		}
		lineStart = full && crlf
		if msgErr == nil && n+int64(len(frag)) > max {
			msgErr = errTooBig
		}
		if msgErr == nil {
			k, err := w.Write(frag)
			n += int64(k)
			msgErr = err // the spool failed (ENOSPC, EMFILE): read on to the end all the same
		}
	}
}

// cmp keeps the first error.
func cmp(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// spoolMem is the most of one message a spool holds in memory; the rest
// goes to a temporary file.
const spoolMem = 1 << 20

// spoolBudget is the most memory the spools of all sessions hold at once,
// for message text and file buffers: 20000 sessions in DATA would
// otherwise hold 20 GiB. Past it, messages go to their files from the
// first byte that does not fit.
const spoolBudget = 256 << 20

// Sizes of a spool's file buffer: fileBuf when the budget allows it, else
// fileBufMin, outside the budget (it is what a file write needs anyway).
const (
	fileBuf    = 64 << 10
	fileBufMin = 4 << 10
)

// A memBudget is memory shared by the spools of all sessions.
type memBudget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, or reports false if that would go over max.
func (b *memBudget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

// give returns n bytes taken before.
func (b *memBudget) give(n int64) { b.used.Add(-n) }

// A spool holds one message: its start in memory (at most spoolMem bytes,
// as much as the shared budget allows), the rest in an unlinked temporary
// file. It is written once, then read any number of times with ReadAt or
// Reader.
type spool struct {
	dir    string // for the temporary file
	budget *memBudget
	held   int64 // bytes taken from budget
	mem    []byte
	full   bool // no more memory: the rest goes to the file
	f      *os.File
	fw     *bufio.Writer
	n      int64
	err    error // a failed write to the file; the message is lost
}

func newSpool(dir string, b *memBudget) *spool { return &spool{dir: dir, budget: b} }

// Write appends p to the message.
func (sp *spool) Write(p []byte) (int, error) {
	if sp.err != nil {
		return 0, sp.err
	}
	k := 0
	if !sp.full && sp.grow(len(p)) {
		k = min(cap(sp.mem)-len(sp.mem), len(p))
		sp.mem = append(sp.mem, p[:k]...)
		sp.n += int64(k)
		if k == len(p) {
			return k, nil
		}
	}
	sp.full = true
	return k + sp.writeFile(p[k:]), sp.err
}

// grow makes room in memory for n more bytes, as far as spoolMem and the
// budget allow, and reports whether there is any room.
func (sp *spool) grow(n int) bool {
	if len(sp.mem)+n <= cap(sp.mem) {
		return true
	}
	c := min(max(2*cap(sp.mem), len(sp.mem)+n, 4<<10), spoolMem)
	if c > cap(sp.mem) && sp.budget.take(int64(c-cap(sp.mem))) {
		sp.held += int64(c - cap(sp.mem))
		m := make([]byte, len(sp.mem), c)
		copy(m, sp.mem)
		sp.mem = m
	}
	return len(sp.mem) < cap(sp.mem)
}

func (sp *spool) writeFile(p []byte) int {
	if sp.f == nil {
		if err := os.MkdirAll(sp.dir, 0700); err != nil {
			sp.err = err
			return 0
		}
		f, err := os.CreateTemp(sp.dir, "spool")
		if err != nil {
			sp.err = err
			return 0
		}
		os.Remove(f.Name()) // nothing to clean up after a crash
		size := fileBufMin
		if sp.budget.take(fileBuf) {
			size, sp.held = fileBuf, sp.held+fileBuf
		}
		sp.f, sp.fw = f, bufio.NewWriterSize(f, size)
	}
	k, err := sp.fw.Write(p)
	sp.n += int64(k)
	sp.err = err
	return k
}

// finish flushes what was written, making the spool readable.
func (sp *spool) finish() error {
	if sp.fw != nil && sp.err == nil {
		sp.err = sp.fw.Flush()
	}
	return sp.err
}

// Size returns the length of the message.
func (sp *spool) Size() int64 { return sp.n }

// ReadAt reads the message at offset off.
func (sp *spool) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(sp.mem)) {
		n = copy(p, sp.mem[off:])
		off += int64(n)
		p = p[n:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if off >= sp.n || sp.f == nil {
		return n, io.EOF
	}
	k, err := sp.f.ReadAt(p, off-int64(len(sp.mem)))
	return n + k, err
}

// Reader returns a reader of the message from offset off.
func (sp *spool) Reader(off int64) io.Reader { return io.NewSectionReader(sp, off, sp.n-off) }

// head returns up to n bytes of the start of the message: from memory, or
// read from the file when memory holds less.
func (sp *spool) head(n int) []byte {
	n = int(min(int64(n), sp.n))
	if n <= len(sp.mem) || sp.f == nil {
		return sp.mem[:min(n, len(sp.mem))]
	}
	b := make([]byte, n)
	k, _ := sp.ReadAt(b, 0)
	return b[:k]
}

// Close releases the temporary file and the memory.
func (sp *spool) Close() error {
	sp.mem = nil
	sp.budget.give(sp.held)
	sp.held = 0
	if sp.f != nil {
		return sp.f.Close()
	}
	return nil
}
