package fs

import (
	"io"
	"strings"
	"sync"

	ninep "github.com/knusbaum/go9p/fs"
	"github.com/knusbaum/go9p/proto"
)

// Messages is what a Queue may also implement to get the queue.d
// directory: one file per queued message, named by its id, holding the
// message as queued; removing it deletes the message (the ctl verb
// `delete id`).
type Messages interface {
	// OpenMessage opens the message id for reading; an *os.File will do.
	// An id not queued is an error that wraps ErrNotFound (ENOENT).
	OpenMessage(id string) (MessageReader, error)
}

// A MessageReader is an open queued message.
type MessageReader interface {
	io.ReaderAt
	io.Closer
}

// Generationer is what a Queue may also implement so that queue.d is not
// listed anew for every walk: Generation changes whenever a message joins
// or leaves the queue. Without it, each walk into queue.d lists the whole
// queue, and `ls -l queue.d` costs the square of its length.
type Generationer interface {
	Generation() uint64
}

// queueDir is queue.d: its entries are the queue's messages at the time
// of each walk or listing. Nodes are kept per id while the message is
// queued, so that a message keeps its qid.
type queueDir struct {
	node
	s        *Server
	msgs     Messages
	mu       sync.Mutex
	nodes    map[string]*msgFile
	children map[string]ninep.FSNode // of the last listing, read-only
	gen      uint64                  // the Generation it was made at
}

// Children lists the queued messages, or returns the last listing while
// the queue's Generation says the same ids are queued.
func (d *queueDir) Children() map[string]ninep.FSNode {
	g, cached := d.s.cfg.Queue.(Generationer)
	var gen uint64
	if cached {
		gen = g.Generation()
		d.mu.Lock()
		if d.children != nil && d.gen == gen {
			defer d.mu.Unlock()
			return d.children
		}
		d.mu.Unlock()
	}
	items := d.s.cfg.Queue.List()
	d.mu.Lock()
	defer d.mu.Unlock()
	nodes := make(map[string]*msgFile, len(items))
	children := make(map[string]ninep.FSNode, len(items))
	for i := range items {
		id := items[i].ID
		if id == "" || id == "." || id == ".." || strings.Contains(id, "/") {
			continue
		}
		n := d.nodes[id]
		if n == nil {
			n = &msgFile{node: newNode(d.s.fsys, id, d.s.cfg.Owner, 0444), id: id, msgs: d.msgs}
			n.SetParent(d)
		}
		nodes[id] = n
		children[id] = n
	}
	d.nodes = nodes
	if cached {
		d.children, d.gen = children, gen
	}
	return children
}

// msgFile is one queued message, read-only; offsets are honoured.
type msgFile struct {
	node
	id    string
	msgs  Messages
	files fidMap[MessageReader]
}

// Open opens the message for reading.
func (f *msgFile) Open(fid uint64, mode proto.Mode) error {
	if _, _, err := access(mode, true, false); err != nil {
		return err
	}
	r, err := f.msgs.OpenMessage(f.id)
	if err != nil {
		return clientError("message", err)
	}
	f.files.put(fid, &r)
	return nil
}

// Read reads the message at offset.
func (f *msgFile) Read(fid uint64, off, count uint64) ([]byte, error) {
	r := f.files.get(fid)
	if r == nil {
		return nil, errFid
	}
	b := make([]byte, count)
	n, err := (*r).ReadAt(b, int64(off))
	if err != nil && err != io.EOF {
		return nil, err
	}
	return b[:n], nil
}

// Write is refused: Open refused writers.
func (f *msgFile) Write(fid uint64, off uint64, data []byte) (uint32, error) {
	return 0, errPerm
}

// Close closes the message.
func (f *msgFile) Close(fid uint64) error {
	if r := f.files.take(fid); r != nil {
		(*r).Close()
	}
	return nil
}

// remove is go9p's remove hook, which it calls for every Tremove: only a
// queued message may be removed, which deletes it from the queue.
func (s *Server) remove(_ *ninep.FS, n ninep.FSNode) error {
	m, ok := n.(*msgFile)
	if !ok {
		return errPerm
	}
	if err := s.cfg.Control.Ctl("delete " + string(appendQuoted(nil, m.id))); err != nil {
		s.log.Printf("queue.d: rm %s: %v", m.id, err)
		return clientError("remove", err)
	}
	s.log.Printf("queue.d: rm %s", m.id)
	return nil
}
