package queue

import (
	"os"

	"golang.org/x/sys/unix"
)

// flush makes files durable with one syncfs(2) of the file system that
// holds the queue: one journal commit and one device flush for a whole
// batch, where fsyncing each file costs one per file. Should syncfs fail
// (it reports writeback errors since Linux 5.8), each file is fsynced.
func (s *store) flush(files []*os.File) error {
	if len(files) == 1 {
		return files[0].Sync()
	}
	if unix.Syncfs(int(s.d.Fd())) == nil {
		return nil
	}
	return syncEach(files)
}
