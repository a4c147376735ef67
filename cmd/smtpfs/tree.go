package main

import (
	"context"
	"fmt"
	"strings"

	"smtpfs/fs"
	"smtpfs/grey"
	"smtpfs/smtp/queue"
)

// The adapters between the engines and the 9P tree's interfaces.

// control is the ctl file: the daemon's configuration.
type control struct{ d *daemon }

func (c control) Ctl(text string) error { return c.d.Ctl(text) }
func (c control) Config() string        { return c.d.ConfigText() }

// whitelistFile is the whitelist file: the whitelist of the greylist's
// store of the moment (grey/whitelist, or the one shared in Redis).
type whitelistFile struct{ g *grey.Greylist }

func (f whitelistFile) Text() []byte {
	b, err := f.g.Whitelist().Bytes()
	if err != nil {
		return []byte("# whitelist unreadable: " + err.Error() + "\n")
	}
	return b
}

func (f whitelistFile) Add(text string) error { return listError(f.g.Whitelist().Add(text)) }

// blockedFile is the blocked file: lib/blocked.
type blockedFile struct{ b *grey.Blocked }

func (f blockedFile) Text() []byte {
	s, err := f.b.Text()
	if err != nil {
		return []byte("# lib/blocked unreadable: " + err.Error() + "\n")
	}
	return []byte(s)
}

func (f blockedFile) Add(text string) error { return listError(f.b.Add(text)) }

// listError tells the tree which kind of error an append to the
// whitelist or lib/blocked failed with, for the errno a shell gets: grey
// calls a bad line "invalid ...", the list at its limit "... too long"
// (E2BIG); any other failure is one of storing it (EIO).
func listError(err error) error {
	switch {
	case err == nil, strings.HasPrefix(err.Error(), "invalid "):
		return err
	case strings.HasSuffix(err.Error(), "too long") || strings.Contains(err.Error(), "file too long"):
		return fs.WithKind(err, fs.ErrTooLong)
	}
	return fs.WithKind(err, fs.ErrIO)
}

// queueFile is the queue file and the queue.d directory.
type queueFile struct{ q *queue.Queue }

func (f queueFile) List() []queue.Item { return f.q.List() }

// Generation lets queue.d keep its listing while the same ids are queued.
func (f queueFile) Generation() uint64 { return f.q.Generation() }

// Check checks the header, and that the queue has room for the message:
// a shell's write fails while it has not (minfree).
func (f queueFile) Check(header []byte) error { return f.q.CheckHeader(header) }

func (f queueFile) Submit(ctx context.Context, msg []byte) (string, error) {
	return f.q.Submit(ctx, msg)
}

func (f queueFile) OpenMessage(id string) (fs.MessageReader, error) {
	m, err := f.q.OpenMessage(id)
	if err != nil {
		if strings.HasPrefix(err.Error(), "not found") { // queue's word for an id not queued
			err = fmt.Errorf("%w: %s", fs.ErrNotFound, id)
		}
		return nil, err // not a nil *os.File in a non-nil interface
	}
	return m, nil
}
