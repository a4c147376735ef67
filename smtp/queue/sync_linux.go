package queue

import (
	"bufio"
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxDirty bounds the dirty page cache under which a batch is made
// durable with syncfs. syncfs writes back everything waiting on the file
// system, other programs' data too: with 1.6 GB of someone else's writes
// waiting, one took 1.2 s where an fsync of our files took 30 ms. 64 MB
// is a few tens of milliseconds of writing on an ordinary disk.
const maxDirty = 64 << 20

// flush makes files durable with one syncfs(2) of the file system that
// holds the queue: one journal commit and one device flush for a whole
// batch, where fsyncing each file costs one per file. When the machine
// has much unwritten data (maxDirty), whose writing syncfs would wait
// for, or should syncfs fail (it reports writeback errors since Linux
// 5.8), each file is fsynced instead.
func (s *store) flush(files []*os.File) error {
	if len(files) == 1 {
		return files[0].Sync()
	}
	if d, ok := dirtyBytes(); !ok || d <= maxDirty {
		if unix.Syncfs(int(s.d.Fd())) == nil {
			return nil
		}
	}
	return syncEach(files)
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
