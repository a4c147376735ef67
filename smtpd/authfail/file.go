package authfail

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A File keeps the counts in one file that every process on the mail root
// opens for each question, under flock(2): shared to read a count,
// exclusive to change one. The file has a fixed size, fileSize, whatever
// the clients: a header, then a hash table of buckets of bucketSlots
// slots, one client's record per slot, each at its own offset and written
// with one pwrite. A client's bucket is chosen by a keyed hash (HMAC-SHA256
// with a random key kept in the header), so that a crowd of clients cannot
// aim at another's bucket to push its record out. When a bucket is full,
// a new client takes the slot of one whose window and lockout are over,
// else of the unlocked client whose window began first, else of the
// client whose lockout ends first.
//
// Nothing is synced: a crash may forget the last failures counted, which
// costs a guesser's victim little, and a record torn by one is refused by
// its checksum and read as empty. A file of the wrong size or with a bad
// header (made by hand, cut short) is made anew, forgetting its counts.
// The file is mode 0600, and its directory is made 0700 if missing.
type File struct {
	path string
}

// NewFile returns the store kept in the file path. Nothing is opened
// until it is asked.
func NewFile(path string) *File { return &File{path: path} }

// The layout of the file.
const (
	headerSize  = 64
	slotSize    = 64
	bucketSlots = 8
	buckets     = 1024
	bucketSize  = bucketSlots * slotSize
	fileSize    = headerSize + buckets*bucketSize // 512 KiB and the header: 8192 clients

	magic = "smtpfs authfail 1\n"
)

// Locked reports whether client may not try AUTH at now.
func (f *File) Locked(client netip.Prefix, now time.Time) (bool, error) {
	var locked bool
	err := f.with(syscall.LOCK_SH, client, func(b *bucket) error {
		if i := b.find(client); i >= 0 {
			locked = b.recs[i].locked(now)
		}
		return nil
	})
	return locked, err
}

// Failed counts a failure of client at now, and reports whether it locked
// the client out.
func (f *File) Failed(client netip.Prefix, now time.Time) (bool, error) {
	var locked bool
	err := f.with(syscall.LOCK_EX, client, func(b *bucket) error {
		i := b.find(client)
		if i < 0 {
			i = b.victim(now)
			b.keys[i], b.recs[i] = client, record{since: now}
		}
		locked = b.recs[i].fail(now)
		return b.write(i)
	})
	return locked, err
}

// with opens the file, locks it (how: LOCK_SH or LOCK_EX), reads the
// bucket of client and calls fn with it.
func (f *File) with(how int, client netip.Prefix, fn func(*bucket) error) error {
	fd, err := f.open()
	if err != nil {
		return err
	}
	defer fd.Close()
	if err := flock(fd, how); err != nil {
		return err
	}
	key, ok := readHeader(fd)
	if !ok {
		// Made anew under the exclusive lock; another process may have
		// done it while this one waited for the lock.
		if err := flock(fd, syscall.LOCK_EX); err != nil {
			return err
		}
		if key, ok = readHeader(fd); !ok {
			if key, err = initFile(fd); err != nil {
				return f.err(err)
			}
		}
	}
	b := &bucket{fd: fd, off: headerSize + int64(bucketOf(key, client))*bucketSize}
	if err := b.read(); err != nil {
		return f.err(err)
	}
	return f.err(fn(b))
}

// open opens the file for reading and writing, making it and its
// directory if missing.
func (f *File) open() (*os.File, error) {
	fd, err := os.OpenFile(f.path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0600)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(f.path), 0700); err != nil {
			return nil, err
		}
		fd, err = os.OpenFile(f.path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0600)
	}
	return fd, err
}

func (f *File) err(err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: "authfail", Path: f.path, Err: err}
}

func flock(fd *os.File, how int) error {
	for {
		err := syscall.Flock(int(fd.Fd()), how)
		if err != syscall.EINTR {
			if err != nil {
				return &fs.PathError{Op: "flock", Path: fd.Name(), Err: err}
			}
			return nil
		}
	}
}

// readHeader returns the hash key of the file, or false if the file is
// not one of ours, or not whole.
func readHeader(fd *os.File) ([]byte, bool) {
	fi, err := fd.Stat()
	if err != nil || fi.Size() != fileSize {
		return nil, false
	}
	h := make([]byte, headerSize)
	if _, err := fd.ReadAt(h, 0); err != nil {
		return nil, false
	}
	if !bytes.HasPrefix(h, []byte(magic)) || !sumOK(h) {
		return nil, false
	}
	return h[24:40], true
}

// initFile makes the file anew with a fresh key: the empty slots first,
// then the header, so that a crash between them leaves a file that is
// made anew again.
func initFile(fd *os.File) ([]byte, error) {
	if err := fd.Chmod(0600); err != nil {
		return nil, err
	}
	if err := fd.Truncate(headerSize); err != nil {
		return nil, err
	}
	// Written, not left as a hole, so that no later pwrite needs a block
	// of a full disk.
	if _, err := fd.WriteAt(make([]byte, fileSize-headerSize), headerSize); err != nil {
		return nil, err
	}
	h := make([]byte, headerSize)
	copy(h, magic)
	key := h[24:40]
	rand.Read(key)
	seal(h)
	if _, err := fd.WriteAt(h, 0); err != nil {
		return nil, err
	}
	return key, nil
}

// bucketOf returns the bucket of client.
func bucketOf(key []byte, client netip.Prefix) int {
	m := hmac.New(sha256.New, key)
	m.Write(clientKey(client))
	return int(binary.BigEndian.Uint64(m.Sum(nil)) % buckets)
}

// clientKey is a client as 17 bytes: its address in 16, its bits.
func clientKey(client netip.Prefix) []byte {
	a := client.Addr().As16()
	return append(a[:], byte(client.Bits()))
}

// A bucket is the slots of one bucket of the file, as read under the lock.
type bucket struct {
	fd   *os.File
	off  int64
	keys [bucketSlots]netip.Prefix // the zero Prefix: an empty slot
	recs [bucketSlots]record
}

// A slot is laid out as: the client's address (16 bytes), its bits, 1 (in
// use), two zero bytes, the count (4 bytes), since and until (Unix
// nanoseconds, 8 bytes each), zeros, and a CRC-32 of the rest (4 bytes).
func (b *bucket) read() error {
	buf := make([]byte, bucketSize)
	if _, err := b.fd.ReadAt(buf, b.off); err != nil {
		return err
	}
	for i := range bucketSlots {
		s := buf[i*slotSize : (i+1)*slotSize]
		if s[17] != 1 || !sumOK(s) {
			continue // empty, or torn
		}
		a := netip.AddrFrom16([16]byte(s[:16]))
		if a.Is4In6() {
			a = a.Unmap()
		}
		p, err := a.Prefix(int(s[16]))
		if err != nil || p.Bits() != int(s[16]) {
			continue
		}
		b.keys[i] = p
		b.recs[i] = record{
			n:     int(binary.BigEndian.Uint32(s[20:24])),
			since: time.Unix(0, int64(binary.BigEndian.Uint64(s[24:32]))),
			until: time.Unix(0, int64(binary.BigEndian.Uint64(s[32:40]))),
		}
	}
	return nil
}

// write writes slot i.
func (b *bucket) write(i int) error {
	s := make([]byte, slotSize)
	copy(s, clientKey(b.keys[i]))
	s[17] = 1
	r := b.recs[i]
	binary.BigEndian.PutUint32(s[20:24], uint32(r.n))
	binary.BigEndian.PutUint64(s[24:32], uint64(unixNano(r.since)))
	binary.BigEndian.PutUint64(s[32:40], uint64(unixNano(r.until)))
	seal(s)
	_, err := b.fd.WriteAt(s, b.off+int64(i*slotSize))
	return err
}

// unixNano is t.UnixNano, 0 for the zero Time (not locked out).
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// find returns the slot of client, or -1.
func (b *bucket) find(client netip.Prefix) int {
	for i, k := range b.keys {
		if k.IsValid() && k == client {
			return i
		}
	}
	return -1
}

// victim returns the slot a new client takes: an empty one, else that of
// a client whose window and lockout are over, else of the unlocked client
// whose window began first, else of the client whose lockout ends first.
func (b *bucket) victim(now time.Time) int {
	best := -1
	rank := func(i int) (int, time.Time) {
		r := &b.recs[i]
		switch {
		case !b.keys[i].IsValid():
			return 0, time.Time{}
		case r.stale(now):
			return 1, r.since
		case !r.locked(now):
			return 2, r.since
		}
		return 3, r.until
	}
	for i := range bucketSlots {
		if best < 0 {
			best = i
			continue
		}
		ri, ti := rank(i)
		rb, tb := rank(best)
		if ri < rb || ri == rb && ti.Before(tb) {
			best = i
		}
	}
	return best
}

// seal writes the CRC-32 of s's other bytes into its last four.
func seal(s []byte) {
	n := len(s) - 4
	binary.BigEndian.PutUint32(s[n:], crc32.ChecksumIEEE(s[:n]))
}

func sumOK(s []byte) bool {
	n := len(s) - 4
	return binary.BigEndian.Uint32(s[n:]) == crc32.ChecksumIEEE(s[:n])
}
