package fs

import (
	"bytes"
	"context"
	"errors"
	"log"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/knusbaum/go9p/proto"

	"smtpfs/smtp/queue"
)

// DefaultMaxMessage bounds a message written to the queue file when the
// configuration names no other size: the default of smtpd's maxsize.
const DefaultMaxMessage = 32 << 20

var errTooLong = errors.New("message too long")

// queueFile is the queue: reading it lists the queued messages, one a
// line; writing it submits one message per open. The header is checked as
// it arrives, line by line (queue.LineChecker), so that a write that cannot
// be part of a header fails, from its first bytes on (`echo hello >
// queue`): a shell sees only the errors of writes. The whole header is
// checked when its empty line arrives (Queue.Check: recipients,
// addresses, room in the queue). The message is queued when the fid is
// clunked (durably, by the backend), with the outcome in the log; a
// message that is all header (RFC 5322 allows it) is checked there too,
// where its error reaches the log and a 9P client's Close, not a shell. A
// message whose connection died before the clunk is dropped, never queued
// half-written.
type queueFile struct {
	node
	q       Queue
	max     func() int64 // the size limit of the moment
	now     func() time.Time
	ctx     context.Context // ends when the server closes
	aborted func(fid uint64) bool
	log     *log.Logger
	fids    fidMap[queueFid]
}

type queueFid struct {
	mu      sync.Mutex
	snap    []byte // the listing, rendered at open for readers
	write   bool
	msg     []byte
	lines   queue.LineChecker // of the header so far
	scan    int               // where the first header line not yet checked starts
	checked bool              // the header was complete and passed Check
	err     error             // a write failed: the message will not be queued
}

// Open renders the listing for readers and starts a message for writers.
func (f *queueFile) Open(fid uint64, mode proto.Mode) error {
	read, write, err := access(mode, true, true)
	if err != nil {
		return err
	}
	st := &queueFid{write: write}
	if read {
		st.snap = renderQueue(f.q.List(), f.now())
	}
	f.fids.put(fid, st)
	return nil
}

// Read returns the listing from offset.
func (f *queueFile) Read(fid uint64, off, count uint64) ([]byte, error) {
	st := f.fids.get(fid)
	if st == nil {
		return nil, errFid
	}
	return readAt(st.snap, off, count), nil
}

// Write appends data to the fid's message, whatever the offset, and
// checks the header's new lines, and the whole header when its empty line
// arrives. After an error every write fails the same way and nothing is
// queued.
func (f *queueFile) Write(fid uint64, off uint64, data []byte) (uint32, error) {
	st := f.fids.get(fid)
	if st == nil {
		return 0, errFid
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.err != nil {
		return 0, st.err
	}
	if int64(len(st.msg))+int64(len(data)) > f.max() {
		return 0, f.fail(st, errTooLong)
	}
	st.msg = append(st.msg, data...)
	if !st.checked {
		if err := f.checkHeader(st); err != nil {
			return 0, f.fail(st, err)
		}
	}
	return uint32(len(data)), nil
}

// checkHeader checks the lines of the header that arrived since the last
// write, the start of the one still arriving, and, once the empty line
// that ends it is there, the whole header. Each byte is scanned once.
func (f *queueFile) checkHeader(st *queueFid) error {
	for {
		rest := st.msg[st.scan:]
		n := bytes.IndexByte(rest, '\n')
		if n < 0 {
			return st.lines.Start(rest)
		}
		line := bytes.TrimSuffix(rest[:n], []byte("\r"))
		if len(line) == 0 {
			st.checked = true
			return f.q.Check(st.msg[:st.scan])
		}
		st.scan += n + 1
		if err := st.lines.Line(line); err != nil {
			return err
		}
	}
}

func (f *queueFile) fail(st *queueFid, err error) error {
	f.log.Printf("queue: message not queued: %v", err)
	st.err = clientError("message", err)
	st.msg = nil
	return st.err
}

// Close queues the fid's message, unless a write failed, nothing was
// written, or the fid's connection died.
func (f *queueFile) Close(fid uint64) error {
	st := f.fids.take(fid)
	if st == nil || !st.write {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case st.err != nil || len(st.msg) == 0:
		return nil
	case f.aborted(fid):
		f.log.Printf("queue: connection lost, message of %d bytes not queued", len(st.msg))
		return nil
	}
	if !st.checked {
		// The message is all header: no empty line, no body.
		if err := f.q.Check(st.msg); err != nil {
			return f.fail(st, err)
		}
	}
	id, err := f.q.Submit(f.ctx, st.msg)
	if err != nil {
		f.log.Printf("queue: message not queued: %v", err)
		return submitError(err)
	}
	f.log.Printf("queue: queued %s, %d bytes", id, len(st.msg))
	return nil
}

// submitError is the clunk's error when the backend could not queue a
// message whose header passed: the queue's disk (EIO), unless the
// backend says it is temporary or, as its checks do, "invalid".
func submitError(err error) error {
	k := kindOf(err)
	text := err.Error()
	switch {
	case k == kindTemporary:
		text = leads[k] + text
	case k == kindInvalid && !strings.HasPrefix(text, "invalid"):
		k = kindIO
	}
	return &ninepError{"message not queued: " + ninepText(k, leads[k], text), err}
}

// renderQueue lists items, one a line:
//
//	id sender rcpt[,rcpt] size age tries next 'last error'
//
// each field rc-quoted when it needs to be, so that rc's `{} and read
// split a line into its eight fields. The null sender is '<>'; age and
// next are durations (5m, 1h30m, 2d4h); next is "held" for a message held
// by the operator and "-" when there is no next attempt.
func renderQueue(items []queue.Item, now time.Time) []byte {
	b := make([]byte, 0, len(items)*128)
	for i := range items {
		b = appendItem(b, &items[i], now)
	}
	return b
}

func appendItem(b []byte, it *queue.Item, now time.Time) []byte {
	b = appendQuoted(b, it.ID)
	b = append(b, ' ')
	if it.From == "" {
		b = append(b, "'<>'"...)
	} else {
		b = appendQuoted(b, it.From)
	}
	b = append(b, ' ')
	start := len(b)
	for i, r := range it.Rcpts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	b = quoteTail(b, start)
	b = append(b, ' ')
	b = strconv.AppendInt(b, it.Size, 10)
	b = append(b, ' ')
	if it.Arrived.IsZero() {
		b = append(b, '-')
	} else {
		b = appendDuration(b, now.Sub(it.Arrived))
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(it.Tries), 10)
	b = append(b, ' ')
	switch {
	case it.Held:
		b = append(b, "held"...)
	case it.Next.IsZero():
		b = append(b, '-')
	default:
		b = appendDuration(b, it.Next.Sub(now))
	}
	b = append(b, ' ')
	b = appendQuoted(b, it.LastErr)
	return append(b, '\n')
}

// appendDuration renders d coarsely, in its two largest units: 45s, 5m,
// 1h30m, 2d4h. Negative durations (a next attempt that is due) are 0s.
func appendDuration(b []byte, d time.Duration) []byte {
	d = max(d, 0).Truncate(time.Second)
	if d == 0 {
		return append(b, "0s"...)
	}
	units := []struct {
		d    time.Duration
		name byte
	}{{24 * time.Hour, 'd'}, {time.Hour, 'h'}, {time.Minute, 'm'}, {time.Second, 's'}}
	n := 0
	for _, u := range units {
		if d >= u.d && n < 2 {
			b = strconv.AppendInt(b, int64(d/u.d), 10)
			b = append(b, u.name)
			d %= u.d
			n++
		} else if n > 0 {
			break
		}
	}
	return b
}

// rcSafe marks the bytes rc takes as part of a word without quotes. Other
// ASCII bytes are quoted: spaces and tabs, rc's syntax (# ; & | ^ $ = ` '
// { } ( ) < >), and the pattern characters * ? [ ~.
var rcSafe = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range ".@%!,:+-/_" {
		t[c] = true
	}
	return t
}()

// appendQuoted appends s as one rc word: as it is when it can be, else in
// single quotes, a quote inside doubled. Control characters (a newline
// in an error text) become spaces, to keep one message a line.
func appendQuoted(b []byte, s string) []byte {
	start := len(b)
	b = append(b, s...)
	return quoteTail(b, start)
}

// quoteTail rc-quotes b[start:] in place when it needs it.
func quoteTail(b []byte, start int) []byte {
	w := b[start:]
	need := len(w) == 0
	for _, c := range w {
		if c < 0x80 && !rcSafe[c] {
			need = true
			break
		}
	}
	if !need {
		return b
	}
	word := string(w)
	b = append(b[:start], '\'')
	for i := 0; i < len(word); i++ {
		switch c := word[i]; {
		case c == '\'':
			b = append(b, '\'', '\'')
		case c < ' ' || c == 0x7f:
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return append(b, '\'')
}
