package fs

import (
	"bytes"
	"errors"
	"log"
	"strings"
	"sync"

	"github.com/knusbaum/go9p/proto"
)

// maxLine bounds a line written to ctl, whitelist or blocked while it
// waits for its newline. The longest honest line is a dumped list verb
// (`evil` with a few thousand networks); 64 KiB per fid keeps a client that
// never sends a newline from holding more.
const maxLine = 64 << 10

var errLineTooLong = errors.New("line too long")

// cmdFile is a file of lines: ctl, whitelist and blocked. Reading it gives
// a snapshot rendered at open. Writes are cut into lines, whatever the
// offset (reference/ninep.md §4.2, §4.3), and, as on Plan 9, one write is
// a whole command: the lines of each write are applied together, all or
// none, a last line without its newline included, and the write fails with
// the backend's reason when one is bad. So `echo -n greylist on > ctl`
// is applied, or fails, at its write, where the shell sees it, and not at
// the clunk, whose error FUSE drops.
//
// One exception keeps bulk writes whole (`cat list > whitelist`): FUSE and
// 9P clients cut a long write into pieces of a fixed size, 4 KiB (9pfuse),
// 16 KiB (mount9p), the connection's largest Twrite (the 9fans client), so
// a write of exactly a power of two of at least 4 KiB, or of msize − 24
// bytes, that ends inside a line is taken for such a piece: its last line
// waits for the next write on the same fid, or for the clunk, where it is
// applied and its error logged (a 9P client sees it from Close). A
// connection that dies first never sent that line whole: it is dropped,
// and the log says so. A line longer than maxLine fails every write that
// carries a part of it, up to its newline: none of it is applied, and its
// tail is never taken for a line of its own.
type cmdFile struct {
	node
	what     string // "ctl", "whitelist entry": the noun of error texts
	apply    func(text string) error
	render   func() []byte
	aborted  func(fid uint64) bool // the fid's connection died: Close is ours, not the client's
	maxWrite func(fid uint64) int  // the largest Twrite of the fid's connection
	log      *log.Logger
	fids     fidMap[cmdFid]
}

type cmdFid struct {
	mu      sync.Mutex
	snap    []byte // what a read sees, rendered at open
	write   bool
	partial []byte // a written line waiting for its newline
	long    bool   // a line was too long: what follows up to its newline is dropped
}

// Open takes the snapshot for readers and an empty line buffer for writers.
func (f *cmdFile) Open(fid uint64, mode proto.Mode) error {
	read, write, err := access(mode, true, true)
	if err != nil {
		return err
	}
	st := &cmdFid{write: write}
	if read {
		st.snap = f.render()
	}
	f.fids.put(fid, st)
	return nil
}

// Read returns the snapshot from offset.
func (f *cmdFile) Read(fid uint64, off, count uint64) ([]byte, error) {
	st := f.fids.get(fid)
	if st == nil {
		return nil, errFid
	}
	return readAt(st.snap, off, count), nil
}

// Write applies the lines of data, with the partial line left by the
// previous write in front; the last line of a piece of a longer write
// (see cmdFile) waits for the rest. The offset is ignored. A failed write
// leaves nothing pending.
func (f *cmdFile) Write(fid uint64, off uint64, data []byte) (uint32, error) {
	st := f.fids.get(fid)
	if st == nil {
		return 0, errFid
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.long {
		// The rest of a line already refused: never a line of its own.
		// The write that ends it fails whole, like any bad write.
		st.long = bytes.IndexByte(data, '\n') < 0
		return 0, clientError(f.what, errLineTooLong)
	}
	i := bytes.LastIndexByte(data, '\n')
	rest := data[i+1:]
	piece := len(rest) > 0 && f.piece(fid, len(data))
	// The line the partial one starts may end here (its newline is the
	// first of data) or go on past data; later lines of data are shorter
	// than one message. A line goes on in the next write only after a
	// piece.
	if end := bytes.IndexByte(data, '\n'); end < 0 && len(st.partial)+len(data) > maxLine ||
		end >= 0 && len(st.partial)+end > maxLine || len(rest) > maxLine {
		return 0, f.tooLong(st, piece && (end < 0 || len(rest) > maxLine))
	}
	if piece {
		if i < 0 {
			st.partial = append(st.partial, data...)
			return uint32(len(data)), nil
		}
		text := string(st.partial) + string(data[:i])
		st.partial = append(st.partial[:0], rest...)
		return f.runWrite(st, text, len(data))
	}
	text := string(st.partial) + string(bytes.TrimSuffix(data, []byte("\n")))
	st.partial = st.partial[:0]
	return f.runWrite(st, text, len(data))
}

// piece reports whether a write of n bytes is a piece of a longer one, cut
// by a FUSE or 9P client at its fixed size.
func (f *cmdFile) piece(fid uint64, n int) bool {
	return n >= 4096 && n&(n-1) == 0 || f.maxWrite != nil && n == f.maxWrite(fid)
}

// runWrite applies the text of a write of n bytes.
func (f *cmdFile) runWrite(st *cmdFid, text string, n int) (uint32, error) {
	if text == "" {
		return uint32(n), nil
	}
	if err := f.run(text); err != nil {
		st.partial = nil
		return 0, err
	}
	return uint32(n), nil
}

// tooLong fails a write that carries a part of a line over maxLine; long
// says that what follows, up to the next newline, is that line's tail.
func (f *cmdFile) tooLong(st *cmdFid, long bool) error {
	f.log.Printf("%s: %v", f.Stat().Name, errLineTooLong)
	st.partial, st.long = nil, long
	return clientError(f.what, errLineTooLong)
}

// Close applies a pending partial line, unless the fid's connection died,
// and drops the fid's state.
func (f *cmdFile) Close(fid uint64) error {
	st := f.fids.take(fid)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case len(st.partial) == 0:
		return nil
	case f.aborted(fid):
		f.log.Printf("%s: connection lost, unfinished line %s dropped", f.Stat().Name, logQuote(st.partial))
		return nil
	}
	return f.run(string(st.partial))
}

// logQuote quotes a line for the log as the queue file quotes its fields
// (rc quotes when it needs them, control characters made spaces), cut to
// 80 bytes.
func logQuote(line []byte) string {
	if len(line) > 80 {
		return string(appendQuoted(nil, string(line[:80]))) + "..."
	}
	return string(appendQuoted(nil, string(line)))
}

// run applies text and logs each line that took effect, or the error.
func (f *cmdFile) run(text string) error {
	name := f.Stat().Name
	if err := f.apply(text); err != nil {
		f.log.Printf("%s: %v", name, err)
		return clientError(f.what, err)
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line[0] != '#' {
			f.log.Printf("%s: %s", name, line)
		}
	}
	return nil
}
