//go:build !linux

package smtpd

import (
	"errors"
	"os"
)

// errNoUnnamed says that the system cannot make or link unnamed files.
var errNoUnnamed = errors.New("no unnamed files")

func openUnnamed(dir string) (*os.File, error) { return nil, errNoUnnamed }

func linkUnnamed(f *os.File, path string) error { return errNoUnnamed }
