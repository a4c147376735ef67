package smtpd

import (
	"sync"
	"syscall"
	"time"

	"smtpfs/smtp"
)

// errNoSpace refuses mail while the mail root is short of space (RFC 3463
// X.3.1: mail system full), for now: the client comes back later.
var errNoSpace = smtp.Replyf(452, "4.3.1", "insufficient system storage")

// freeCacheTime is how long a figure of free space is believed: a flood
// of MAIL commands costs one statfs a second.
const freeCacheTime = time.Second

// A freeSpace remembers the free space of the mail root for a while.
type freeSpace struct {
	mu    sync.Mutex
	at    time.Time // when it was read; zero: never
	bytes int64
	err   error
}

// roomFor returns errNoSpace when the mail root's file system has less
// free than minfree (0: no check) plus size, the bytes about to come; nil
// when there is room, or when the file system cannot say (logged): a
// failing statfs is no reason to refuse mail.
func (s *Server) roomFor(minfree, size int64) *smtp.Reply {
	if minfree <= 0 {
		return nil
	}
	free, err := s.free()
	switch {
	case err != nil:
		return nil
	case free < minfree+size:
		s.logf("refusing mail: %d bytes free on the mail root, minfree %d, message %d", free, minfree, size)
		return errNoSpace
	}
	return nil
}

// free returns the free space of the mail root, read at most once per
// freeCacheTime.
func (s *Server) free() (int64, error) {
	f := &s.space
	f.mu.Lock()
	defer f.mu.Unlock()
	now := s.Now()
	if f.at.IsZero() || now.Sub(f.at) >= freeCacheTime || now.Before(f.at) {
		f.bytes, f.err = s.statfs(s.Root)
		f.at = now
		if f.err != nil {
			s.logf("free space of the mail root: %v", f.err)
		}
	}
	return f.bytes, f.err
}

// statfsFree returns the space of dir's file system that an unprivileged
// process may use.
func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
