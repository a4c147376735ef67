package fs_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/knusbaum/go9p/proto"

	"smtpfs/fs"
	"smtpfs/fs/fstest"
)

// compose composes 9P messages into one byte string.
func compose(msgs ...proto.FCall) []byte {
	var b []byte
	for _, m := range msgs {
		b = append(b, m.Compose()...)
	}
	return b
}

func h(typ uint8, tag uint16) proto.Header { return proto.Header{Type: typ, Tag: tag} }

// FuzzServe feeds bytes to a connection of a served tree: whatever they
// are, the connection ends when the client goes, and nothing panics.
func FuzzServe(f *testing.F) {
	start := []proto.FCall{
		&proto.TRVersion{Header: h(proto.Tversion, 0xFFFF), Msize: 8192, Version: "9P2000"},
		&proto.TAttach{Header: h(proto.Tattach, 1), Fid: 1, Afid: ^uint32(0), Uname: "glenda"},
	}
	open := func(fid uint32, name string, mode proto.Mode) []proto.FCall {
		return []proto.FCall{
			&proto.TWalk{Header: h(proto.Twalk, 2), Fid: 1, Newfid: fid, Nwname: 1, Wname: []string{name}},
			&proto.TOpen{Header: h(proto.Topen, 3), Fid: fid, Mode: mode},
		}
	}
	seq := func(parts ...[]proto.FCall) []byte {
		var all []proto.FCall
		for _, p := range parts {
			all = append(all, p...)
		}
		return compose(all...)
	}
	f.Add(seq(start, open(2, "ctl", proto.Ordwr), []proto.FCall{
		&proto.TRead{Header: h(proto.Tread, 4), Fid: 2, Count: 8192},
		&proto.TWrite{Header: h(proto.Twrite, 5), Fid: 2, Count: 12, Data: []byte("greylist on\n")},
		&proto.TClunk{Header: h(proto.Tclunk, 6), Fid: 2},
	}))
	f.Add(seq(start, open(2, "queue", proto.Owrite), []proto.FCall{
		&proto.TWrite{Header: h(proto.Twrite, 4), Fid: 2, Count: 22, Data: []byte("To: bob@example.net\n\nx")},
		&proto.TClunk{Header: h(proto.Tclunk, 5), Fid: 2},
	}))
	f.Add(seq(start, open(2, "log", proto.Oread), []proto.FCall{
		&proto.TRead{Header: h(proto.Tread, 4), Fid: 2, Count: 100},
		&proto.TRead{Header: h(proto.Tread, 5), Fid: 2, Count: 100},
		&proto.TFlush{Header: h(proto.Tflush, 6), Oldtag: 5},
		&proto.TRemove{Header: h(proto.Tremove, 7), Fid: 2},
	}))
	f.Add(seq(start, open(2, "whitelist", proto.Owrite|proto.Otrunc), []proto.FCall{
		&proto.TWstat{Header: h(proto.Twstat, 4), Fid: 2, Stat: proto.Stat{Length: 0, Mode: ^uint32(0), Atime: ^uint32(0), Mtime: ^uint32(0), Type: ^uint16(0), Dev: ^uint32(0)}},
		&proto.TWrite{Header: h(proto.Twrite, 5), Fid: 2, Count: 11, Data: []byte("10.0.0.0/8\n")},
	}))
	f.Add(append(seq(start), fstest.Frame(proto.Twrite, 9, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xe8, 3, 0, 0, 'a'})...))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))

	e := newEnv(f, func(c *fs.Config) { c.MaxMessage = 4096 })
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			e.srv.ServeConn(a)
			close(done)
		}()
		go io.Copy(io.Discard, b)
		b.SetWriteDeadline(time.Now().Add(5 * time.Second))
		b.Write(data)
		b.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection did not end when its client went")
		}
	})
}
