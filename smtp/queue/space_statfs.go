//go:build linux || darwin || freebsd

package queue

import "syscall"

// statfsFree returns the bytes of the file system holding dir that an
// unprivileged process may still use (f_bavail: the blocks reserved for
// root are not ours to count on).
func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
