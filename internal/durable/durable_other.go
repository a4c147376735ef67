//go:build !linux

package durable

import "os"

// Flush makes the contents of files durable, fsyncing them all at once.
func Flush(files []*os.File) error { return SyncEach(files) }
