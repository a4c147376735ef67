package fs

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/knusbaum/go9p/proto"
)

// Bounds of the log hub.
const (
	// DefaultLogLines is how many recent lines a Log keeps: a screenful of
	// context for a new reader, ~2 MiB at mlog's longest lines.
	DefaultLogLines = 1000
	// maxLogLine cuts a line written to the hub; mlog's lines are shorter.
	maxLogLine = 4096
	// DefaultMaxFollowers is how many readers may follow the log file at
	// once. A blocked read holds a request of its 9P connection, and every
	// FUSE user shares one connection (reference/ninep.md §1.1), so the cap
	// stays well below the requests a connection may have outstanding.
	DefaultMaxFollowers = 32
	// followerBytes bounds what one reader of the log file may have queued
	// (beyond the recent lines it was given at open): a reader that does
	// not keep up loses lines, and is told how many, instead of holding
	// the writer or growing without end. 32 readers × 256 KiB = 8 MiB.
	followerBytes = 256 << 10
)

// A Log is the hub behind the log files: an io.Writer that every log line
// of the daemon goes through (the daemon hands it to smtp/mlog as the
// tee), a ring of recent lines, and the readers following it. Write never
// blocks and never fails. A Log is safe for concurrent use.
type Log struct {
	mu        sync.Mutex
	ring      [][]byte // recent lines, oldest at start
	start     int
	followers map[*follower]bool
	max       int // followers allowed at once
}

// NewLog returns a hub keeping the last lines lines (DefaultLogLines if
// lines <= 0).
func NewLog(lines int) *Log {
	if lines <= 0 {
		lines = DefaultLogLines
	}
	return &Log{ring: make([][]byte, 0, lines), followers: map[*follower]bool{}, max: DefaultMaxFollowers}
}

// Write records each line of p (one or more lines, with or without the
// final newline) and hands it to every follower.
func (l *Log) Write(p []byte) (int, error) {
	n := len(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if len(line) > maxLogLine {
			line = line[:maxLogLine]
		}
		b := make([]byte, len(line)+1)
		copy(b, line)
		b[len(line)] = '\n'
		l.record(b)
		for f := range l.followers {
			f.add(b)
		}
	}
	return n, nil
}

func (l *Log) record(b []byte) {
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, b)
		return
	}
	l.ring[l.start] = b
	l.start = (l.start + 1) % len(l.ring)
}

// Recent returns the recent lines, oldest first.
func (l *Log) Recent() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.recent()
}

func (l *Log) recent() []byte {
	var b []byte
	for i := range l.ring {
		b = append(b, l.ring[(l.start+i)%len(l.ring)]...)
	}
	return b
}

// setMax sets how many readers may follow at once.
func (l *Log) setMax(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.max = n
}

// Followers returns how many readers follow the log now.
func (l *Log) Followers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.followers)
}

// follow registers a reader that is first given the recent lines.
func (l *Log) follow() (*follower, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.followers) >= l.max {
		return nil, errBusy
	}
	f := &follower{l: l, buf: l.recent(), wake: make(chan struct{}, 1)}
	l.followers[f] = true
	return f, nil
}

// unfollow removes f and wakes its blocked reads, which then see EOF.
func (l *Log) unfollow(f *follower) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.followers, f)
	f.closed = true
	f.signal()
}

// A follower is one open fid of the log file: the bytes queued for it.
// Its fields are guarded by the hub's mutex.
type follower struct {
	l       *Log
	buf     []byte
	dropped int
	closed  bool
	wake    chan struct{} // has a value when there is news
}

func (f *follower) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// add queues line b, or counts it as dropped when the reader is behind.
func (f *follower) add(b []byte) {
	if len(f.buf)+len(b) > followerBytes {
		f.dropped++
		return
	}
	f.flushDropped()
	f.buf = append(f.buf, b...)
	f.signal()
}

func (f *follower) flushDropped() {
	if f.dropped > 0 {
		f.buf = fmt.Appendf(f.buf, "... %d lines dropped\n", f.dropped)
		f.dropped = 0
	}
}

// take returns up to count bytes of whole lines (a part of a line only
// when the first line is longer than count), and whether the follower is
// closed with nothing left.
func (f *follower) take(count int) (data []byte, eof bool) {
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	if len(f.buf) == 0 {
		f.flushDropped()
	}
	if len(f.buf) == 0 {
		return nil, f.closed
	}
	n := min(count, len(f.buf))
	if i := bytes.LastIndexByte(f.buf[:n], '\n'); i >= 0 {
		n = i + 1
	}
	data = bytes.Clone(f.buf[:n])
	f.buf = f.buf[n:]
	if len(f.buf) == 0 {
		f.buf = nil
	}
	return data, false
}

// logFile is the log stream: reading gives the recent lines, then blocks
// for new ones, like acme's log and /net/log. A blocked read ends with new
// lines, with a `-- MARK --` line after mark (so that a FUSE reader, which
// cannot be interrupted, gets back to its shell now and then, and a dead
// connection is found out when the mark cannot be written), with
// "interrupted" on Tflush, and at EOF when its fid is clunked or its
// connection dies. Offsets are ignored.
type logFile struct {
	node
	hub     *Log
	mark    time.Duration
	now     func() time.Time
	intr    func(fid uint64) <-chan struct{}
	readers fidMap[follower]
}

// Open registers a follower; more than the hub allows get "busy".
func (f *logFile) Open(fid uint64, mode proto.Mode) error {
	if _, _, err := access(mode, true, false); err != nil {
		return err
	}
	r, err := f.hub.follow()
	if err != nil {
		return err
	}
	f.readers.put(fid, r)
	return nil
}

// Read returns queued lines, blocking until there are some.
func (f *logFile) Read(fid uint64, off, count uint64) ([]byte, error) {
	r := f.readers.get(fid)
	if r == nil {
		return nil, nil // clunked while the read was on its way
	}
	intr := f.intr(fid)
	var mark <-chan time.Time
	if f.mark > 0 {
		t := time.NewTimer(f.mark)
		defer t.Stop()
		mark = t.C
	}
	for {
		if data, eof := r.take(int(min(count, maxLogLine*16))); data != nil || eof {
			return data, nil
		}
		select {
		case <-r.wake:
		case <-intr:
			return nil, errInterrupted
		case <-mark:
			return f.now().AppendFormat(nil, "Jan _2 15:04:05 -- MARK --\n"), nil
		}
	}
}

// Write is refused: Open refused writers.
func (f *logFile) Write(fid uint64, off uint64, data []byte) (uint32, error) {
	return 0, errPerm
}

// Close unregisters the follower and wakes its blocked reads.
func (f *logFile) Close(fid uint64) error {
	if r := f.readers.take(fid); r != nil {
		f.hub.unfollow(r)
	}
	return nil
}
