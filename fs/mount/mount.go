// Package mount mounts smtpfs's 9P tree on a directory through FUSE, for
// `smtpfs mount`: the client that plan9port's 9pfuse and go9p's mount9p
// are not, for this tree.
//
//   - Ctrl-C works. A FUSE interrupt (the kernel's, for a process blocked in
//     a read that gets a signal) becomes a Tflush of the 9P request (p9c),
//     and the read fails with EINTR as soon as the server answers; smtpfs
//     answers a flushed read of its log file at once. 9pfuse answers
//     FUSE_INTERRUPT with ENOSYS and mount9p ignores it, so that a `cat log`
//     waits, unkillable, for the next line.
//   - Errors are errnos worded as 9pfuse words them (Errno), not EINVAL for
//     all as mount9p has it.
//   - Every file is read and written with direct I/O: the tree's files are
//     streams and snapshots of length 0, which a page cache would show
//     empty. Attributes and names are kept one second, as 9pfuse keeps them.
//   - `>` works: the O_TRUNC of an open, or the truncation the kernel sends
//     after it, goes to the server (OTRUNC, a length-0 wstat), which takes
//     it for what it is on each file.
//   - It ends cleanly: Unmount unmounts (lazily when the mount is busy, so
//     that nothing stays mounted), and when the server goes away, Wait
//     unmounts and says so.
//
// Why a package of its own, under fs: it is the tree's client, and knows
// the tree (lengths 0, streams, error words) as the server does, so it
// lives and changes beside it; but it speaks to the tree only over the
// wire and imports nothing of package fs, which imports nothing of it.
// The FUSE side is github.com/hanwen/go-fuse/v2 (v2.0.3 hands a FUSE
// interrupt to a file system as the end of the request's context).
//
// Bounds: the 9P side's (p9c: msize, requests in flight, fids); a FUSE
// write of at most 128 KiB; a directory listing of at most maxListing
// bytes.
package mount

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"smtpfs/fs/mount/p9c"
)

const (
	// cacheTime is how long the kernel keeps a name or attributes, as
	// 9pfuse's default; data is never cached (direct I/O).
	cacheTime = time.Second
	// maxListing bounds the bytes of one directory listing: queue.d of
	// 100,000 messages is about 10 MB.
	maxListing = 64 << 20
	// attachTimeout bounds the attach.
	attachTimeout = 30 * time.Second
)

// A Mount is the tree mounted on a directory.
type Mount struct {
	dir      string
	conn     *p9c.Conn
	root     *p9c.Fid
	srv      *fuse.Server
	uid, gid uint32
	served   chan struct{} // closed when the kernel is done with the mount

	mu         sync.Mutex
	unmounting bool
	once       sync.Once
	unmountErr error
}

// New speaks 9P on nc, attaches to the tree, and mounts it on dir. nc is
// closed when the mount ends.
func New(nc net.Conn, dir string) (*Mount, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		err = isDir(abs)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	conn, err := p9c.New(nc, 0)
	if err != nil {
		nc.Close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), attachTimeout)
	defer cancel()
	root, err := conn.Attach(ctx, uname(), "")
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("9P attach: %w", err)
	}
	m := &Mount{dir: abs, conn: conn, root: root, uid: uint32(os.Getuid()), gid: uint32(os.Getgid()),
		served: make(chan struct{})}
	timeout := cacheTime
	m.srv, err = fs.Mount(abs, &node{m: m}, &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		MountOptions: fuse.MountOptions{
			FsName: "smtpfs",
			Name:   "smtpfs",
			// The most the kernel allows, so that a write(2) is cut
			// in FUSE writes only past 128 KiB: one that fails fails
			// whole (handle.Write), and a ctl line too long gets its
			// error, not a short count.
			MaxWrite:      fuse.MAX_KERNEL_WRITE,
			DisableXAttrs: true,
		},
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("mount %s: %v", abs, err)
	}
	go func() { m.srv.Wait(); close(m.served) }()
	return m, nil
}

func isDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("mount %s: not a directory", dir)
	}
	return nil
}

// uname is the name attached as (smtpfs takes any).
func uname() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "none"
}

// Dir returns the mount point, made absolute.
func (m *Mount) Dir() string { return m.dir }

// Wait waits until the mount ends. When someone unmounts it (Unmount,
// fusermount -u, umount), it returns nil. When the server goes away, it
// unmounts the directory and returns why.
func (m *Mount) Wait() error {
	select {
	case <-m.served:
		m.conn.Close()
		return nil
	case <-m.conn.Done():
	}
	m.mu.Lock()
	ours := m.unmounting
	m.mu.Unlock()
	if ours {
		return nil
	}
	gone := fmt.Errorf("the 9P server is gone (%v)", m.conn.Err())
	if err := m.Unmount(); err != nil {
		return fmt.Errorf("%v, and unmounting failed: %v", gone, err)
	}
	return gone
}

// Unmount unmounts the directory and ends the 9P connection. A mount still
// in use (a file open, a shell's working directory) is detached at once
// and goes when its last user does (a lazy unmount, fusermount -u -z);
// its files fail from then on. Once detached, nothing is served: the
// caller should exit, which ends the FUSE connection. Calls after the
// first return the first's error.
func (m *Mount) Unmount() error {
	m.once.Do(func() {
		m.mu.Lock()
		m.unmounting = true
		m.mu.Unlock()
		select {
		case <-m.served: // unmounted already
		default:
			if err := m.srv.Unmount(); err != nil {
				m.unmountErr = lazyUnmount(m.dir)
			}
		}
		m.conn.Close()
	})
	return m.unmountErr
}

// lazyUnmount detaches a busy mount with fusermount3 -u -z.
func lazyUnmount(dir string) error {
	var err error
	for _, name := range []string{"fusermount3", "fusermount"} {
		var p string
		if p, err = exec.LookPath(name); err != nil {
			continue
		}
		out, err := exec.Command(p, "-u", "-z", dir).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s -u -z %s: %v: %s", name, dir, err, out)
		}
		return nil
	}
	return errors.Join(errors.New("no fusermount3 or fusermount to unmount with"), err)
}
