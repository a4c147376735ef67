package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/smtp/queue"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Hour, "0s"},
		{999 * time.Millisecond, "0s"},
		{45 * time.Second, "45s"},
		{90 * time.Second, "1m30s"},
		{5 * time.Minute, "5m"},
		{time.Hour + 30*time.Minute + 10*time.Second, "1h30m"},
		{3*time.Hour + 5*time.Second, "3h"},
		{26*time.Hour + 3*time.Minute, "1d2h"},
		{5 * 24 * time.Hour, "5d"},
		{24*time.Hour + 5*time.Minute, "1d"},
	} {
		if got := string(appendDuration(nil, tc.d)); got != tc.want {
			t.Errorf("duration %v = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"q0001", "q0001"},
		{"bob@example.net", "bob@example.net"},
		{"a@x,b@y", "a@x,b@y"},
		{"bang!path!user", "bang!path!user"},
		{"x=y@z", "'x=y@z'"},
		{"can't", "'can''t'"},
		{"a b", "'a b'"},
		{"two\nlines\tand tab", "'two lines and tab'"},
		{"*.example.org", "'*.example.org'"},
		{"<>", "'<>'"},
		{"café@example.org", "café@example.org"},
	} {
		if got := string(appendQuoted(nil, tc.in)); got != tc.want {
			t.Errorf("quote %q = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestQueueRc: rc itself splits each line of the queue file into its
// eight fields, whatever the fields hold.
func TestQueueRc(t *testing.T) {
	rc := fstest.Rc(t)
	now := time.Date(2025, 11, 24, 12, 0, 0, 0, time.UTC)
	items := []queue.Item{
		{ID: "q1", From: "it's@example.org", Rcpts: []string{"a b@example.org", "c=d@example.org"}, Size: 7,
			Arrived: now.Add(-time.Minute), Tries: 2, Next: now.Add(time.Hour), LastErr: "550 5.1.1 <a b>: no; such (user) | & ^ $x `y` {z} # [*?] ~"},
		{ID: "q2", Rcpts: []string{"x@example.org"}, LastErr: "line\nbreak  two spaces"},
	}
	file := filepath.Join(t.TempDir(), "queue")
	if err := os.WriteFile(file, renderQueue(items, now), 0644); err != nil {
		t.Fatal(err)
	}
	script := "ifs='\n'\nfor(line in `{cat " + file + "}) {\n\teval 'f=('^$line^')'\n\techo $#f\n\tfor(x in $f) echo '['^$x^']'\n}\n"
	out, err := fstest.Shell(t, rc, t.TempDir(), script)
	if err != nil {
		t.Fatalf("rc: %v\n%s", err, out)
	}
	want := "8\n[q1]\n[it's@example.org]\n[a b@example.org,c=d@example.org]\n[7]\n[1m]\n[2]\n[1h]\n" +
		"[550 5.1.1 <a b>: no; such (user) | & ^ $x `y` {z} # [*?] ~]\n" +
		"8\n[q2]\n[<>]\n[x@example.org]\n[0]\n[-]\n[0]\n[-]\n[line break  two spaces]\n"
	if out != want {
		t.Errorf("rc read:\n%s\nwant:\n%s", out, want)
	}
}

// checkQueue is a Queue whose Check records the headers it is given and
// refuses those without a To:.
type checkQueue struct{ headers []string }

func (q *checkQueue) List() []queue.Item { return nil }
func (q *checkQueue) Submit(context.Context, []byte) (string, error) {
	return "", errors.New("not here")
}

func (q *checkQueue) Check(h []byte) error {
	q.headers = append(q.headers, string(h))
	if !bytes.Contains(h, []byte("To:")) {
		return errors.New("invalid header: no recipients")
	}
	return nil
}

// writeQueue writes msg to a queue file in writes of step bytes and
// returns the error of the first write that fails (with the index of its
// last byte) and what Check was given.
func writeQueue(msg []byte, step int) (error, int, []string) {
	q := &checkQueue{}
	f := &queueFile{q: q, max: func() int64 { return 1 << 20 }, log: log.New(io.Discard, "", 0)}
	f.Open(1, 1)
	for n := 0; n < len(msg); n += step {
		end := min(n+step, len(msg))
		if _, err := f.Write(1, 0, msg[n:end]); err != nil {
			return err, end - 1, q.headers
		}
	}
	return nil, -1, q.headers
}

// TestQueueHeader: the header written to the queue file is checked line
// by line as it comes, and whole when its empty line comes.
func TestQueueHeader(t *testing.T) {
	for _, tc := range []struct {
		msg     string
		err     string // "" for none; else the failed write's error
		at      int    // the byte at which the write fails, given one a byte
		checked string // what Check was given
	}{
		{"To: a@b\n\nbody", "", -1, "To: a@b\n"},
		{"To: a@b\r\n\r\nbody", "", -1, "To: a@b\r\n"},
		{"From a@b Mon Nov 24\nTo: a@b\nSubject: x\n \tfolded\n\n", "", -1, "From a@b Mon Nov 24\nTo: a@b\nSubject: x\n \tfolded\n"},
		{"\nbody", "invalid header: no recipients", 0, ""},
		{"To: a@b\n", "", -1, "-"},
		{"hello\n", "invalid header line 1: not a field", 5, "-"},
		{"hello world\n", "invalid header line 1: not a field", 5, "-"},
		{"\x89PNG\r\n", "invalid header line 1: not a field", 0, "-"},
		{"To: a@b\nHello, Bob.\n\n", "invalid header line 2: not a field", 14, "-"},
		{" x\n", "invalid header line 1: continuation without a field", 0, "-"},
	} {
		err, at, checked := writeQueue([]byte(tc.msg), 1)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || at != tc.at) {
			t.Errorf("%q written a byte at a time: %v at byte %d, want %q at %d", tc.msg, err, at, tc.err, tc.at)
		}
		if want := tc.checked; want != "-" && (len(checked) != 1 || checked[0] != want) || want == "-" && len(checked) != 0 {
			t.Errorf("%q: Check was given %q, want %q", tc.msg, checked, want)
		}
	}
}

// FuzzQueueHeader: the header is checked the same however the message is
// cut into writes: the same error, or the same header handed to Check.
func FuzzQueueHeader(f *testing.F) {
	f.Add([]byte("From a@b Mon Nov 24\nTo: a@b\r\n\r\nbody\n"), uint8(3))
	f.Add([]byte("To: a@b\n\nx"), uint8(1))
	f.Add([]byte("To: a@b\nnot a field\n"), uint8(2))
	f.Add([]byte("\n"), uint8(1))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, msg []byte, cut uint8) {
		if len(msg) > 8<<10 { // a write a byte at a time: keep it quick
			return
		}
		// The start of a line may fail before its end has come, and for
		// another of its faults (a long line of bytes that are not a
		// field's is "not a field" first, "longer than 998" whole).
		wantErr, _, want := writeQueue(msg, max(len(msg), 1))
		err, _, got := writeQueue(msg, int(cut)%7+1)
		if (err == nil) != (wantErr == nil) || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("in writes of %d: %v, %q; whole: %v, %q", int(cut)%7+1, err, got, wantErr, want)
		}
	})
}

func TestParseDial(t *testing.T) {
	for _, tc := range []struct{ in, network, addr, err string }{
		{"unix!/tmp/ns/smtpfs", "unix", "/tmp/ns/smtpfs", ""},
		{"tcp!127.0.0.1!5640", "tcp", "127.0.0.1:5640", ""},
		{"net!localhost!5640", "tcp", "localhost:5640", ""},
		{"tcp!*!5640", "tcp", ":5640", ""},
		{"127.0.0.1!564", "tcp", "127.0.0.1:564", ""},
		{"[::1]:5640", "tcp", "[::1]:5640", ""},
		{"tcp!::1!5640", "tcp", "[::1]:5640", ""},
		{"tcp!localhost", "", "", `invalid dial string "tcp!localhost": no port`},
		{"localhost", "", "", `invalid dial string "localhost"`},
		{"udp!a!b!c", "", "", `invalid dial string "udp!a!b!c"`},
		{"unix!", "", "", `invalid dial string "unix!"`},
	} {
		network, addr, err := parseDial(tc.in)
		if network != tc.network || addr != tc.addr || fmt.Sprint(err) != fmt.Sprint(errOrNil(tc.err)) {
			t.Errorf("parseDial(%q) = %q %q %v, want %q %q %s", tc.in, network, addr, err, tc.network, tc.addr, tc.err)
		}
	}
}

func errOrNil(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

func TestNamespace(t *testing.T) {
	for _, tc := range []struct{ ns, user, display, want string }{
		{"/tmp/mine", "glenda", ":0", "/tmp/mine"},
		{"", "glenda", ":1.0", "/tmp/ns.glenda.:1"},
		{"", "glenda", "host:10.0", "/tmp/ns.glenda.host:10"},
		{"", "glenda", ":0.1", "/tmp/ns.glenda.:0.1"},
		{"", "glenda", "", "/tmp/ns.glenda.:0"},
		{"", "glenda", "/tmp/launch/:0", "/tmp/ns.glenda._tmp_launch_:0"},
	} {
		t.Setenv("NAMESPACE", tc.ns)
		t.Setenv("USER", tc.user)
		t.Setenv("DISPLAY", tc.display)
		if got := namespace(); got != tc.want {
			t.Errorf("namespace with %q %q %q = %q, want %q", tc.ns, tc.user, tc.display, got, tc.want)
		}
	}
}

func TestQuietGo9p(t *testing.T) {
	var b bytes.Buffer
	d := &dropAttached{w: &b}
	for _, l := range []*log.Logger{log.New(d, "", log.LstdFlags), log.New(d, "smtpfs: ", 0)} {
		l.Printf("%s attached", go9pUser)
		l.Printf("ready")
		l.Printf("glenda attached")
	}
	want := "ready\nglenda attached\nsmtpfs: ready\nsmtpfs: glenda attached\n"
	if got := regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `).ReplaceAllString(b.String(), ""); got != want {
		t.Errorf("filtered log:\n%s\nwant:\n%s", got, want)
	}
}

func TestLogHub(t *testing.T) {
	l := NewLog(3)
	fmt.Fprintf(l, "one\ntwo\n")
	fmt.Fprintf(l, "three")
	fmt.Fprintf(l, "four\n%s\n", strings.Repeat("x", maxLogLine+10))
	want := "three\nfour\n" + strings.Repeat("x", maxLogLine) + "\n"
	if got := string(l.Recent()); got != want {
		t.Errorf("recent = %q, want %q", got, want)
	}

	f, err := l.follow()
	if err != nil {
		t.Fatal(err)
	}
	// A reader that does not keep up loses lines and is told how many.
	line := strings.Repeat("y", 99) + "\n"
	n := followerBytes/len(line) + 10
	for range n {
		l.Write([]byte(line))
	}
	l.Write([]byte("last\n"))
	var got []byte
	for {
		b, eof := f.take(8192)
		if b == nil || eof {
			break
		}
		got = append(got, b...)
	}
	kept := (followerBytes - len(want)) / len(line)
	wantTail := fmt.Sprintf("... %d lines dropped\nlast\n", n-kept+0)
	if !bytes.HasSuffix(got, []byte(wantTail)) {
		t.Errorf("reader got ...%q, want ...%q", got[max(0, len(got)-80):], wantTail)
	}
	if c := bytes.Count(got, []byte(line)); c != kept {
		t.Errorf("reader got %d lines, want %d", c, kept)
	}
	l.unfollow(f)
	if b, eof := f.take(10); b != nil || !eof {
		t.Errorf("after unfollow: %q %v", b, eof)
	}

	l.setMax(1)
	f1, err := l.follow()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.follow(); err != errBusy {
		t.Errorf("second follower: %v, want %v", err, errBusy)
	}
	l.unfollow(f1)
}

// TestTakeLines: a read returns whole lines, cutting a line only when it
// is longer than the read.
func TestTakeLines(t *testing.T) {
	l := NewLog(10)
	f, _ := l.follow()
	l.Write([]byte("12345\n67890\nabc\n"))
	for _, tc := range []struct {
		count int
		want  string
	}{
		{8, "12345\n"},
		{3, "678"},
		{100, "90\nabc\n"},
	} {
		if got, _ := f.take(tc.count); string(got) != tc.want {
			t.Errorf("take(%d) = %q, want %q", tc.count, got, tc.want)
		}
	}
}

// BenchmarkQueueRender renders a queue file of 100,000 messages (the
// target is 2 s; it takes a few tens of milliseconds).
func BenchmarkQueueRender(b *testing.B) {
	now := time.Now()
	items := make([]queue.Item, 100000)
	for i := range items {
		items[i] = queue.Item{ID: fmt.Sprintf("q%08d", i), From: "sender@example.org",
			Rcpts: []string{"a@example.net", "b@example.com"}, Size: 4096, Arrived: now.Add(-time.Duration(i) * time.Second),
			Tries: i % 5, Next: now.Add(time.Duration(i) * time.Second), LastErr: "451 4.7.1 greylisted, try again later"}
	}
	b.ReportAllocs()
	for b.Loop() {
		out := renderQueue(items, now)
		b.SetBytes(int64(len(out)))
	}
}
