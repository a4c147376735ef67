//go:build !linux

package queue

import "os"

// flush makes files durable, fsyncing them all at once.
func (s *store) flush(files []*os.File) error { return syncEach(files) }
