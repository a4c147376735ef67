package fs

import (
	"strconv"

	"github.com/knusbaum/go9p/proto"
)

// textFile is a read-only file whose content is rendered when it is
// opened, and read by offset from that snapshot: stats, version,
// log.recent. A reader that opens it again sees fresh content.
type textFile struct {
	node
	render func() []byte
	snaps  fidMap[[]byte]
}

// Open renders the content for fid; write modes are refused.
func (f *textFile) Open(fid uint64, mode proto.Mode) error {
	if _, _, err := access(mode, true, false); err != nil {
		return err
	}
	b := f.render()
	f.snaps.put(fid, &b)
	return nil
}

// Read returns the snapshot from offset.
func (f *textFile) Read(fid uint64, off, count uint64) ([]byte, error) {
	b := f.snaps.get(fid)
	if b == nil {
		return nil, errFid
	}
	return readAt(*b, off, count), nil
}

// Write is refused: the file is read-only (Open already refused writers).
func (f *textFile) Write(fid uint64, off uint64, data []byte) (uint32, error) {
	return 0, errPerm
}

// Close drops the snapshot.
func (f *textFile) Close(fid uint64) error {
	f.snaps.take(fid)
	return nil
}

// A Stat is one counter of the stats file.
type Stat struct {
	Name  string // one word, e.g. "messages.accepted"
	Value int64
}

// renderStats renders counters as `name value` lines.
func renderStats(stats []Stat) []byte {
	var b []byte
	for _, s := range stats {
		b = append(b, s.Name...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, s.Value, 10)
		b = append(b, '\n')
	}
	return b
}
