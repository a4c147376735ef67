package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"smtpfs/internal/durable"
)

// A store is the queue directory: <id>.env and <id>.msg for each message,
// tmp/ for files being written, bad/ for records found damaged.
//
// Every file is written in tmp/ under an exclusive flock(2) held until it
// has been renamed into place, so that a process cleaning up (Open, or a
// rescan) can tell a file whose writer died (the lock is free: remove it)
// from one still being written by a live process sharing the directory
// (cmd/smtpd, say). The kernel drops the locks of a killed process.
type store struct {
	dir, tmp, bad string
	d             *os.File      // the directory, for fsync
	single        bool          // fsync each file and the directory alone, no group commit (benchmark)
	syncs         durable.Group // group commit of file contents and of directory changes

	free func() (int64, error) // bytes free for us on the file system (statfsFree; tests replace it)
}

func openStore(dir string) (*store, error) {
	s := &store{dir: dir, tmp: filepath.Join(dir, "tmp"), bad: filepath.Join(dir, "bad")}
	s.free = func() (int64, error) { return statfsFree(dir) }
	for _, d := range []string{dir, s.tmp, s.bad} {
		if err := os.MkdirAll(d, 0700); err != nil {
			return nil, err
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	s.d = d
	return s, nil
}

func (s *store) close() error { return s.d.Close() }

func (s *store) path(id, ext string) string { return filepath.Join(s.dir, id+ext) }

// syncFiles makes the contents of files durable. Concurrent callers
// share the work (group commit): one of them syncs for all that arrived
// before it started, with one syncfs(2) of the file system on Linux, else
// by fsyncing each of their files at once.
func (s *store) syncFiles(files ...*os.File) error {
	if s.single {
		for _, f := range files {
			if err := f.Sync(); err != nil {
				return err
			}
		}
		return nil
	}
	return s.syncs.Do(files, durable.Flush)
}

// syncDir makes the renames and removals done so far in the directory
// durable. It shares the sync with every other caller of syncFiles or
// syncDir waiting at the time: one syncfs covers files and directory.
func (s *store) syncDir() error {
	if s.single {
		return s.d.Sync()
	}
	return s.syncs.Do([]*os.File{s.d}, durable.Flush)
}

// create writes a new record: the message from r into tmp/, then the
// envelope that envFor makes once the size is known; syncs both, renames
// the message and then the envelope into place, and returns after the
// directory fsync has made them durable. Until the envelope is in place
// the message is not a record: a crash before leaves files that cleaning
// removes.
func (s *store) create(ctx context.Context, id string, r io.Reader, envFor func(size int64) []byte) (size int64, err error) {
	msg, err := s.tmpFile(id + ".msg")
	if err != nil {
		return 0, err
	}
	defer cleanup(msg, &err)
	if size, err = io.Copy(msg, r); err != nil {
		return 0, fmt.Errorf("queue: writing message: %w", err)
	}
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	env, err := s.tmpFile(id + ".env")
	if err != nil {
		return 0, err
	}
	defer cleanup(env, &err)
	if _, err = env.Write(envFor(size)); err != nil {
		return 0, err
	}
	if err = s.syncFiles(msg, env); err != nil {
		return 0, err
	}
	if err = os.Rename(msg.Name(), s.path(id, ".msg")); err != nil {
		return 0, err
	}
	if err = os.Rename(env.Name(), s.path(id, ".env")); err != nil {
		os.Remove(s.path(id, ".msg"))
		return 0, err
	}
	if err = s.syncDir(); err != nil {
		// Not durable: not acknowledged either, so take it back.
		os.Remove(s.path(id, ".env"))
		os.Remove(s.path(id, ".msg"))
		return 0, fmt.Errorf("queue: fsync %s: %w", s.dir, err)
	}
	return size, nil
}

// cleanup closes a temporary file, which releases its lock; on error it
// first removes the file if it is still in tmp/.
func cleanup(f *os.File, err *error) {
	if *err != nil {
		os.Remove(f.Name())
	}
	f.Close()
}

// writeEnv replaces the envelope of id: write in tmp/, fsync, rename over
// the old one, fsync the directory (shared). A crash at any point leaves
// either the old envelope or the new one, whole.
func (s *store) writeEnv(id string, b []byte) (err error) {
	f, err := s.tmpFile(id + ".env")
	if err != nil {
		return err
	}
	defer cleanup(f, &err)
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = s.syncFiles(f); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), s.path(id, ".env")); err != nil {
		return err
	}
	return s.syncDir()
}

// remove removes a record: the envelope first, so that what a crash
// leaves behind is a message without envelope, which cleaning removes.
func (s *store) remove(id string) error {
	if err := os.Remove(s.path(id, ".env")); err != nil && !isNotExist(err) {
		return err
	}
	if err := os.Remove(s.path(id, ".msg")); err != nil && !isNotExist(err) {
		return err
	}
	return s.syncDir()
}

// moveBad moves a damaged record to bad/, where a person can look at it.
func (s *store) moveBad(id string) {
	for _, ext := range []string{".env", ".msg"} {
		os.Rename(s.path(id, ext), filepath.Join(s.bad, id+ext))
	}
	s.syncDir()
}

// tmpFile creates tmp/<name>.<random> and locks it. A cleaner may remove
// the file between its creation and the lock; then the name no longer
// leads to it, and we start again with another name.
func (s *store) tmpFile(name string) (*os.File, error) {
	for range 10 {
		p := filepath.Join(s.tmp, name+"."+nonce())
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(p)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return f, nil
		}
		f.Close()
	}
	return nil, fmt.Errorf("queue: cannot create a file in %s", s.tmp)
}

// abandoned reports whether the file at p is not locked by anyone, and
// if so removes it (holding the lock, so that no writer can take it
// meanwhile). check, if not nil, must also agree with the removal.
func abandoned(p string, check func() bool) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return false
	}
	if check != nil && !check() {
		return false
	}
	return os.Remove(p) == nil
}

// scan lists the records in the directory, after removing what writers
// that died left behind: every unlocked file in tmp/, and every unlocked
// message without an envelope (a crash between the two renames of create,
// or during remove). It returns the ids of the envelopes and the names of
// the files it removed.
func (s *store) scan() (ids, removed []string, err error) {
	tmp, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, nil, err
	}
	for _, de := range tmp {
		if p := filepath.Join(s.tmp, de.Name()); abandoned(p, nil) {
			removed = append(removed, filepath.Join("tmp", de.Name()))
		}
	}
	all, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, de := range all {
		name := de.Name()
		id, ext, _ := strings.Cut(name, ".")
		if !validID(id) {
			continue
		}
		switch "." + ext {
		case ".env":
			ids = append(ids, id)
		case ".msg":
			noEnv := func() bool { _, err := os.Lstat(s.path(id, ".env")); return isNotExist(err) }
			if noEnv() && abandoned(s.path(id, ".msg"), noEnv) {
				removed = append(removed, name)
			}
		}
	}
	if len(removed) > 0 {
		err = s.syncDir()
	}
	return ids, removed, err
}

// load reads the envelope of id and checks that its message is whole. An
// error that is not fs.ErrNotExist means the record is damaged.
func (s *store) load(id string) (*envelope, error) {
	f, err := os.Open(s.path(id, ".env"))
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxEnvSize+1))
	f.Close()
	if err != nil {
		return nil, err
	}
	e, err := parseEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("envelope: %v", err)
	}
	fi, err := os.Stat(s.path(id, ".msg"))
	if err != nil {
		if _, err2 := os.Lstat(s.path(id, ".env")); isNotExist(err2) {
			return nil, err2 // removed meanwhile
		}
		return nil, fmt.Errorf("message: %v", err)
	}
	if fi.Size() != e.size {
		return nil, fmt.Errorf("message is %d bytes, envelope says %d", fi.Size(), e.size)
	}
	return e, nil
}

// lockRunner takes the lock that one runner per directory holds, without
// waiting. It reports false if another process (or Run) has it.
func (s *store) lockRunner() (unlock func(), ok bool, err error) {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return func() { d.Close() }, true, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
