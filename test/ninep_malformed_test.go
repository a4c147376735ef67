package test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"
	"github.com/knusbaum/go9p/proto"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// ninepStillServes checks that the daemon answers SMTP and 9P.
func ninepStillServes(t *testing.T, d *Daemon) {
	t.Helper()
	if d.Exited() {
		t.Fatalf("the daemon died:\n%s", d.Stderr)
	}
	r := ehlo(t, d, "")
	r.Send("QUIT")
	r.Expect("221 ")
	for _, ds := range d.NineP {
		if got := fstest.Read(t, fstest.Dial(t, ds), "version"); !strings.HasPrefix(got, "smtpfs") {
			t.Errorf("version on %s: %q", ds, got)
		}
	}
}

// TestNinepMalformed sends the daemon's posted socket and its TCP
// listener what no 9P server should die of: malformed messages, other
// versions, a flood of requests, Tflush of a blocked read, random frames.
// After each the daemon still answers 9P and SMTP.
func TestNinepMalformed(t *testing.T) {
	d := startNinep(t, "")
	for _, ds := range d.NineP {
		t.Run(ds[:strings.IndexByte(ds, '!')], func(t *testing.T) {
			fstest.CheckMalformed(t, ds)
			fstest.CheckVersions(t, ds)
			fstest.CheckFlood(t, ds, 300)
			fstest.CheckFlush(t, ds, "log")
			ninepRandomFrames(t, ds, 500)
			ninepStillServes(t, d)
		})
	}
}

// ninepRandomFrames sends n frames of random types and bodies (sizes sound)
// on one attached session, then checks that the session still answers.
// The seed is fixed, so that a failure can be repeated.
func ninepRandomFrames(t *testing.T, ds string, n int) {
	s := fstest.Session(t, ds)
	rng := rand.New(rand.NewPCG(9, 9))
	go func() {
		w := bufio.NewWriter(s.C)
		for i := range n {
			body := make([]byte, rng.IntN(64))
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
			// Type 100 (Tversion) would start a new session, 108 (Tflush)
			// may legitimately get its Rflush late: both are left out.
			typ := byte(102 + 2*rng.IntN(13))
			if typ == proto.Tflush {
				typ = proto.Tstat
			}
			w.Write(fstest.Frame(typ, uint16(i), body))
		}
		w.Flush()
	}()
	// Every frame gets exactly one reply, whatever it is.
	seen := map[uint16]bool{}
	for range n {
		r := fstest.Recv(t, s.R)
		if seen[r.GetTag()] || int(r.GetTag()) >= n {
			t.Fatalf("reply %v to random frames (%d seen)", r, len(seen))
		}
		seen[r.GetTag()] = true
	}
	fstest.Send(t, s.C, &proto.TStat{Header: proto.Header{Type: proto.Tstat, Tag: 1}, Fid: 1})
	if r, ok := fstest.Recv(t, s.R).(*proto.RStat); !ok {
		t.Errorf("Tstat of the root after random frames: %v", r)
	}
}

// TestNinepDisconnect: a client that vanishes in the middle of a message
// queues nothing, one that vanishes in the middle of a ctl line changes
// nothing, and one that vanishes while it follows the log frees its
// place; the daemon says so in the log.
func TestNinepDisconnect(t *testing.T) {
	d := startNinep(t, "")
	fsys := fstest.Dial(t, d.NineP[0])
	log := ninepFollowLog(t, fsys)
	gone, nc := fstest.DialConn(t, d.NineP[1])
	half := "From: glenda@example.org\nTo: rob@example.net\nSubject: cut short\n\nThe first line,\n"
	fid, err := gone.Open("queue", plan9.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fid.Write([]byte(half)); err != nil {
		t.Fatalf("writing half a message: %v", err)
	}
	cfid, err := gone.Open("ctl", plan9.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	// A piece of a longer write (4 KiB) that ends inside a line: the
	// line waits for the rest.
	if _, err := cfid.Write([]byte("#" + strings.Repeat("-", 4096-13) + "\ngreylist on")); err != nil {
		t.Fatalf("writing half a ctl line: %v", err)
	}
	lfid, err := gone.Open("log", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		b := make([]byte, 64<<10)
		if _, err := lfid.Read(b); err != nil { // the recent lines
			blocked <- err
			return
		}
		_, err := lfid.Read(b) // blocks
		blocked <- err
	}()
	if n := ninepStats(t, fsys)["9p.logreaders"]; n != 2 {
		t.Errorf("9p.logreaders %d, want 2", n)
	}
	nc.Close()
	log.until(fmt.Sprintf("9p: queue: connection lost, message of %d bytes not queued", len(half)))
	log.until("9p: ctl: connection lost, unfinished line 'greylist on' dropped")
	if c := fstest.Read(t, fsys, "ctl"); !strings.Contains(c, "\ngreylist off\n") {
		t.Errorf("a dead connection's half line changed ctl:\n%s", c)
	}
	select {
	case err := <-blocked:
		if err == nil {
			t.Errorf("a read of the log on a closed connection returned data")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("a read of the log on a closed connection still blocks")
	}
	testlib.WaitFor(t, 10*time.Second, "the follower gone", func() bool {
		return ninepStats(t, fsys)["9p.logreaders"] == 1
	})
	if q := fstest.Read(t, fsys, "queue"); q != "" {
		t.Errorf("queue %q, want nothing", q)
	}
	ninepStillServes(t, d)
}

// TestNinepLogReaders: as many readers as the log allows block in it on
// one connection (as every user of a FUSE mount shares one), and the
// connection, the daemon and SMTP go on; one more is refused; when they
// close, their places are free again.
func TestNinepLogReaders(t *testing.T) {
	d := startNinep(t, "")
	fsys := fstest.Dial(t, d.NineP[0])
	const max = 32 // fs.DefaultMaxFollowers
	var fids []*client.Fid
	ended := make(chan error, max)
	for range max {
		fid, err := fsys.Open("log", plan9.OREAD)
		if err != nil {
			t.Fatalf("reader %d: %v", len(fids), err)
		}
		fids = append(fids, fid)
		go func() {
			b := make([]byte, 64<<10)
			var err error
			for err == nil {
				_, err = fid.Read(b)
			}
			ended <- err
		}()
	}
	if _, err := fsys.Open("log", plan9.OREAD); ninepErr(err) != "log busy: too many readers" {
		t.Errorf("reader %d: %v, want log busy: too many readers", max+1, err)
	}
	if n := ninepStats(t, fsys)["9p.logreaders"]; n != max {
		t.Errorf("9p.logreaders %d, want %d", n, max)
	}
	ninepCtl(t, fsys, "kick\n") // a line for every reader
	ninepStillServes(t, d)
	for _, fid := range fids {
		fid.Close()
	}
	for range max {
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatal("a log reader still blocks after its fid was clunked")
		}
	}
	if n := ninepStats(t, fsys)["9p.logreaders"]; n != 0 {
		t.Errorf("9p.logreaders %d after close, want 0", n)
	}
	fid, err := fsys.Open("log", plan9.OREAD)
	if err != nil {
		t.Fatalf("a reader after the others left: %v", err)
	}
	fid.Close()
}
