package mount

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"time"

	"9fans.net/go/plan9"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"smtpfs/fs/mount/p9c"
)

// A node is a file or directory of the tree. It holds no fid: each
// operation walks from the root to the node's path, and an open file
// holds the fid it opened. So nothing is left on the server when the
// kernel forgets a node, and a file that went away (a message of
// queue.d) is simply not there.
type node struct {
	fs.Inode
	m *Mount

	// A directory's last listing, kept a moment for the lookups that
	// follow a readdir: the kernel's READDIRPLUS looks up every entry.
	mu      sync.Mutex
	listed  time.Time
	listing map[string]*plan9.Dir
}

var (
	_ fs.NodeLookuper  = (*node)(nil)
	_ fs.NodeReaddirer = (*node)(nil)
	_ fs.NodeGetattrer = (*node)(nil)
	_ fs.NodeSetattrer = (*node)(nil)
	_ fs.NodeOpener    = (*node)(nil)
	_ fs.NodeCreater   = (*node)(nil)
	_ fs.NodeMkdirer   = (*node)(nil)
	_ fs.NodeUnlinker  = (*node)(nil)
	_ fs.NodeRmdirer   = (*node)(nil)
	_ fs.NodeRenamer   = (*node)(nil)
)

// names returns the path of the node from the root.
func (n *node) names(more ...string) []string {
	var names []string
	if p := n.Path(nil); p != "" {
		names = strings.Split(p, "/")
	}
	return append(names, more...)
}

// walk walks a new fid to the node, or to its child name.
func (n *node) walk(ctx context.Context, name ...string) (*p9c.Fid, error) {
	return n.m.root.Walk(ctx, n.names(name...)...)
}

// stat returns the directory entry of the node, or of its child name.
func (n *node) stat(ctx context.Context, name ...string) (*plan9.Dir, error) {
	if n.IsRoot() && len(name) == 0 {
		return n.m.root.Stat(ctx)
	}
	fid, err := n.walk(ctx, name...)
	if err != nil {
		return nil, err
	}
	defer fid.Clunk()
	return fid.Stat(ctx)
}

// child makes (or finds) the inode of the entry d of n.
func (n *node) child(ctx context.Context, d *plan9.Dir, out *fuse.EntryOut) *fs.Inode {
	n.m.fill(d, &out.Attr)
	return n.NewInode(ctx, &node{m: n.m}, fs.StableAttr{Mode: fileType(d), Ino: ino(d.Qid)})
}

// fileType is the S_IFMT bits of an entry: a directory or a file.
func fileType(d *plan9.Dir) uint32 {
	if d.Mode&plan9.DMDIR != 0 {
		return syscall.S_IFDIR
	}
	return syscall.S_IFREG
}

// ino is the inode number of a qid: its path, past FUSE's 0 and the
// root's 1.
func ino(q plan9.Qid) uint64 { return q.Path + 2 }

// fill sets the attributes of an entry. The owner is the mounting user:
// the daemon's tree is its owner's, and the kernel's checks of access(2)
// then agree with the server's.
func (m *Mount) fill(d *plan9.Dir, a *fuse.Attr) {
	a.Mode = fileType(d) | uint32(d.Mode&0777)
	a.Size = d.Length
	a.Atime, a.Mtime, a.Ctime = uint64(d.Atime), uint64(d.Mtime), uint64(d.Mtime)
	a.Nlink = 1
	a.Uid, a.Gid = m.uid, m.gid
	a.Blksize = 4096
}

// Lookup finds name in the directory, from its listing of a moment ago
// or from the server.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	d := n.listed1(name)
	if d == nil {
		var err error
		if d, err = n.stat(ctx, name); err != nil {
			return nil, errno(err)
		}
	}
	return n.child(ctx, d, out), 0
}

func (n *node) listed1(name string) *plan9.Dir {
	n.mu.Lock()
	defer n.mu.Unlock()
	if time.Since(n.listed) > cacheTime {
		n.listing = nil
		return nil
	}
	return n.listing[name]
}

// Readdir lists the directory.
func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	fid, err := n.walk(ctx)
	if err != nil {
		return nil, errno(err)
	}
	defer fid.Clunk()
	if err := fid.Open(ctx, plan9.OREAD); err != nil {
		return nil, errno(err)
	}
	dirs, err := readDir(ctx, fid)
	if err != nil {
		return nil, errno(err)
	}
	ents := make([]fuse.DirEntry, 0, len(dirs))
	listing := make(map[string]*plan9.Dir, len(dirs))
	for _, d := range dirs {
		ents = append(ents, fuse.DirEntry{Name: d.Name, Mode: fileType(d), Ino: ino(d.Qid)})
		listing[d.Name] = d
	}
	n.mu.Lock()
	n.listed, n.listing = time.Now(), listing
	n.mu.Unlock()
	return fs.NewListDirStream(ents), 0
}

// readDir reads the entries of an open directory, at most maxListing
// bytes of them.
func readDir(ctx context.Context, fid *p9c.Fid) ([]*plan9.Dir, error) {
	var dirs []*plan9.Dir
	buf := make([]byte, fid.IOUnit())
	var off int64
	for {
		n, err := fid.ReadAt(ctx, buf, off)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return dirs, nil
		}
		if off += int64(n); off > maxListing {
			return nil, p9c.Error("directory listing too long")
		}
		for b := buf[:n]; len(b) > 0; {
			if len(b) < 2 || 2+(int(b[0])|int(b[1])<<8) > len(b) {
				return nil, p9c.Error("protocol botch: a directory entry cut short")
			}
			size := 2 + (int(b[0]) | int(b[1])<<8)
			d, err := plan9.UnmarshalDir(b[:size])
			if err != nil {
				return nil, p9c.Error("protocol botch: " + err.Error())
			}
			dirs = append(dirs, d)
			b = b[size:]
		}
	}
}

// Getattr stats the node, through its open fid when it has one.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var d *plan9.Dir
	var err error
	if h, ok := f.(*handle); ok {
		d, err = h.fid.Stat(ctx)
	} else {
		d, err = n.stat(ctx)
	}
	if err != nil {
		return errno(err)
	}
	n.m.fill(d, &out.Attr)
	return 0
}

// Setattr changes the length (a shell's `>` truncates to 0 after the
// open), the mode or the times with a wstat; the server says what it
// allows. Owners cannot be changed (9P names them by name).
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	_, uid := in.GetUID()
	_, gid := in.GetGID()
	if uid || gid {
		return syscall.EPERM
	}
	var d plan9.Dir
	d.Null()
	change := false
	if size, ok := in.GetSize(); ok {
		d.Length, change = size, true
	}
	if mode, ok := in.GetMode(); ok {
		d.Mode, change = plan9.Perm(mode&0777), true
		if n.IsDir() {
			d.Mode |= plan9.DMDIR
		}
	}
	if t, ok := in.GetMTime(); ok {
		d.Mtime, change = uint32(t.Unix()), true
	}
	if t, ok := in.GetATime(); ok {
		d.Atime, change = uint32(t.Unix()), true
	}
	if change {
		fid, err := n.fidFor(ctx, f)
		if err != nil {
			return errno(err)
		}
		err = fid.Wstat(ctx, &d)
		if _, ok := f.(*handle); !ok {
			fid.Clunk()
		}
		if err != nil {
			return errno(err)
		}
	}
	return n.Getattr(ctx, f, out)
}

// fidFor returns the open fid of f, or a new one walked to the node.
func (n *node) fidFor(ctx context.Context, f fs.FileHandle) (*p9c.Fid, error) {
	if h, ok := f.(*handle); ok {
		return h.fid, nil
	}
	return n.walk(ctx)
}

// openMode is the 9P mode of open(2) flags. O_APPEND and the rest are the
// kernel's business: the tree ignores offsets on write.
func openMode(flags uint32) (uint8, syscall.Errno) {
	var mode uint8
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		mode = plan9.OREAD
	case syscall.O_WRONLY:
		mode = plan9.OWRITE
	case syscall.O_RDWR:
		mode = plan9.ORDWR
	default:
		return 0, syscall.EINVAL
	}
	if flags&syscall.O_TRUNC != 0 {
		mode |= plan9.OTRUNC
	}
	return mode, 0
}

// Open opens the file on a fid of its own, with direct I/O.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	mode, e := openMode(flags)
	if e != 0 {
		return nil, 0, e
	}
	fid, err := n.walk(ctx)
	if err != nil {
		return nil, 0, errno(err)
	}
	if err := fid.Open(ctx, mode); err != nil {
		fid.Clunk()
		return nil, 0, errno(err)
	}
	return &handle{fid: fid}, fuse.FOPEN_DIRECT_IO, 0
}

// Create asks the server to create name (smtpfs refuses).
func (n *node) Create(ctx context.Context, name string, flags uint32, perm uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	mode, e := openMode(flags)
	if e != 0 {
		return nil, nil, 0, e
	}
	fid, err := n.walk(ctx)
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	d, err := create(ctx, fid, name, plan9.Perm(perm&0777), mode)
	if err != nil {
		fid.Clunk()
		return nil, nil, 0, errno(err)
	}
	return n.child(ctx, d, out), &handle{fid: fid}, fuse.FOPEN_DIRECT_IO, 0
}

// create creates name in the directory of fid, which becomes the new
// file, and returns its entry.
func create(ctx context.Context, fid *p9c.Fid, name string, perm plan9.Perm, mode uint8) (*plan9.Dir, error) {
	if err := fid.Create(ctx, name, perm, mode); err != nil {
		return nil, err
	}
	return fid.Stat(ctx)
}

// Mkdir asks the server to make a directory (smtpfs refuses).
func (n *node) Mkdir(ctx context.Context, name string, perm uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fid, err := n.walk(ctx)
	if err != nil {
		return nil, errno(err)
	}
	defer fid.Clunk()
	d, err := create(ctx, fid, name, plan9.DMDIR|plan9.Perm(perm&0777), plan9.OREAD)
	if err != nil {
		return nil, errno(err)
	}
	return n.child(ctx, d, out), 0
}

// Unlink removes name (smtpfs allows it of queue.d's messages only).
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	fid, err := n.walk(ctx, name)
	if err != nil {
		return errno(err)
	}
	return errno(fid.Remove())
}

// Rmdir removes the directory name.
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.Unlink(ctx, name)
}

// Rename renames name within its directory with a wstat, as 9P can;
// across directories it is EXDEV. Plan 9 refuses a name already there,
// which is RENAME_NOREPLACE; other flags are refused.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	const renameNoReplace = 1
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL
	}
	if newParent.EmbeddedInode() != n.EmbeddedInode() {
		return syscall.EXDEV
	}
	fid, err := n.walk(ctx, name)
	if err != nil {
		return errno(err)
	}
	defer fid.Clunk()
	var d plan9.Dir
	d.Null()
	d.Name = newName
	return errno(fid.Wstat(ctx, &d))
}

// A handle is an open file: its fid, clunked when the kernel releases it.
type handle struct {
	fid *p9c.Fid
}

var (
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
	_ fs.FileFsyncer  = (*handle)(nil)
)

// Read reads once: a short read is what a stream (log) has now. An
// interrupt flushes the read (EINTR).
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.fid.ReadAt(ctx, dest, off)
	if err != nil {
		return nil, errno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// Write writes data, in as many 9P messages as it takes. When the server
// fails one, the whole write fails with its error: the tree drops what a
// failed write was part of (the start of a ctl line too long, a message
// refused), and a short count would have the writer send the rest again
// as if it were new. Only an interrupt after some messages gives a short
// count, since what they carried took effect.
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.fid.WriteAt(ctx, data, off)
	if err != nil && !(n > 0 && errors.Is(err, p9c.ErrInterrupted)) {
		return 0, errno(err)
	}
	return uint32(n), 0
}

// Release clunks the fid: the server then acts on what was written (a
// message written to queue is queued). Its error is lost, as a close's is
// on every FUSE client.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	return errno(h.fid.Clunk())
}

// Fsync has nothing to do: ctl, whitelist and blocked apply each write
// durably before answering it, and a message written to queue is queued
// when the file is closed, which nothing can hasten.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }
