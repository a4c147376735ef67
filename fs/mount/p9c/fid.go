package p9c

import (
	"context"
	"fmt"

	"9fans.net/go/plan9"
)

// A Fid is a file of the server's tree, walked to and maybe opened. Its
// methods may be called at once, except that Open and Create must come
// before the reads and writes they allow.
type Fid struct {
	c      *Conn
	num    uint32
	qid    plan9.Qid
	iounit uint32
}

// Qid returns the file's qid, as the walk or open that made the fid said.
func (f *Fid) Qid() plan9.Qid { return f.qid }

// Walk walks from f along names (at most plan9.MAXWELEM) to a new fid; no
// names clones f. A walk that stops short fails: "file does not exist".
func (f *Fid) Walk(ctx context.Context, names ...string) (*Fid, error) {
	if len(names) > plan9.MAXWELEM {
		return nil, fmt.Errorf("walk of %d names: more than %d", len(names), plan9.MAXWELEM)
	}
	nf, err := f.c.newFid()
	if err != nil {
		return nil, err
	}
	rx, err := f.c.rpc(ctx, &plan9.Fcall{Type: plan9.Twalk, Fid: f.num, Newfid: nf, Wname: names})
	if err == nil && len(rx.Wqid) != len(names) {
		err = errNotExist // walk(5): newfid is not made
	}
	if err != nil {
		f.c.freeFid(nf)
		return nil, err
	}
	qid := f.qid
	if len(names) > 0 {
		qid = rx.Wqid[len(names)-1]
	}
	return &Fid{c: f.c, num: nf, qid: qid}, nil
}

// Open opens the file with a 9P mode (plan9.OREAD, OWRITE, ORDWR, maybe
// with OTRUNC).
func (f *Fid) Open(ctx context.Context, mode uint8) error {
	rx, err := f.c.rpc(ctx, &plan9.Fcall{Type: plan9.Topen, Fid: f.num, Mode: mode})
	if err != nil {
		return err
	}
	f.qid, f.iounit = rx.Qid, rx.Iounit
	return nil
}

// Create creates name in the directory f and opens it with mode; f is
// the new file from then on.
func (f *Fid) Create(ctx context.Context, name string, perm plan9.Perm, mode uint8) error {
	rx, err := f.c.rpc(ctx, &plan9.Fcall{Type: plan9.Tcreate, Fid: f.num, Name: name, Perm: perm, Mode: mode})
	if err != nil {
		return err
	}
	f.qid, f.iounit = rx.Qid, rx.Iounit
	return nil
}

// IOUnit returns the most bytes one read or write message carries.
func (f *Fid) IOUnit() int {
	n := f.c.msize - plan9.IOHDRSIZE
	if f.iounit > 0 && f.iounit < n {
		n = f.iounit
	}
	return int(n)
}

// ReadAt reads once, at most IOUnit bytes, into p from offset off. It
// returns 0 at the end of the file.
func (f *Fid) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n := min(len(p), f.IOUnit())
	rx, err := f.c.rpc(ctx, &plan9.Fcall{Type: plan9.Tread, Fid: f.num, Offset: uint64(off), Count: uint32(n)})
	if err != nil {
		return 0, err
	}
	if len(rx.Data) > n {
		f.c.fail(fmt.Errorf("Rread of %d bytes for %d asked", len(rx.Data), n))
		return 0, f.c.lost()
	}
	return copy(p, rx.Data), nil
}

// WriteAt writes p at offset off, in messages of at most IOUnit bytes. It
// returns how much was written: all of p, or less with an error, or less
// when the server took less.
func (f *Fid) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) || len(p) == 0 {
		n := min(len(p)-done, f.IOUnit())
		rx, err := f.c.rpc(ctx, &plan9.Fcall{Type: plan9.Twrite, Fid: f.num, Offset: uint64(off) + uint64(done), Data: p[done : done+n]})
		if err != nil {
			return done, err
		}
		if rx.Count > uint32(n) {
			f.c.fail(fmt.Errorf("Rwrite of %d bytes for %d written", rx.Count, n))
			return done, f.c.lost()
		}
		done += int(rx.Count)
		if int(rx.Count) < n || len(p) == 0 {
			break
		}
	}
	return done, nil
}

// Stat returns the file's directory entry.
func (f *Fid) Stat(ctx context.Context) (*plan9.Dir, error) {
	rx, err := f.c.rpc(ctx, &plan9.Fcall{Type: plan9.Tstat, Fid: f.num})
	if err != nil {
		return nil, err
	}
	return plan9.UnmarshalDir(rx.Stat)
}

// Wstat changes the file's directory entry: the fields of d that are not
// "don't touch" (plan9.Dir.Null).
func (f *Fid) Wstat(ctx context.Context, d *plan9.Dir) error {
	b, err := d.Bytes()
	if err != nil {
		return err
	}
	_, err = f.c.rpc(ctx, &plan9.Fcall{Type: plan9.Twstat, Fid: f.num, Stat: b})
	return err
}

// Clunk forgets the fid; its error is the server's, and the fid is gone
// either way (clunk(5)). It is never flushed: a flushed clunk would leave
// the fid in doubt.
func (f *Fid) Clunk() error {
	_, err := f.c.rpc(context.Background(), &plan9.Fcall{Type: plan9.Tclunk, Fid: f.num})
	f.c.freeFid(f.num)
	return err
}

// Remove removes the file and forgets the fid, which is gone whether the
// removal succeeded or not (remove(5)). It is never flushed.
func (f *Fid) Remove() error {
	_, err := f.c.rpc(context.Background(), &plan9.Fcall{Type: plan9.Tremove, Fid: f.num})
	f.c.freeFid(f.num)
	return err
}
