package durable

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// maxDirty bounds the dirty page cache under which a batch is made
// durable with syncfs. syncfs writes back everything waiting on the file
// system, other programs' data too: with 1.6 GB of someone else's writes
// waiting, one took 1.2 s where an fsync of our files took 30 ms. 64 MB
// is a few tens of milliseconds of writing on an ordinary disk.
const maxDirty = 64 << 20

// Flush makes the contents of files durable with one syncfs(2) per file
// system holding them: one journal commit and one device flush for a
// whole batch, where fsyncing each file costs one per file; then each
// file's own writeback errors are collected (writebackErrors). When the
// machine has much unwritten data (maxDirty), whose writing syncfs would
// wait for, or should syncfs fail, each file is fsynced instead; and
// always on a kernel older than 5.8, whose syncfs returns success even
// when writing a file back failed (kernelSyncfsOK).
func Flush(files []*os.File) error {
	if len(files) < 2 || !kernelSyncfsOK() {
		return SyncEach(files)
	}
	if d, ok := dirtyBytes(); ok && d > maxDirty {
		return SyncEach(files)
	}
	seen := map[uint64]bool{}
	for _, f := range files {
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) != nil {
			return SyncEach(files)
		}
		if seen[st.Dev] {
			continue
		}
		seen[st.Dev] = true
		if unix.Syncfs(int(f.Fd())) != nil {
			return SyncEach(files)
		}
	}
	return writebackErrors(files)
}

// writebackErrors reports the writeback errors of each file since it was
// last asked. syncfs reports an error of the file system only once, to
// the first file descriptor that asks after it: a page of one file that
// failed to be written back (by the flusher, while a long message was
// coming in) fails the batch whose syncfs comes next, and a later batch
// holding that file would be told success. Each file's own error is
// kept for that file, and sync_file_range with only WAIT_AFTER reads it
// without writing or flushing anything (the pages are clean after
// syncfs).
func writebackErrors(files []*os.File) error {
	var errs []error
	for _, f := range files {
		if err := unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
			errs = append(errs, &os.PathError{Op: "sync", Path: f.Name(), Err: err})
		}
	}
	return errors.Join(errs...)
}

// kernelSyncfsOK reports whether this kernel's syncfs reports writeback
// errors, which Linux does since 5.8 (commit 735e4ae5ba28, "vfs: track
// per-sb writeback errors and report them to syncfs"). Before it a
// syncfs after a failed writeback said success: a message acknowledged
// and not on disk. The kernel is asked once.
var kernelSyncfsOK = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return syncfsReportsErrors(unix.ByteSliceToString(u.Release[:]))
})

// syncfsReportsErrors reads a kernel release ("6.18.44-fc-v657",
// "5.4.0-150-generic", "5.8-rc1") and reports whether it is 5.8 or later;
// false when it cannot tell.
func syncfsReportsErrors(release string) bool {
	f := strings.SplitN(release, ".", 3)
	if len(f) < 2 {
		return false
	}
	// The minor number may run on into a suffix: 5.8-rc1.
	n := strings.IndexFunc(f[1], func(r rune) bool { return r < '0' || r > '9' })
	if n >= 0 {
		f[1] = f[1][:n]
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 8
}

// dirtyBytes returns how much of the page cache waits to be written, on
// every file system: the Dirty line of /proc/meminfo; false when it
// cannot tell.
func dirtyBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	return parseDirty(b)
}

// parseDirty finds "Dirty:   1234 kB" in the text of /proc/meminfo.
func parseDirty(meminfo []byte) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("Dirty:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, false
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || n < 0 {
			return 0, false
		}
		return n << 10, true
	}
	return 0, false
}
