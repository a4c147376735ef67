package fs

import (
	"errors"
	"fmt"
	"sync"

	ninep "github.com/knusbaum/go9p/fs"
	"github.com/knusbaum/go9p/proto"
)

// Errors of the files themselves. Each carries the word by which 9pfuse
// gives the errno it is meant to (errno.go): "permission denied" EACCES,
// "busy" EBUSY, "interrupted" EINTR, " fid " EBADF, "in use" EBUSY.
var (
	errPerm        = errors.New("permission denied")
	errBusy        = errors.New("log busy: too many readers")
	errInterrupted = errors.New("interrupted")
	errFid         = errors.New("unknown fid for this file")
	errFids        = errors.New("too many fids in use")
)

// isTemporary reports whether err says to try again later, as the
// queue's replies do (smtp.Reply's Temporary method: 4xx).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// node is what every file and directory of the tree shares: a stat that
// never changes after construction (length 0, so that mount9p turns on
// direct I/O and nothing is cached) and a parent.
type node struct {
	stat   proto.Stat
	mu     sync.Mutex
	parent ninep.Dir
}

func newNode(fsys *ninep.FS, name, owner string, mode uint32) node {
	return node{stat: *fsys.NewStat(name, owner, owner, mode)}
}

// Stat returns the node's stat.
func (n *node) Stat() proto.Stat { return n.stat }

// SetParent records the node's directory; go9p calls it from AddChild.
func (n *node) SetParent(d ninep.Dir) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.parent = d
}

// Parent returns the node's directory.
func (n *node) Parent() ninep.Dir {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.parent
}

// WriteStat accepts a wstat that changes nothing but the length to 0 and
// the times (which are not kept): `echo x > ctl` truncates before it writes
// (Twstat length 0, reference/ninep.md §2), and touch sets times. Renames,
// mode, owner and other lengths are refused. go9p hands over the old stat
// with the requested fields laid over it; what it drops from the request
// (the owner, the mode's upper bits) is checked before, by checkWstat.
func (n *node) WriteStat(s *proto.Stat) error {
	old := n.stat
	if s.Name != old.Name || s.Mode != old.Mode || s.Uid != old.Uid ||
		s.Gid != old.Gid || s.Length != 0 {
		return errPerm
	}
	return nil
}

// checkWstat decides a wstat of a file whose stat is cur, from the
// request req as it came (wstat(5): a field of all ones, or an empty
// string, means "don't touch"). go9p would answer success to requests it
// does not carry out: it never changes the owner, keeps only the
// permission bits of a mode (so setting DMAPPEND or DMEXCL, or clearing
// them, would "succeed"), and lets a length through on any file. Taken:
//   - nothing at all: 9pfuse's fsync;
//   - the times (touch): accepted and not kept, every file has them anew;
//   - length 0 on a file that may be written: `>` (reference/ninep.md §2);
//   - a name, owner, group or mode that the file already has (a mode
//     without DMAPPEND, as 9pfuse's chmod sends it, asks to clear it on
//     whitelist and blocked, and is refused).
//
// Everything else is refused with "permission denied" and the reason:
// renames, the owner, group, mode, type, dev, qid or muid changed (as
// wstat(5) forbids), any other length, and any length on a directory or a
// read-only file.
func checkWstat(cur, req proto.Stat) error {
	name := cur.Name
	switch {
	case req.Name != "" && req.Name != cur.Name:
		return fmt.Errorf("%v: cannot rename %s", errPerm, name)
	case req.Uid != "" && req.Uid != cur.Uid:
		return fmt.Errorf("%v: cannot change the owner of %s", errPerm, name)
	case req.Gid != "" && req.Gid != cur.Gid:
		return fmt.Errorf("%v: cannot change the group of %s", errPerm, name)
	case req.Mode != ^uint32(0) && req.Mode != cur.Mode:
		return fmt.Errorf("%v: cannot change the mode of %s", errPerm, name)
	case req.Type != ^uint16(0) && req.Type != cur.Type, req.Dev != ^uint32(0) && req.Dev != cur.Dev,
		req.Qid != proto.Qid{Qtype: ^uint8(0), Vers: ^uint32(0), Uid: ^uint64(0)} && req.Qid != cur.Qid,
		req.Muid != "" && req.Muid != cur.Muid:
		return fmt.Errorf("%v: cannot change the type, dev, qid or muid of %s", errPerm, name)
	case req.Length == ^uint64(0):
	case cur.Mode&proto.DMDIR != 0 || cur.Mode&0200 == 0:
		return fmt.Errorf("%v: cannot set the length of %s", errPerm, name)
	case req.Length != 0:
		return fmt.Errorf("%v: the length of %s can only be set to 0", errPerm, name)
	}
	return nil
}

// dir is a directory whose children are fixed when the tree is built.
type dir struct {
	node
	children map[string]ninep.FSNode // read-only once the tree is served
}

func newDir(fsys *ninep.FS, name, owner string) *dir {
	return &dir{node: newNode(fsys, name, owner, proto.DMDIR|0555), children: map[string]ninep.FSNode{}}
}

func (d *dir) add(n ninep.FSNode) {
	d.children[n.Stat().Name] = n
	n.SetParent(d)
}

// Children returns the directory's entries. go9p only reads the map.
func (d *dir) Children() map[string]ninep.FSNode { return d.children }

// access checks an open mode against what a file allows and says whether
// the fid reads and whether it writes. OTRUNC is accepted and ignored on
// writable files (plan9port's `9p write` always sends it); ORCLOSE and
// OEXEC are refused, since nothing here can be removed or run.
func access(mode proto.Mode, canRead, canWrite bool) (read, write bool, err error) {
	if mode&proto.Orclose != 0 {
		return false, false, errPerm
	}
	switch mode & 3 {
	case proto.Oread:
		read = true
	case proto.Owrite:
		write = true
	case proto.Ordwr:
		read, write = true, true
	default:
		return false, false, errPerm
	}
	if read && !canRead || write && !canWrite || mode&proto.Otrunc != 0 && !canWrite {
		return false, false, errPerm
	}
	return read, write, nil
}

// fidMap holds the per-fid state of one file, from Open to Close. go9p
// calls a file's methods from many goroutines at once.
type fidMap[T any] struct {
	mu sync.Mutex
	m  map[uint64]*T
}

func (f *fidMap[T]) put(fid uint64, v *T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[uint64]*T{}
	}
	f.m[fid] = v
}

func (f *fidMap[T]) get(fid uint64) *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[fid]
}

// take removes and returns the state of fid, nil if there was none.
func (f *fidMap[T]) take(fid uint64) *T {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.m[fid]
	delete(f.m, fid)
	return v
}

func (f *fidMap[T]) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

// readAt returns up to count bytes of b from offset off: reads of a
// snapshot taken at open.
func readAt(b []byte, off, count uint64) []byte {
	if off >= uint64(len(b)) {
		return nil
	}
	b = b[off:]
	if count < uint64(len(b)) {
		b = b[:count]
	}
	return b
}
