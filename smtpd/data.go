package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
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

// spoolMem is how much of a message a spool holds in memory; the rest goes
// to a temporary file, so that memory stays bounded however many sessions
// are in DATA at once.
const spoolMem = 1 << 20

// A spool holds one message: its first spoolMem bytes in memory, the rest
// in an unlinked temporary file. It is written once, then read any number
// of times with ReadAt or Reader.
type spool struct {
	dir string // for the temporary file
	mem []byte
	f   *os.File
	fw  *bufio.Writer
	n   int64
	err error // a failed write to the file; the message is lost
}

func newSpool(dir string) *spool { return &spool{dir: dir} }

// Write appends p to the message.
func (sp *spool) Write(p []byte) (int, error) {
	if sp.err != nil {
		return 0, sp.err
	}
	if room := spoolMem - len(sp.mem); room > 0 {
		k := min(room, len(p))
		sp.mem = append(sp.mem, p[:k]...)
		sp.n += int64(k)
		if k == len(p) {
			return k, nil
		}
		return k + sp.writeFile(p[k:]), sp.err
	}
	return sp.writeFile(p), sp.err
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
		sp.f, sp.fw = f, bufio.NewWriterSize(f, 64<<10)
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
	k, err := sp.f.ReadAt(p, off-spoolMem)
	return n + k, err
}

// Reader returns a reader of the message from offset off.
func (sp *spool) Reader(off int64) io.Reader { return io.NewSectionReader(sp, off, sp.n-off) }

// head returns up to n bytes of the start of the message, from memory.
func (sp *spool) head(n int) []byte { return sp.mem[:min(n, len(sp.mem))] }

// Close releases the temporary file.
func (sp *spool) Close() error {
	sp.mem = nil
	if sp.f != nil {
		return sp.f.Close()
	}
	return nil
}
