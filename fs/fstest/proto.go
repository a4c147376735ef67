package fstest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/knusbaum/go9p/proto"
)

const noFid = ^uint32(0)

func hdr(typ uint8, tag uint16) proto.Header { return proto.Header{Type: typ, Tag: tag} }

// Frame builds a 9P message from its type, tag and body, with a correct
// size field: for messages go9p's proto cannot compose (malformed ones).
func Frame(typ uint8, tag uint16, body []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(7+len(body)))
	b = append(b, typ)
	b = binary.LittleEndian.AppendUint16(b, tag)
	return append(b, body...)
}

// RawSession is a raw 9P connection that has done Tversion and attached
// its fid 1 to the root.
type RawSession struct {
	C net.Conn
	R *bufio.Reader
}

// Session dials dialstring and sets up a RawSession.
func Session(t testing.TB, dialstring string) *RawSession {
	t.Helper()
	c := DialRaw(t, dialstring)
	s := &RawSession{C: c, R: bufio.NewReader(c)}
	Version(t, c, s.R)
	Send(t, c, &proto.TAttach{Header: hdr(proto.Tattach, 1), Fid: 1, Afid: noFid, Uname: User})
	if r, ok := Recv(t, s.R).(*proto.RAttach); !ok {
		t.Fatalf("Tattach: got %v", r)
	}
	return s
}

// Open walks fid 1 to name as fid and opens it with mode.
func (s *RawSession) Open(t testing.TB, fid uint32, name string, mode proto.Mode) {
	t.Helper()
	Send(t, s.C, &proto.TWalk{Header: hdr(proto.Twalk, 1), Fid: 1, Newfid: fid, Nwname: 1, Wname: []string{name}})
	if r, ok := Recv(t, s.R).(*proto.RWalk); !ok || r.Nwqid != 1 {
		t.Fatalf("Twalk %s: got %v", name, r)
	}
	Send(t, s.C, &proto.TOpen{Header: hdr(proto.Topen, 1), Fid: fid, Mode: mode})
	if r, ok := Recv(t, s.R).(*proto.ROpen); !ok {
		t.Fatalf("Topen %s: got %v", name, r)
	}
}

// closed reports whether the server closes c within Timeout, whatever it
// sends before.
func closed(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(Timeout))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// CheckMalformed sends messages no 9P server should die of, each on a
// connection of its own, and checks the answer: an Rerror when the
// message's size is sound (and the connection goes on), the end of the
// connection when it is not. After each, a fresh client must still be
// served.
func CheckMalformed(t *testing.T, dialstring string) {
	le32 := func(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }
	// Twrite fid 1, offset 0, count 1000, and 4 bytes of data.
	badWrite := append(append(append(le32(1), make([]byte, 8)...), le32(1000)...), "abcd"...)
	var deepWalk []byte
	deepWalk = append(deepWalk, le32(1)...)
	deepWalk = append(deepWalk, le32(2)...)
	deepWalk = binary.LittleEndian.AppendUint16(deepWalk, 17)
	for range 17 {
		deepWalk = append(deepWalk, 1, 0, 'x')
	}
	const gone = ""
	for _, tc := range []struct {
		name    string
		session bool // version and attach first
		data    []byte
		want    string // the Rerror, or gone for the end of the connection
	}{
		{"http garbage", false, []byte("GET / HTTP/1.0\r\n\r\n"), gone},
		{"size 0", false, le32(0), gone},
		{"size 2", false, append(le32(2), 0, 0, 0), gone},
		{"size 6", false, append(le32(6), 100, 0), gone},
		{"huge size", false, append(le32(0xFFFFFFF0), 118, 1, 0), gone},
		{"size above msize", true, append(le32(8193), make([]byte, 100)...), gone},
		{"before Tversion", false, (&proto.TAttach{Header: hdr(proto.Tattach, 7), Fid: 1, Afid: noFid, Uname: User}).Compose(), "version not negotiated"},
		{"twrite count beyond its data", true, Frame(proto.Twrite, 7, badWrite), "invalid 9P message"},
		{"unknown type", true, Frame(99, 7, []byte("xyz")), "invalid 9P message"},
		{"Terror", true, Frame(proto.Terror, 7, nil), "invalid 9P message"},
		{"an R-message", true, (&proto.RClunk{Header: hdr(proto.Rclunk, 7)}).Compose(), "invalid 9P message"},
		{"walk of 17 names", true, Frame(proto.Twalk, 7, deepWalk), "invalid walk: too many names"},
		{"tauth", true, (&proto.TAuth{Header: hdr(proto.Tauth, 7), Afid: 5, Uname: User}).Compose(), "authentication not required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c net.Conn
			var r *bufio.Reader
			if tc.session {
				s := Session(t, dialstring)
				c, r = s.C, s.R
			} else {
				c = DialRaw(t, dialstring)
				r = bufio.NewReader(c)
			}
			if _, err := c.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			if tc.want == gone {
				if !closed(c) {
					t.Errorf("the connection stayed open")
				}
			} else {
				got, ok := Recv(t, r).(*proto.RError)
				if !ok || got.Tag != 7 || got.Ename != tc.want {
					t.Errorf("got %v, want Rerror tag 7 %q", got, tc.want)
				}
				// The connection still answers.
				Send(t, c, &proto.TClunk{Header: hdr(proto.Tclunk, 8), Fid: 99})
				if got := Recv(t, r); got.GetTag() != 8 {
					t.Errorf("after the bad message: %v", got)
				}
			}
			if _, err := Dial(t, dialstring).Stat("/"); err != nil {
				t.Errorf("a fresh client after the bad message: %v", err)
			}
		})
	}
}

// CheckVersions checks that Tversion of a 9P2000 dialect gets 9P2000 (so
// that Linux v9fs falls back), that any other gets "unknown", and that
// msize is capped at what go9p can serve.
func CheckVersions(t *testing.T, dialstring string) {
	for _, tc := range []struct {
		version   string
		msize     uint32
		wantV     string
		wantMsize uint32
	}{
		{"9P2000", 8192, "9P2000", 8192},
		{"9P2000.L", 1 << 20, "9P2000", proto.MaxMsgLen},
		{"9P2000.u", 65536, "9P2000", proto.MaxMsgLen},
		{"9P3000", 8192, "unknown", 8192},
	} {
		c := DialRaw(t, dialstring)
		Send(t, c, &proto.TRVersion{Header: hdr(proto.Tversion, 0xFFFF), Msize: tc.msize, Version: tc.version})
		got, ok := Recv(t, c).(*proto.TRVersion)
		if !ok || got.Type != proto.Rversion || got.Version != tc.wantV || got.Msize != tc.wantMsize {
			t.Errorf("Tversion %s %d: got %v, want Rversion %s %d", tc.version, tc.msize, got, tc.wantV, tc.wantMsize)
		}
		c.Close()
	}
}

// CheckFlood pipelines n Tstat requests on one connection before reading
// any reply (go9p's own loop dies of 200), and checks that each is
// answered once.
func CheckFlood(t *testing.T, dialstring string, n int) {
	s := Session(t, dialstring)
	go func() {
		for tag := range n {
			s.C.Write((&proto.TStat{Header: hdr(proto.Tstat, uint16(tag)), Fid: 1}).Compose())
		}
	}()
	seen := map[uint16]bool{}
	for range n {
		r, ok := Recv(t, s.R).(*proto.RStat)
		if !ok || seen[r.Tag] || int(r.Tag) >= n {
			t.Fatalf("reply %v to a flood of Tstat (seen %d)", r, len(seen))
		}
		seen[r.Tag] = true
	}
}

// CheckFlush checks Tflush on the blocking file name (log): a flush of a
// tag not in flight is answered at once; a flush of a blocked read comes
// after the read's reply (an Rerror "interrupted", or data if some came
// first), never before it.
func CheckFlush(t *testing.T, dialstring, name string) {
	s := Session(t, dialstring)
	Send(t, s.C, &proto.TFlush{Header: hdr(proto.Tflush, 5), Oldtag: 77})
	if r, ok := Recv(t, s.R).(*proto.RFlush); !ok || r.Tag != 5 {
		t.Errorf("flush of an idle tag: got %v, want Rflush tag 5", r)
	}
	s.Open(t, 2, name, proto.Oread)
	// The first read returns the recent lines; the next one blocks.
	Send(t, s.C, &proto.TRead{Header: hdr(proto.Tread, 10), Fid: 2, Count: 8192})
	if r, ok := Recv(t, s.R).(*proto.RRead); !ok {
		t.Fatalf("first read of %s: %v", name, r)
	}
	Send(t, s.C, &proto.TRead{Header: hdr(proto.Tread, 11), Fid: 2, Count: 8192})
	Send(t, s.C, &proto.TFlush{Header: hdr(proto.Tflush, 12), Oldtag: 11})
	first := Recv(t, s.R)
	switch r := first.(type) {
	case *proto.RError:
		if r.Tag != 11 || r.Ename != "interrupted" {
			t.Errorf("flushed read: got %v, want Rerror tag 11 interrupted", r)
		}
	case *proto.RRead:
		if r.Tag != 11 {
			t.Errorf("flushed read: got %v", r)
		}
	default:
		t.Fatalf("flushed read: got %v before its reply", r)
	}
	if r, ok := Recv(t, s.R).(*proto.RFlush); !ok || r.Tag != 12 {
		t.Errorf("after the flushed read's reply: got %v, want Rflush tag 12", r)
	}
}
