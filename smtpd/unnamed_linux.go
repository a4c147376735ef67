package smtpd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// errNoUnnamed says that the system cannot make or link unnamed files.
var errNoUnnamed = errors.New("no unnamed files")

// procFDs reports whether /proc/self/fd is there for linkUnnamed; where
// it is not (a chroot, a container without /proc), the file could be
// written but never named, and each delivery would fail after taking the
// message.
var procFDs = sync.OnceValue(func() bool {
	fi, err := os.Stat("/proc/self/fd")
	return err == nil && fi.IsDir()
})

// openUnnamed opens a new file in dir that has no name (open(2),
// O_TMPFILE: Linux 3.11, on ext4, xfs, btrfs, tmpfs...): a crash before
// it is linked leaves nothing in the directory. Without /proc it says
// errNoUnnamed, as linkUnnamed could not name the file.
func openUnnamed(dir string) (*os.File, error) {
	if !procFDs() {
		return nil, errNoUnnamed
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0600)
	switch {
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EISDIR), errors.Is(err, unix.EINVAL):
		return nil, errNoUnnamed
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, "(unnamed)")), nil
}

// linkUnnamed gives f, from openUnnamed, the name path. It links through
// /proc/self/fd, as linkat(2) with AT_EMPTY_PATH would need a privilege.
func linkUnnamed(f *os.File, path string) error {
	proc := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.ENOENT) {
		if _, serr := os.Stat("/proc/self/fd"); serr != nil {
			return fmt.Errorf("linking %s: %w (/proc is not mounted)", path, errNoUnnamed)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "link", Old: proc, New: path, Err: err}
	}
	return nil
}
