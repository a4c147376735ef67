//go:build !(linux || darwin || freebsd)

package queue

// statfsFree cannot tell the free space here: Settings.MinFree is not
// enforced on this system.
func statfsFree(dir string) (int64, error) { return 0, errNoStatfs }
