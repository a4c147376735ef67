package smtpd

import (
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"smtpfs/smtp"
)

// CHUNKING (RFC 3030): BDAT size [LAST] sends size octets of message,
// exactly, with no dot-stuffing and no terminator; the last chunk says
// LAST. A message sent in chunks meets the same rules as one sent with
// DATA: the same screen (greylist, lib/blocked, sender check) at its
// first chunk, the same limits (maxsize; more than twice maxsize and a
// MiB in all ends the session), the same refusal of bare CR or LF and of
// lines over 1000 octets (a message relayed on with DATA must not carry
// what the next hop could read as its end), the same checks after the
// last chunk and the same durability (the one delivery path: received).
//
// The octets of a BDAT are read whatever the reply to it will be: a
// chunk refused for want of a recipient, after DATA, after a failed
// chunk, or with too big a size is still read to its end and thrown
// away, so that its octets are never taken for commands (RFC 3030 §2:
// the server must stay in step). Only a size that cannot be parsed, or one
// beyond the session's hard bound, ends the session, for then there is
// no step to keep. A chunk that fails ends the transaction (its error is
// the reply; the client must RSET or begin anew; later chunks get 503).
//
// BINARYMIME (RFC 3030 §3) is not offered: the queue, the Maildirs and
// the smtp client carry text, CRLF lines of at most 1000 octets, and a
// binary body would have to be converted to go on. DATA and BDAT do not
// mix in one transaction (503).

// maxChunkSizeDigits bounds BDAT's size argument: 20 digits hold any
// uint64, and anything longer is no size we read.
const maxChunkSizeDigits = 20

var (
	errChunkSyntax = smtp.Replyf(501, "5.5.4", "Syntax: BDAT size [LAST]")
	errNoRcptChunk = smtp.Replyf(503, "5.5.1", "BDAT without RCPT TO:")
)

// bdat serves BDAT. It is dispatched before the command table's state
// check, since its octets must be read in every state.
func (s *session) bdat(arg string) {
	size, last, ok := parseBdat(arg)
	hard := 2*s.cfg.MaxSize + 1<<20
	if !ok || size > hard-s.chunkRead {
		r := errChunkSyntax
		if ok {
			r = errSize
		}
		s.failLog(r, "[%s/%s] %q: %s; hanging up", s.helo, s.remote, s.cur, r.Error())
		s.quit = true
		return
	}
	s.chunkRead += size
	open := s.state&stRcpt != 0 && !s.dialup && !s.chunkFailed
	screened := false // screen refused this first chunk, and said so
	if open && s.chunks == nil {
		v := Accept
		if !s.trusted {
			v, open = s.screen()
		}
		if s.quit { // greylisted: 451 and goodbye
			return
		}
		if open {
			s.chunks = &chunkWriter{sp: newSpool(filepath.Join(s.srv.Root, "tmp"), &s.srv.mem), max: s.cfg.MaxSize, verdict: v}
		}
		screened, s.chunkFailed = !open, !open
	}
	var w io.Writer = io.Discard
	if open {
		w = s.chunks
	}
	if err := s.readChunk(w, size); err != nil {
		s.chunkLost(err)
		return
	}
	switch {
	case screened:
	case s.dialup:
		s.fail(errDialup)
	case s.state&stRcpt == 0:
		s.fail(errNoRcptChunk)
	case !open:
		s.fail(errSequence)
	case last:
		s.lastChunk()
	case s.chunks.err != nil: // refused now, not at LAST: the client need send no more
		err := s.chunks.err
		s.resetTxn()
		s.srv.Stats.Rejected.Add(1)
		s.fail(s.dataFailed(err, &spool{}))
	default:
		s.tr.note(strconv.FormatInt(size, 10) + " octets of BDAT elided")
		s.reply(smtp.Replyf(250, "2.0.0", "%d octets received", size))
	}
}

// parseBdat parses BDAT's argument: size, then LAST or nothing.
func parseBdat(arg string) (size int64, last, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f[0]) > maxChunkSizeDigits {
		return 0, false, false
	}
	for _, c := range f[0] {
		if c < '0' || c > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, false, false
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	return n, last, true
}

// readChunk reads exactly size octets into w, with DATA's timeout for
// each block.
func (s *session) readChunk(w io.Writer, size int64) error {
	s.in.perRead = s.cfg.DataTimeout
	_, err := io.CopyN(w, s.r, size)
	s.in.perRead = 0
	s.conn.SetReadDeadline(time.Time{})
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// chunkLost ends the session after a chunk could not be read: a timeout,
// or the client went away.
func (s *session) chunkLost(err error) {
	sp := &spool{}
	if s.chunks != nil {
		sp = s.chunks.sp
	}
	if r := s.dataFailed(err, sp); r != nil && !s.broken {
		s.fail(r)
	}
	s.quit = true
}

// lastChunk finishes the message after BDAT LAST: the checks of a whole
// message, then the delivery, as after DATA.
func (s *session) lastChunk() {
	cw := s.chunks
	s.chunks = nil // the transaction ends here; received has it now
	defer s.resetTxn()
	defer cw.sp.Close()
	err := cw.end()
	s.received(cw.sp, cw.verdict, err)
}

// dropChunks throws away the chunks of a transaction that ends unfinished.
func (s *session) dropChunks() {
	if s.chunks != nil {
		s.chunks.sp.Close()
	}
	s.chunks, s.chunkFailed, s.chunkRead = nil, false, 0
}

// A chunkWriter takes the octets of a BDAT transaction into its spool,
// and checks them as readData checks DATA's: bare CR or LF, text lines
// over maxTextLine octets, more than max octets. After the first error
// it writes nothing more, and Write never fails, so that the chunk is
// read to its end.
type chunkWriter struct {
	sp      *spool
	max     int64
	verdict Verdict
	n       int64
	lineLen int  // octets of the current line so far, its CR included
	prevCR  bool // the last octet was a CR
	err     error
}

func (cw *chunkWriter) Write(p []byte) (int, error) {
	if cw.err != nil {
		return len(p), nil
	}
	for _, c := range p {
		switch {
		case cw.prevCR && c != '\n', !cw.prevCR && c == '\n':
			cw.err = errBareEOL
		case c == '\n':
			cw.lineLen = 0
		default:
			if cw.lineLen++; cw.lineLen > maxTextLine-1 { // CRLF included
				cw.err = errLongLine
			}
		}
		cw.prevCR = c == '\r'
		if cw.err != nil {
			return len(p), nil
		}
	}
	if cw.n+int64(len(p)) > cw.max {
		cw.err = errTooBig
		return len(p), nil
	}
	k, err := cw.sp.Write(p)
	cw.n += int64(k)
	cw.err = err
	return len(p), nil
}

// end checks the end of the message: a final line without its CRLF gets
// one (RFC 3030 leaves the last octets to the client; our queue and
// Maildirs hold CRLF lines), a final bare CR is refused.
func (cw *chunkWriter) end() error {
	switch {
	case cw.err != nil:
		return cw.err
	case cw.prevCR:
		return errBareEOL
	case cw.lineLen > 0:
		if _, err := cw.sp.Write([]byte("\r\n")); err != nil {
			return err
		}
	}
	return nil
}
