package p9c

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"9fans.net/go/plan9"
)

// A fakeServer is the other end of a Conn, played by the test: it reads
// the client's messages and writes whatever replies the test gives.
type fakeServer struct {
	t  *testing.T
	nc net.Conn
	in chan *plan9.Fcall
}

func newFake(t *testing.T) (*fakeServer, net.Conn) {
	a, b := net.Pipe()
	s := &fakeServer{t: t, nc: a, in: make(chan *plan9.Fcall, 256)}
	t.Cleanup(func() { a.Close(); b.Close() })
	go func() {
		br := bufio.NewReader(a)
		for {
			f, err := plan9.ReadFcall(br)
			if err != nil {
				close(s.in)
				return
			}
			s.in <- f
		}
	}()
	return s, b
}

// next returns the client's next message.
func (s *fakeServer) next() *plan9.Fcall {
	s.t.Helper()
	select {
	case f, ok := <-s.in:
		if !ok {
			s.t.Fatal("the client hung up")
		}
		return f
	case <-time.After(10 * time.Second):
		s.t.Fatal("no message from the client in 10s")
	}
	return nil
}

func (s *fakeServer) reply(f *plan9.Fcall) {
	s.t.Helper()
	if err := writeFcall(s.nc, f); err != nil {
		s.t.Fatalf("reply %v: %v", f, err)
	}
}

// dial connects a client to a fake server that agrees to msize.
func dial(t *testing.T, msize uint32) (*Conn, *fakeServer) {
	t.Helper()
	s, nc := newFake(t)
	type result struct {
		c   *Conn
		err error
	}
	done := make(chan result, 1)
	go func() { c, err := New(nc, 0); done <- result{c, err} }()
	tv := s.next()
	if tv.Type != plan9.Tversion || tv.Version != "9P2000" || tv.Msize != DefaultMsize || tv.Tag != noTag {
		t.Fatalf("first message %v, want Tversion 9P2000 msize %d", tv, DefaultMsize)
	}
	s.reply(&plan9.Fcall{Type: plan9.Rversion, Tag: noTag, Msize: msize, Version: "9P2000"})
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r.c, s
}

// attach attaches, as the fake server agrees, and returns the root fid.
func attach(t *testing.T, c *Conn, s *fakeServer) *Fid {
	t.Helper()
	done := make(chan *Fid, 1)
	go func() {
		f, err := c.Attach(context.Background(), "glenda", "")
		if err != nil {
			t.Error(err)
		}
		done <- f
	}()
	ta := s.next()
	s.reply(&plan9.Fcall{Type: plan9.Rattach, Tag: ta.Tag, Qid: plan9.Qid{Type: plan9.QTDIR}})
	return <-done
}

func TestVersion(t *testing.T) {
	c, _ := dial(t, 8192)
	if c.Msize() != 8192 {
		t.Errorf("Msize %d, want the server's 8192", c.Msize())
	}
	for _, tc := range []struct {
		name string
		rx   plan9.Fcall
	}{
		{"msize too small", plan9.Fcall{Type: plan9.Rversion, Tag: noTag, Msize: MinMsize - 1, Version: "9P2000"}},
		{"msize above ours", plan9.Fcall{Type: plan9.Rversion, Tag: noTag, Msize: DefaultMsize + 1, Version: "9P2000"}},
		{"other version", plan9.Fcall{Type: plan9.Rversion, Tag: noTag, Msize: 8192, Version: "unknown"}},
		{"rerror", plan9.Fcall{Type: plan9.Rerror, Tag: noTag, Ename: "go away"}},
	} {
		s, nc := newFake(t)
		errc := make(chan error, 1)
		go func() { _, err := New(nc, 0); errc <- err }()
		s.next()
		s.reply(&tc.rx)
		if err := <-errc; err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// readAsync starts a read of fid and returns where its outcome comes.
func readAsync(ctx context.Context, f *Fid) chan error {
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 100)
		n, err := f.ReadAt(ctx, buf, 0)
		if err == nil && string(buf[:n]) != "data" {
			err = errors.New("read " + string(buf[:n]))
		}
		errc <- err
	}()
	return errc
}

// TestFlush: a read whose context ends is flushed; its outcome is the
// reply that came before the Rflush, if any, else ErrInterrupted; the
// tag is used again only after the Rflush.
func TestFlush(t *testing.T) {
	c, s := dial(t, 8192)
	root := attach(t, c, s)
	for _, tc := range []struct {
		name   string
		before *plan9.Fcall // reply to the read before the Rflush
		want   error        // nil: the data
	}{
		{"no reply", nil, ErrInterrupted},
		{"rerror first", &plan9.Fcall{Type: plan9.Rerror, Ename: "interrupted"}, Error("interrupted")},
		{"data first", &plan9.Fcall{Type: plan9.Rread, Data: []byte("data")}, nil},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		errc := readAsync(ctx, root)
		tr := s.next()
		if tr.Type != plan9.Tread || tr.Count != 100 {
			t.Fatalf("%s: got %v, want Tread count 100", tc.name, tr)
		}
		cancel()
		tf := s.next()
		if tf.Type != plan9.Tflush || tf.Oldtag != tr.Tag || tf.Tag == tr.Tag {
			t.Fatalf("%s: got %v, want Tflush of tag %d", tc.name, tf, tr.Tag)
		}
		if tc.before != nil {
			tc.before.Tag = tr.Tag
			s.reply(tc.before)
		}
		select {
		case err := <-errc:
			t.Fatalf("%s: the read ended (%v) before the Rflush", tc.name, err)
		case <-time.After(50 * time.Millisecond):
		}
		s.reply(&plan9.Fcall{Type: plan9.Rflush, Tag: tf.Tag})
		if err := <-errc; !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s: read returned %v, want %v", tc.name, err, tc.want)
		}
	}
	// The connection goes on.
	errc := readAsync(context.Background(), root)
	tr := s.next()
	s.reply(&plan9.Fcall{Type: plan9.Rread, Tag: tr.Tag, Data: []byte("data")})
	if err := <-errc; err != nil {
		t.Errorf("read after the flushes: %v", err)
	}
}

// TestInflightBound: no more than MaxInflight requests go out at once; a
// further one waits, and gives up when its context ends, unsent.
func TestInflightBound(t *testing.T) {
	c, s := dial(t, 8192)
	root := attach(t, c, s)
	var errs []chan error
	tags := map[uint16]bool{}
	for range MaxInflight {
		errs = append(errs, readAsync(context.Background(), root))
		tags[s.next().Tag] = true
	}
	if len(tags) != MaxInflight {
		t.Fatalf("%d distinct tags for %d requests", len(tags), MaxInflight)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := <-readAsync(ctx, root); !errors.Is(err, ErrInterrupted) {
		t.Errorf("request beyond the bound: %v, want ErrInterrupted", err)
	}
	select {
	case f := <-s.in:
		t.Errorf("request beyond the bound was sent: %v", f)
	default:
	}
	for tag := range tags {
		s.reply(&plan9.Fcall{Type: plan9.Rread, Tag: tag, Data: []byte("data")})
	}
	for _, e := range errs {
		if err := <-e; err != nil {
			t.Error(err)
		}
	}
}

// TestBadReplies: a reply bigger than msize, or to a tag nobody used,
// ends the connection, and the requests in flight fail.
func TestBadReplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		rx   func(tag uint16) *plan9.Fcall
	}{
		{"beyond msize", func(tag uint16) *plan9.Fcall {
			return &plan9.Fcall{Type: plan9.Rread, Tag: tag, Data: make([]byte, 8192)}
		}},
		{"unknown tag", func(tag uint16) *plan9.Fcall { return &plan9.Fcall{Type: plan9.Rclunk, Tag: tag + 1000} }},
	} {
		c, s := dial(t, 8192)
		root := attach(t, c, s)
		errc := readAsync(context.Background(), root)
		s.reply(tc.rx(s.next().Tag))
		if err := <-errc; err == nil {
			t.Errorf("%s: the read succeeded", tc.name)
		}
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the connection goes on", tc.name)
		}
		if _, err := root.Walk(context.Background(), "x"); err == nil {
			t.Errorf("%s: a walk after the connection ended succeeded", tc.name)
		}
	}
}

// TestWalk: a walk that stops short is "file does not exist", and frees
// the fid it would have made.
func TestWalk(t *testing.T) {
	c, s := dial(t, 8192)
	root := attach(t, c, s)
	errc := make(chan error, 1)
	go func() { _, err := root.Walk(context.Background(), "a", "b"); errc <- err }()
	tw := s.next()
	s.reply(&plan9.Fcall{Type: plan9.Rwalk, Tag: tw.Tag, Wqid: []plan9.Qid{{Type: plan9.QTDIR}}})
	if err := <-errc; err != errNotExist {
		t.Errorf("partial walk: %v, want %v", err, errNotExist)
	}
	c.mu.Lock()
	n := c.nfids
	c.mu.Unlock()
	if n != 1 {
		t.Errorf("%d fids after a failed walk, want 1 (the root)", n)
	}
}
