// Package p9c is a 9P2000 client (Plan 9 manual section 5) for smtpfs's
// FUSE mount: one connection, many requests in flight, each under its own
// tag, and a request whose context ends is flushed (flush(5)).
//
// Why a client of its own: 9fans.net/go/plan9/client, the module's 9P
// client, never sends Tflush, so a read blocked in the server (smtpfs's log
// file) can end only with data, and the process behind it sits in an
// uninterruptible wait until then; go9p's client is mount9p's, which never
// flushes either. The messages themselves are marshalled by
// 9fans.net/go/plan9 (Fcall, Dir).
//
// Flush. When the context of a request ends before its reply, Tflush(oldtag)
// goes out under a tag of its own and the request waits for the Rflush
// (flush(5): the old tag may not be reused before it). A reply to the old
// request that comes first is honoured, since the request then happened (a
// walk made its fid); without one, the request never happened and fails
// with ErrInterrupted.
//
// Bounds. msize is negotiated by Tversion: DefaultMsize is proposed, the
// server may lower it but not below MinMsize, and a reply whose size
// passes msize ends the connection before it is read. Reads and writes
// are cut to msize-IOHDRSIZE, and to the iounit of Ropen. At most
// MaxInflight requests are in flight (a further one waits for a tag, as
// long as its context allows); at most MaxFids fids exist at once.
package p9c

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"9fans.net/go/plan9"
)

const (
	// DefaultMsize is the msize proposed: 64 KiB of data a message.
	DefaultMsize = 64<<10 + plan9.IOHDRSIZE
	// MinMsize is the smallest msize accepted: a stat and some data.
	MinMsize = 512
	// MaxInflight bounds the requests in flight on a connection. smtpfs
	// serves 64 at once per connection, and reads no more until one is done.
	MaxInflight = 64
	// MaxFids bounds the fids of a connection.
	MaxFids = 4096
	// handshake bounds Tversion.
	handshake = 30 * time.Second

	noTag = ^uint16(0)
	noFid = ^uint32(0)
)

// An Error is the text of an Rerror, as the server wrote it.
type Error string

func (e Error) Error() string { return string(e) }

var (
	// ErrInterrupted is the error of a request flushed before its reply.
	ErrInterrupted = errors.New("interrupted")
	// ErrTooManyFids is the error of a walk or attach beyond MaxFids.
	ErrTooManyFids = errors.New("too many fids")
	// errNotExist is a walk that stopped short of its last name.
	errNotExist = Error("file does not exist")
)

// A Conn is a 9P connection. Its methods may be called at once from any
// number of goroutines.
type Conn struct {
	nc    net.Conn
	msize uint32
	tags  chan uint16 // free tags of requests; a request's Tflush uses tag+MaxInflight

	wmu sync.Mutex // one message written at a time

	mu      sync.Mutex
	pending map[uint16]chan *plan9.Fcall
	nextFid uint32
	free    []uint32 // fids clunked, for reuse
	nfids   int
	err     error // why the connection ended

	done chan struct{}
	once sync.Once
}

// New speaks Tversion on nc, proposing msize (DefaultMsize if 0), and
// returns the connection. nc is closed when the connection ends.
func New(nc net.Conn, msize uint32) (*Conn, error) {
	if msize == 0 {
		msize = DefaultMsize
	}
	nc.SetDeadline(time.Now().Add(handshake))
	if err := writeFcall(nc, &plan9.Fcall{Type: plan9.Tversion, Tag: noTag, Msize: msize, Version: "9P2000"}); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 16<<10)
	rx, err := readFcall(br, msize)
	if err == nil {
		err = versionError(rx, msize)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("9P version: %w", err)
	}
	nc.SetDeadline(time.Time{})
	c := &Conn{nc: nc, msize: rx.Msize, tags: make(chan uint16, MaxInflight),
		pending: map[uint16]chan *plan9.Fcall{}, done: make(chan struct{})}
	for t := range uint16(MaxInflight) {
		c.tags <- t
	}
	go c.read(br)
	return c, nil
}

// versionError checks an Rversion: 9P2000, and an msize we can live with.
func versionError(rx *plan9.Fcall, msize uint32) error {
	switch {
	case rx.Type == plan9.Rerror:
		return Error(rx.Ename)
	case rx.Type != plan9.Rversion || rx.Tag != noTag:
		return fmt.Errorf("unexpected reply %v", rx)
	case rx.Version != "9P2000":
		return fmt.Errorf("server speaks %q, not 9P2000", rx.Version)
	case rx.Msize > msize || rx.Msize < MinMsize:
		return fmt.Errorf("msize %d is not within %d..%d", rx.Msize, MinMsize, msize)
	}
	return nil
}

// Msize returns the negotiated message size.
func (c *Conn) Msize() uint32 { return c.msize }

// Done is closed when the connection has ended: closed, or lost.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, nil while it lasts.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection; requests in flight fail.
func (c *Conn) Close() error {
	c.fail(errors.New("connection closed"))
	return nil
}

// fail ends the connection for err, once.
func (c *Conn) fail(err error) {
	c.once.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		c.nc.Close()
		close(c.done)
	})
}

// read hands each reply to the request waiting for its tag. A reply that
// no request waits for, or one that cannot be read, ends the connection.
func (c *Conn) read(br *bufio.Reader) {
	for {
		rx, err := readFcall(br, c.msize)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the server hung up")
			}
			c.fail(err)
			return
		}
		c.mu.Lock()
		ch := c.pending[rx.Tag]
		delete(c.pending, rx.Tag)
		c.mu.Unlock()
		if ch == nil {
			c.fail(fmt.Errorf("reply to tag %d, which no request has", rx.Tag))
			return
		}
		ch <- rx
	}
}

// readFcall reads one message of at most msize bytes.
func readFcall(br *bufio.Reader, msize uint32) (*plan9.Fcall, error) {
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint32(h[:])
	if size < 7 || size > msize {
		return nil, fmt.Errorf("message of %d bytes, msize %d", size, msize)
	}
	b := make([]byte, size)
	copy(b, h[:])
	if _, err := io.ReadFull(br, b[4:]); err != nil {
		return nil, err
	}
	return plan9.UnmarshalFcall(b)
}

func writeFcall(w io.Writer, f *plan9.Fcall) error {
	b, err := f.Bytes()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// send writes tx, whose tag is registered; a failure ends the connection.
func (c *Conn) send(tx *plan9.Fcall) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := writeFcall(c.nc, tx); err != nil {
		c.fail(err)
		return err
	}
	return nil
}

// await registers tag and returns the channel its reply comes on.
func (c *Conn) await(tag uint16) chan *plan9.Fcall {
	ch := make(chan *plan9.Fcall, 1)
	c.mu.Lock()
	c.pending[tag] = ch
	c.mu.Unlock()
	return ch
}

func (c *Conn) forget(tag uint16) {
	c.mu.Lock()
	delete(c.pending, tag)
	c.mu.Unlock()
}

// lost returns the error of a request on an ended connection.
func (c *Conn) lost() error {
	return fmt.Errorf("9P connection lost: %w", c.Err())
}

// rpc sends tx and returns its reply: the R-message of its type, or an
// Error for an Rerror. If ctx ends first, the request is flushed.
func (c *Conn) rpc(ctx context.Context, tx *plan9.Fcall) (*plan9.Fcall, error) {
	var tag uint16
	select {
	case tag = <-c.tags:
	case <-ctx.Done():
		return nil, ErrInterrupted
	case <-c.done:
		return nil, c.lost()
	}
	tx.Tag = tag
	ch := c.await(tag)
	if err := c.send(tx); err != nil {
		return nil, c.lost() // the tag is not given back: the connection is over
	}
	var rx *plan9.Fcall
	select {
	case rx = <-ch:
	case <-c.done:
		return nil, c.lost()
	case <-ctx.Done():
		var err error
		if rx, err = c.flush(tag, ch); err != nil {
			return nil, err
		}
	}
	c.tags <- tag
	return reply(tx, rx)
}

// flush flushes the request under tag, whose reply would come on ch, and
// returns that reply if it came before the Rflush; ErrInterrupted if not.
func (c *Conn) flush(tag uint16, ch chan *plan9.Fcall) (*plan9.Fcall, error) {
	ftag := tag + MaxInflight
	fch := c.await(ftag)
	if err := c.send(&plan9.Fcall{Type: plan9.Tflush, Tag: ftag, Oldtag: tag}); err != nil {
		return nil, c.lost()
	}
	var rx *plan9.Fcall
	for {
		select {
		case rx = <-ch:
			ch = nil // one reply only
		case r := <-fch:
			if r.Type != plan9.Rflush {
				c.fail(fmt.Errorf("reply %v to Tflush", r))
				return nil, c.lost()
			}
			if rx == nil && ch != nil {
				select { // a reply read before the Rflush is on ch by now
				case rx = <-ch:
				default:
				}
			}
			if rx == nil {
				c.forget(tag) // no reply will come
				c.tags <- tag
				return nil, ErrInterrupted
			}
			return rx, nil
		case <-c.done:
			return nil, c.lost()
		}
	}
}

// reply checks that rx answers tx.
func reply(tx, rx *plan9.Fcall) (*plan9.Fcall, error) {
	if rx.Type == plan9.Rerror {
		return nil, Error(rx.Ename)
	}
	if rx.Type != tx.Type+1 {
		return nil, fmt.Errorf("9P: reply %v to %v", rx, tx)
	}
	return rx, nil
}

// newFid allocates a fid number.
func (c *Conn) newFid() (uint32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nfids >= MaxFids {
		return 0, ErrTooManyFids
	}
	c.nfids++
	if n := len(c.free); n > 0 {
		f := c.free[n-1]
		c.free = c.free[:n-1]
		return f, nil
	}
	c.nextFid++
	return c.nextFid, nil
}

func (c *Conn) freeFid(f uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nfids--
	c.free = append(c.free, f)
}

// Attach attaches to the tree aname as uname, without authentication.
func (c *Conn) Attach(ctx context.Context, uname, aname string) (*Fid, error) {
	fid, err := c.newFid()
	if err != nil {
		return nil, err
	}
	rx, err := c.rpc(ctx, &plan9.Fcall{Type: plan9.Tattach, Fid: fid, Afid: noFid, Uname: uname, Aname: aname})
	if err != nil {
		c.freeFid(fid)
		return nil, err
	}
	return &Fid{c: c, num: fid, qid: rx.Qid}, nil
}
