package fs_test

import (
	"bufio"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/knusbaum/go9p/proto"

	"smtpfs/fs"
	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

func TestMalformed(t *testing.T) {
	e := newEnv(t)
	fstest.CheckMalformed(t, e.ds)
}

func TestVersions(t *testing.T) {
	e := newEnv(t)
	fstest.CheckVersions(t, e.ds)
}

func TestFlood(t *testing.T) {
	e := newEnv(t)
	fstest.CheckFlood(t, e.ds, 1000)
}

func TestFlush(t *testing.T) {
	e := newEnv(t)
	e.hub.Write([]byte("Nov 24 15:23:01 smtpd: a recent line\n"))
	fstest.CheckFlush(t, e.ds, "log")
}

// TestRemoveOpen: go9p drops a removed fid without closing its file; the
// loop closes it first, so a log reader removed (and refused) is gone.
func TestRemoveOpen(t *testing.T) {
	e := newEnv(t)
	s := fstest.Session(t, e.ds)
	s.Open(t, 2, "log", proto.Oread)
	if n := e.hub.Followers(); n != 1 {
		t.Fatalf("%d followers, want 1", n)
	}
	fstest.Send(t, s.C, &proto.TRemove{Header: proto.Header{Type: proto.Tremove, Tag: 3}, Fid: 2})
	if r, ok := fstest.Recv(t, s.R).(*proto.RError); !ok || r.Ename != "permission denied" {
		t.Errorf("remove of log: got %v, want permission denied", r)
	}
	if n := e.hub.Followers(); n != 0 {
		t.Errorf("%d followers after remove, want 0", n)
	}
}

// TestWalkChecks: what walk(5) forbids and go9p allows.
func TestWalkChecks(t *testing.T) {
	e := newEnv(t)
	s := fstest.Session(t, e.ds)
	s.Open(t, 2, "ctl", proto.Oread)
	walk := func(fid, newfid uint32, names ...string) proto.FCall {
		fstest.Send(t, s.C, &proto.TWalk{Header: proto.Header{Type: proto.Twalk, Tag: 4}, Fid: fid, Newfid: newfid,
			Nwname: uint16(len(names)), Wname: names})
		return fstest.Recv(t, s.R)
	}
	for _, tc := range []struct {
		what        string
		fid, newfid uint32
		names       []string
		want        string
	}{
		{"walk of an open fid", 2, 3, nil, "walk of an open fid not allowed"},
		{"newfid in use", 1, 2, []string{"queue"}, "fid in use"},
		{"unknown fid", 9, 10, []string{"queue"}, "unknown fid on this connection"},
		{"missing file", 1, 10, []string{"nonesuch"}, "file does not exist"},
	} {
		r, ok := walk(tc.fid, tc.newfid, tc.names...).(*proto.RError)
		if !ok || r.Ename != tc.want {
			t.Errorf("%s: got %v, want %q", tc.what, r, tc.want)
		} else if e := fstest.FuseErrno(r.Ename); e == syscall.ERANGE {
			t.Errorf("%s: %q is ERANGE under 9pfuse: no word of its table", tc.what, r.Ename)
		}
	}
	// A partial walk through ".." leaves no newfid behind.
	if r, ok := walk(1, 10, "..", "ctl").(*proto.RWalk); !ok || r.Nwqid != 0 {
		t.Errorf("walk .. ctl from the root: got %v", r)
	}
	if r, ok := walk(10, 11).(*proto.RError); !ok || r.Ename != "unknown fid on this connection" {
		t.Errorf("newfid of a partial walk: got %v, want unknown fid on this connection", r)
	}
}

// TestClunkThenGone: a message whose Tclunk the client sent is queued even
// when the connection ends right after, before the reply.
func TestClunkThenGone(t *testing.T) {
	e := newEnv(t)
	s := fstest.Session(t, e.ds)
	s.Open(t, 2, "queue", proto.Owrite)
	fstest.Send(t, s.C, &proto.TWrite{Header: proto.Header{Type: proto.Twrite, Tag: 3}, Fid: 2, Count: uint32(len(message)), Data: []byte(message)})
	if r, ok := fstest.Recv(t, s.R).(*proto.RWrite); !ok {
		t.Fatalf("Twrite: %v", r)
	}
	fstest.Send(t, s.C, &proto.TClunk{Header: proto.Header{Type: proto.Tclunk, Tag: 4}, Fid: 2})
	s.C.Close()
	testlib.WaitFor(t, 10*time.Second, "the message queued", func() bool { return len(e.q.got()) == 1 })
}

func TestMaxConns(t *testing.T) {
	e := newEnv(t, func(c *fs.Config) { c.MaxConns = 3 })
	for range 3 {
		fstest.Session(t, e.ds)
	}
	c := fstest.DialRaw(t, e.ds)
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("a connection beyond the limit was served: read %d bytes", n)
	}
	waitLog(t, e, "9p: refused a connection: 3 connections already\n")
}

// TestPipelined sends walk, open, read and clunk of one fid without
// waiting for replies, as a 9P client may: go9p would race on its record
// of the fid (run with -race), and every request gets one reply.
func TestPipelined(t *testing.T) {
	e := newEnv(t)
	s := fstest.Session(t, e.ds)
	hd := func(typ uint8, tag uint16) proto.Header { return proto.Header{Type: typ, Tag: tag} }
	for i := range 50 {
		fstest.Send(t, s.C,
			&proto.TWalk{Header: hd(proto.Twalk, 1), Fid: 1, Newfid: 2, Nwname: 1, Wname: []string{"ctl"}},
			&proto.TOpen{Header: hd(proto.Topen, 2), Fid: 2, Mode: proto.Ordwr},
			&proto.TRead{Header: hd(proto.Tread, 3), Fid: 2, Count: 100},
			&proto.TWrite{Header: hd(proto.Twrite, 4), Fid: 2, Count: 10, Data: []byte("tarpit on\n")},
			&proto.TStat{Header: hd(proto.Tstat, 5), Fid: 2})
		seen := map[uint16]bool{}
		for range 5 {
			seen[fstest.Recv(t, s.R).GetTag()] = true
		}
		fstest.Send(t, s.C, &proto.TClunk{Header: hd(proto.Tclunk, 6), Fid: 2})
		if r := fstest.Recv(t, s.R); r.GetTag() != 6 || len(seen) != 5 {
			t.Fatalf("round %d: replies to tags %v, then %v", i, seen, r)
		}
	}
}

// TestMaxFids: a connection may have fs.MaxFids fids; a Twalk or Tattach
// that would make one more gets "too many fids in use", logged once, and
// the connection goes on: a walk of a fid to itself still works, and a
// fid clunked makes room for another.
func TestMaxFids(t *testing.T) {
	e := newEnv(t)
	s := fstest.Session(t, e.ds) // fid 1 is the root
	h := func(typ uint8, tag uint16) proto.Header { return proto.Header{Type: typ, Tag: tag} }
	n := fs.MaxFids - 1 // clones of fid 1: fids 2 .. MaxFids
	go func() {
		w := bufio.NewWriter(s.C)
		for i := range n {
			w.Write((&proto.TWalk{Header: h(proto.Twalk, uint16(i)), Fid: 1, Newfid: uint32(2 + i)}).Compose())
		}
		w.Flush()
	}()
	for range n {
		if r, ok := fstest.Recv(t, s.R).(*proto.RWalk); !ok {
			t.Fatalf("walk %d fids: %v", fs.MaxFids, r)
		}
	}
	expect := func(what string, m proto.FCall, want string) proto.FCall {
		t.Helper()
		fstest.Send(t, s.C, m)
		r := fstest.Recv(t, s.R)
		if e, isErr := r.(*proto.RError); isErr != (want != "") || isErr && e.Ename != want {
			t.Errorf("%s: got %v, want %q", what, r, want)
		}
		return r
	}
	const extra = fs.MaxFids + 10
	expect("one walk more", &proto.TWalk{Header: h(proto.Twalk, 1), Fid: 1, Newfid: extra}, "too many fids in use")
	expect("one attach more", &proto.TAttach{Header: h(proto.Tattach, 1), Fid: extra, Afid: ^uint32(0), Uname: fstest.User}, "too many fids in use")
	expect("a walk to itself", &proto.TWalk{Header: h(proto.Twalk, 1), Fid: 2, Newfid: 2, Nwname: 1, Wname: []string{"version"}}, "")
	expect("clunk", &proto.TClunk{Header: h(proto.Tclunk, 1), Fid: 3}, "")
	expect("walk after a clunk", &proto.TWalk{Header: h(proto.Twalk, 1), Fid: 1, Newfid: extra, Nwname: 1, Wname: []string{"version"}}, "")
	expect("open", &proto.TOpen{Header: h(proto.Topen, 1), Fid: extra, Mode: proto.Oread}, "")
	if r, ok := expect("read", &proto.TRead{Header: h(proto.Tread, 1), Fid: extra, Count: 100}, "").(*proto.RRead); !ok || string(r.Data) != "smtpfs test\n" {
		t.Errorf("read version: %v", r)
	}
	waitLog(t, e, "Twalk refused: too many fids in use (16384, the most a connection may have)")
	if n := strings.Count(string(e.hub.Recent()), "too many fids"); n != 1 {
		t.Errorf("%d log lines of too many fids, want 1:\n%s", n, e.hub.Recent())
	}
}
