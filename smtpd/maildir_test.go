package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"smtpfs/internal/durable"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

func TestMaildirDeliver(t *testing.T) {
	m := NewMaildir(t.TempDir())
	msg := "Subject: hi\r\n\r\nline\r\n" + strings.Repeat("x", 40000) + "\r\n"
	body := strings.ReplaceAll(msg, "\r\n", "\n")
	// One box (bob, under two names): Delivered-To: names the first.
	// Several boxes: one file, linked into each, without Delivered-To:.
	for _, tc := range []struct {
		rcpts []string
		boxes []string
		want  string
	}{
		{[]string{"bob@example.org", "Bob+tag@example.org"}, []string{"bob"},
			"Return-Path: <a@sender.net>\nDelivered-To: bob@example.org\n" + body},
		{[]string{"carol", "dave@example.org", "Carol+x@example.org", "erin"}, []string{"carol", "dave", "erin"},
			"Return-Path: <a@sender.net>\n" + body},
	} {
		if err := m.Deliver(context.Background(), "a@sender.net", tc.rcpts, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
		var first os.FileInfo
		for _, box := range tc.boxes {
			dir := filepath.Join(m.Dir, box)
			ents, _ := os.ReadDir(filepath.Join(dir, "new"))
			if len(ents) != 1 {
				t.Fatalf("%s/new holds %d files, want 1", box, len(ents))
			}
			if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
				t.Errorf("%s/tmp holds %d files", box, len(tmp))
			}
			name := ents[0].Name()
			if !strings.HasSuffix(name, "."+m.host) || strings.Count(name, ".") < 2 {
				t.Errorf("file name %q", name)
			}
			fi, _ := os.Stat(filepath.Join(dir, "new", name))
			if fi.Mode().Perm() != 0600 {
				t.Errorf("mode %v", fi.Mode())
			}
			if first == nil {
				first = fi
			} else if !os.SameFile(first, fi) {
				t.Errorf("%s: a copy of its own, not a link to %s's file", box, tc.boxes[0])
			}
			b, _ := os.ReadFile(filepath.Join(dir, "new", name))
			if string(b) != tc.want {
				t.Errorf("%s: got %.80q (%d bytes), want %.80q (%d bytes)", box, b, len(b), tc.want, len(tc.want))
			}
		}
	}
}

// TestMaildirLinkFails: where a box cannot take a hard link (another file
// system: EXDEV), it gets a copy of its own, made durable with the
// message before either is renamed into new/.
func TestMaildirLinkFails(t *testing.T) {
	m := NewMaildir(t.TempDir())
	m.link = func(old, new string) error {
		if strings.Contains(new, "/far/") {
			return &os.LinkError{Op: "link", Old: old, New: new, Err: syscall.EXDEV}
		}
		return os.Link(old, new)
	}
	var flushed []string // the files made durable, not the directories
	m.flush = func(files []*os.File) error {
		for _, f := range files {
			if filepath.Base(filepath.Dir(f.Name())) == "tmp" {
				flushed = append(flushed, f.Name())
				if news, _ := filepath.Glob(filepath.Join(m.Dir, "*", "new", "*")); len(news) != 0 {
					t.Errorf("%s in new/ before the files were durable", news)
				}
			}
		}
		return durable.Flush(files)
	}
	if err := m.Deliver(context.Background(), "", []string{"near", "far", "next"}, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	if len(flushed) != 2 || !strings.Contains(flushed[0], "/near/tmp/") || !strings.Contains(flushed[1], "/far/tmp/") {
		t.Errorf("made durable %q, want the message in near/tmp and its copy in far/tmp", flushed)
	}
	info := map[string]os.FileInfo{}
	for _, box := range []string{"near", "far", "next"} {
		ents, _ := filepath.Glob(filepath.Join(m.Dir, box, "new", "*"))
		if len(ents) != 1 {
			t.Fatalf("%s: %d messages", box, len(ents))
		}
		b, _ := os.ReadFile(ents[0])
		if string(b) != "Return-Path: <>\nx\n" {
			t.Errorf("%s: %q", box, b)
		}
		info[box], _ = os.Stat(ents[0])
	}
	if !os.SameFile(info["near"], info["next"]) || os.SameFile(info["near"], info["far"]) {
		t.Errorf("near, next linked: %v; near, far linked: %v; want true, false",
			os.SameFile(info["near"], info["next"]), os.SameFile(info["near"], info["far"]))
	}
}

func TestMaildirNoBox(t *testing.T) {
	m := NewMaildir(t.TempDir())
	m.MkBox = func() bool { return false }
	if err := m.Deliver(context.Background(), "", []string{"postmaster@x"}, strings.NewReader("a\r\n")); err != nil {
		t.Fatalf("postmaster: %v", err)
	}
	err := m.Deliver(context.Background(), "", []string{"postmaster", "nobody@x"}, strings.NewReader("b\r\n"))
	var r *smtp.Reply
	if !errors.As(err, &r) || r.Code != 550 || r.Temporary() {
		t.Errorf("unknown user: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(m.Dir, "postmaster", "new")); len(ents) != 1 {
		t.Errorf("postmaster has %d messages, want 1: all or nothing", len(ents))
	}
	if err := m.Deliver(context.Background(), "", []string{"../etc"}, strings.NewReader("c\r\n")); err == nil {
		t.Errorf("delivered to ../etc")
	}
}

func TestLFReader(t *testing.T) {
	in := "a\r\nb\rc\r\n\r\n\r\r\nend\r"
	want := "a\nb\rc\n\n\r\nend\r"
	for size := 1; size < 8; size++ {
		got, err := io.ReadAll(&lfReader{r: &chunked{s: in, n: size}})
		if err != nil || string(got) != want {
			t.Errorf("chunks of %d: %q, %v; want %q", size, got, err, want)
		}
	}
}

// chunked reads s n bytes at a time.
type chunked struct {
	s string
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.s)
	c.s = c.s[k:]
	return k, nil
}

// TestGroupCommit: while one sync runs, the deliveries that arrive wait
// for one more, which makes all their messages durable at once.
func TestGroupCommit(t *testing.T) {
	m := NewMaildir(t.TempDir())
	m.makeBox("bob", "bob")
	var runs [][]string // the files of each sync
	var mu sync.Mutex
	release := make(chan struct{})
	first := make(chan struct{})
	var once sync.Once
	m.flush = func(files []*os.File) error {
		once.Do(func() { close(first); <-release })
		var names []string
		for _, f := range files {
			names = append(names, strings.TrimPrefix(f.Name(), m.Dir))
		}
		mu.Lock()
		runs = append(runs, names)
		mu.Unlock()
		return nil
	}
	const n = 20
	var wg sync.WaitGroup
	deliver := func() {
		defer wg.Done()
		if err := m.Deliver(context.Background(), "", []string{"bob"}, strings.NewReader("x\r\n")); err != nil {
			t.Error(err)
		}
	}
	wg.Add(1)
	go deliver()
	<-first // the first message's sync is running and stalled
	for range n - 1 {
		wg.Add(1)
		go deliver()
	}
	testlib.WaitFor(t, 10*time.Second, "deliveries to queue up", func() bool { return m.syncs.Callers() == n })
	close(release)
	wg.Wait()
	// The first sync holds the first message; the second, every message
	// that waited (and perhaps the first one's new/).
	msgs := 0
	for _, name := range runs[min(1, len(runs)-1)] {
		if name != "/bob/new" {
			msgs++
		}
	}
	if len(runs) < 2 || len(runs[0]) != 1 || msgs < n-1 || msgs > n {
		t.Fatalf("syncs %q: want the second to hold the %d messages that waited", runs, n-1)
	}
	dirs := 0
	for _, r := range runs {
		for _, name := range r {
			if name == "/bob/new" {
				dirs++
			}
		}
	}
	if dirs != n {
		t.Errorf("new/ synced %d times for %d deliveries", dirs, n)
	}
	if ents, _ := os.ReadDir(filepath.Join(m.Dir, "bob", "new")); len(ents) != n {
		t.Errorf("%d messages, want %d", len(ents), n)
	}
}

func TestGroupCommitError(t *testing.T) {
	m := NewMaildir(t.TempDir())
	m.flush = func(files []*os.File) error {
		if strings.HasSuffix(files[0].Name(), "new") {
			return errors.New("disk on fire")
		}
		return nil
	}
	if err := m.Deliver(context.Background(), "", []string{"bob"}, strings.NewReader("x\r\n")); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("got %v", err)
	}
}

// BenchmarkMaildirDeliver delivers 5 KB messages into one box from many
// goroutines at once, with real syncs: the group commit shares them.
// syncs/op is how many each message cost (two when alone).
func BenchmarkMaildirDeliver(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			m := NewMaildir(b.TempDir())
			var syncs atomic.Int64
			m.flush = func(files []*os.File) error {
				syncs.Add(1)
				return durable.Flush(files)
			}
			msg := strings.Repeat("The quick brown fox jumps over the lazy dog.\r\n", 110)
			b.SetBytes(int64(len(msg)))
			var wg sync.WaitGroup
			next := make(chan struct{})
			b.ResetTimer()
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range next {
						if err := m.Deliver(context.Background(), "a@b.c", []string{"bob"}, strings.NewReader(msg)); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for range b.N {
				next <- struct{}{}
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(syncs.Load())/float64(b.N), "syncs/op")
		})
	}
}

// BenchmarkSessions is the whole server: clients on loopback, each in its
// own session, send 5 KB messages to a local user, each answered 250 only
// once it is fsynced in the Maildir. msgs/s is what the disk and the group
// commit allow.
func BenchmarkSessions(b *testing.B) {
	msg := "Subject: bench\r\n\r\n" + strings.Repeat("The quick brown fox jumps over the lazy dog.\r\n", 110)
	for _, clients := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ts := newTestServer(b, "maxperip 1000")
			ts.Log = nil
			b.SetBytes(int64(len(msg)))
			work := make(chan struct{})
			var wg sync.WaitGroup
			for range clients {
				c := ts.ehloed("192.0.2.7")
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						c.send("MAIL FROM:<a@sender.net>")
						c.reply()
						c.send("RCPT TO:<bob@example.org>")
						c.reply()
						c.send("DATA")
						c.reply()
						c.write(msg + ".\r\n")
						if l := c.reply(); l[0] != "250 2.5.0 sent" {
							b.Errorf("got %q", l)
						}
					}
				}()
			}
			start := time.Now()
			b.ResetTimer()
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// TestMaildirDurabilityOrder: the box's directories are synced when it
// is made, the message in tmp/ before it is renamed, new/ once it holds
// the message, and Deliver returns only after all of it.
func TestMaildirDurabilityOrder(t *testing.T) {
	for _, tc := range []struct {
		how  string
		tmp  bool // no unnamed files: through tmp/
		want string
	}{
		// bob/ with tmp, new, cur; the boxes with bob; the message in
		// tmp/, new/ empty; new/ with the message.
		{"through tmp/", true, "/bob:3 :1 /bob/tmp/file(new/:0) /bob/new:1"},
		// ...; the unnamed message in new/, new/ empty; new/ with the
		// message, and the message's link count.
		{"unnamed", false, "/bob:3 :1 /bob/new/file(new/:0) /bob/new:1 /bob/new/file(new/:1)"},
	} {
		m := NewMaildir(t.TempDir())
		if tc.tmp {
			m.unnamed = func(string) (*os.File, error) { return nil, errNoUnnamed }
		}
		var synced []string
		note := func(name string) {
			if fi, err := os.Stat(name); err == nil && fi.IsDir() {
				ents, _ := os.ReadDir(name)
				name = fmt.Sprintf("%s:%d", name, len(ents))
			} else {
				ents, _ := os.ReadDir(filepath.Join(m.Dir, "bob", "new"))
				name = fmt.Sprintf("%s/file(new/:%d)", filepath.Dir(name), len(ents))
			}
			synced = append(synced, strings.TrimPrefix(name, m.Dir))
		}
		m.fsync = func(dir string) error {
			note(dir)
			return syncPath(dir)
		}
		m.flush = func(files []*os.File) error {
			for _, f := range files {
				note(f.Name())
			}
			return durable.Flush(files)
		}
		if err := m.Deliver(context.Background(), "", []string{"bob"}, strings.NewReader("x\r\n")); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(synced, " "); got != tc.want {
			t.Errorf("%s: syncs %q, want %q", tc.how, got, tc.want)
		}
		if ents, _ := os.ReadDir(filepath.Join(m.Dir, "bob", "tmp")); len(ents) != 0 {
			t.Errorf("%s: %d files left in tmp/", tc.how, len(ents))
		}
		if b, _ := os.ReadFile(filepath.Join(m.Dir, "bob", "new", firstFile(t, m.Dir, "bob"))); string(b) != "Return-Path: <>\nDelivered-To: bob\nx\n" {
			t.Errorf("%s: delivered %q", tc.how, b)
		}
	}
}

// firstFile returns the name of the first message in box's new/.
func firstFile(t *testing.T, dir, box string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, box, "new"))
	if err != nil || len(ents) == 0 {
		t.Fatalf("%s/new: %d messages, %v", box, len(ents), err)
	}
	return ents[0].Name()
}

// TestMaildirNoTmp: a box made by hand with new/ alone gets its tmp/
// when a delivery needs it (several boxes, or no unnamed files).
func TestMaildirNoTmp(t *testing.T) {
	m := NewMaildir(t.TempDir())
	for _, box := range []string{"ann", "bob"} {
		if err := os.MkdirAll(filepath.Join(m.Dir, box, "new"), 0700); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Deliver(context.Background(), "", []string{"ann", "bob"}, strings.NewReader("x\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, box := range []string{"ann", "bob"} {
		if ents, _ := os.ReadDir(filepath.Join(m.Dir, box, "new")); len(ents) != 1 {
			t.Errorf("%s: %d messages, want 1", box, len(ents))
		}
		if fi, err := os.Stat(filepath.Join(m.Dir, box, "tmp")); err != nil || !fi.IsDir() {
			t.Errorf("%s/tmp: %v", box, err)
		}
	}
}

// TestMaildirNoUnnamed: where the file system has no unnamed files, the
// first delivery finds out and it and the next go through tmp/.
func TestMaildirNoUnnamed(t *testing.T) {
	m := NewMaildir(t.TempDir())
	tries := 0
	m.unnamed = func(string) (*os.File, error) { tries++; return nil, errNoUnnamed }
	for i := range 2 {
		if err := m.Deliver(context.Background(), "", []string{"bob"}, strings.NewReader("x\r\n")); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(m.Dir, "bob", "new")); len(ents) != 2 || tries != 1 {
		t.Errorf("%d messages, %d tries of unnamed files; want 2, 1", len(ents), tries)
	}
}

// failingReader gives some of a message, then fails, as a spool whose
// file cannot be read back would.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		r.n = 0
		return copy(p, "Subject: half\r\n"), nil
	}
	return 0, errors.New("spool unreadable")
}

// TestMaildirFailureLeavesNothing: whatever step of a delivery fails
// (reading the message, writing, making it durable, linking, making new/
// durable), Deliver returns the error and no box holds the message nor
// any part of it, in new/ or in tmp/: the client is told 451 and will
// send it again, and it must not arrive twice.
func TestMaildirFailureLeavesNothing(t *testing.T) {
	fail := errors.New("disk on fire")
	for _, path := range []string{"unnamed", "tmp"} {
		for _, step := range []string{"read", "flush file", "link", "sync new"} {
			for _, boxes := range [][]string{{"bob"}, {"bob", "eve"}} {
				name := fmt.Sprintf("%s/%s/%d boxes", path, step, len(boxes))
				m := NewMaildir(t.TempDir())
				if path == "tmp" {
					m.unnamed = func(string) (*os.File, error) { return nil, errNoUnnamed }
				}
				var msg io.Reader = strings.NewReader("Subject: x\r\n\r\nbody\r\n")
				switch step {
				case "read":
					msg = &failingReader{n: 1}
				case "flush file", "sync new":
					dirs := step == "sync new"
					m.flush = func(files []*os.File) error {
						for _, f := range files {
							if fi, err := f.Stat(); err == nil && fi.IsDir() == dirs {
								return fail
							}
						}
						return durable.Flush(files)
					}
				case "link":
					m.link = func(string, string) error { return fail }
					m.linkUnnamed = func(*os.File, string) error { return fail }
					if path == "tmp" && len(boxes) == 1 {
						continue // no link there: rename
					}
				}
				if err := m.Deliver(context.Background(), "", boxes, msg); err == nil {
					t.Errorf("%s: delivered", name)
				}
				for _, box := range boxes {
					for _, sub := range []string{"tmp", "new"} {
						if ents, _ := os.ReadDir(filepath.Join(m.Dir, box, sub)); len(ents) != 0 {
							t.Errorf("%s: %s/%s holds %s", name, box, sub, ents[0].Name())
						}
					}
				}
			}
		}
	}
}

// TestMaildirNameTaken: a file of the same name in tmp/, another
// process's, makes the delivery fail and is left alone.
func TestMaildirNameTaken(t *testing.T) {
	m := NewMaildir(t.TempDir())
	m.unnamed = func(string) (*os.File, error) { return nil, errNoUnnamed }
	now := time.Unix(1700000000, 0)
	m.Now = func() time.Time { return now }
	if err := m.Deliver(context.Background(), "", []string{"bob"}, strings.NewReader("a\r\n")); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(m.Dir, "bob", "tmp", fmt.Sprintf("1700000000.M0P%dQ2.%s", os.Getpid(), m.host))
	if err := os.WriteFile(theirs, []byte("theirs"), 0600); err != nil {
		t.Fatal(err)
	}
	if err := m.Deliver(context.Background(), "", []string{"bob"}, strings.NewReader("b\r\n")); !errors.Is(err, os.ErrExist) {
		t.Errorf("got %v, want the name taken", err)
	}
	if b, err := os.ReadFile(theirs); string(b) != "theirs" {
		t.Errorf("the other file: %q, %v", b, err)
	}
}
