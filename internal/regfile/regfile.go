// Package regfile reads the files an operator names (a certificate for
// tlscert, smtpd.conf, lib/secrets) the one safe way: only if they are
// regular files, and only up to a size.
//
// A name can point anywhere: at a FIFO, whose open for reading waits for a
// writer that may never come; at /dev/zero, which never ends; at a huge
// log file. The daemon reads such files while it changes its
// configuration, and must neither hang nor fill its memory. So the file
// is opened with O_NONBLOCK, which makes the open of a FIFO return at
// once (and O_NOCTTY, so that a terminal cannot become ours), then
// fstat tells what was opened, through any symbolic link: anything but a
// regular file is refused, and so is a file longer than the caller's
// bound, whether its size said so or its reading found out (a file that
// grows, or a /proc file that says 0).
package regfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// ErrNotRegular is the error of a name that is not a regular file: a
// FIFO, a device, a socket, a directory.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is the error (errors.Is) of a file longer than the bound.
var ErrTooLarge = errors.New("file too large")

type tooLarge struct{ max int64 }

func (e tooLarge) Error() string        { return fmt.Sprintf("larger than %d bytes", e.max) }
func (e tooLarge) Is(target error) bool { return target == ErrTooLarge }

// Open opens name for reading if it is a regular file, without waiting
// on a FIFO or a device, and returns it with its FileInfo. Anything else
// is ErrNotRegular; errors of the open itself are the os package's.
func Open(name string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = ErrNotRegular
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// Read returns the contents of the regular file name, of at most max
// bytes: a longer file is an error (ErrTooLarge), read no further than
// max+1 bytes.
func Read(name string, max int64) ([]byte, error) {
	f, fi, err := Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > max {
		return nil, tooLarge{max}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, tooLarge{max}
	}
	return b, nil
}

// Reason is err as a reason to put after a file's name in an error: an
// error of the os package without the operation and the name it repeats
// ("no such file or directory", not "open /x: no such file or directory").
func Reason(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
