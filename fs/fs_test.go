package fs_test

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"

	"smtpfs/fs"
	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/smtp/queue"
	"smtpfs/smtpd/conf"
	"smtpfs/test/testlib"
)

// errText returns the text of err, "" for nil: what a 9P client shows.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// waitLog waits until the log hub has a line containing s.
func waitLog(t *testing.T, e *env, s string) {
	t.Helper()
	testlib.WaitFor(t, 10*time.Second, "log line "+s, func() bool {
		return strings.Contains(string(e.hub.Recent()), s)
	})
}

func TestTree(t *testing.T) {
	e := newEnv(t, func(c *fs.Config) { c.Blocked = &listBackend{} })
	fsys := fstest.Dial(t, e.ds)
	fid, err := fsys.Open("/", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	defer fid.Close()
	dirs, err := fid.Dirreadall()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range dirs {
		got = append(got, fmt.Sprintf("%s %v %d %s", d.Name, d.Mode, d.Length, d.Uid))
	}
	sort.Strings(got)
	want := []string{
		"blocked a-rw-r--r-- 0 glenda",
		"ctl --rw-r--r-- 0 glenda",
		"log --r--r--r-- 0 glenda",
		"log.recent --r--r--r-- 0 glenda",
		"queue --rw-r--r-- 0 glenda",
		"stats --r--r--r-- 0 glenda",
		"version --r--r--r-- 0 glenda",
		"whitelist a-rw-r--r-- 0 glenda",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReadOnlyFiles(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)
	for _, tc := range []struct{ name, want string }{
		{"stats", "connections 12\nmessages.accepted 3\n9p.connections 1\n9p.logreaders 0\n"},
		{"version", "smtpfs test\n"},
	} {
		if got := fstest.Read(t, fsys, tc.name); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCtl(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)
	if got, want := fstest.Read(t, fsys, "ctl"), e.ctl.Config(); got != want {
		t.Fatalf("read ctl = %q, want %q", got, want)
	}

	if err := fstest.Write(fsys, "ctl", plan9.OWRITE, "greylist on\n"); err != nil {
		t.Fatalf("greylist on: %v", err)
	}
	if !e.ctl.greylist() {
		t.Errorf("greylist on did not apply")
	}
	waitLog(t, e, "9p: ctl: greylist on\n")
	if got := fstest.Read(t, fsys, "ctl"); !strings.Contains(got, "\ngreylist on\n") {
		t.Errorf("ctl after greylist on:\n%s", got)
	}

	// A bad line fails the write with the backend's text, naming the
	// line, and nothing of the write is applied.
	before := e.ctl.Config()
	bad := "tarpit on\nbogus on\nhelocheck on\n"
	_, _, want := conf.Apply(conf.Default(), "ctl", strings.TrimSuffix(bad, "\n"))
	err := fstest.Write(fsys, "ctl", plan9.OWRITE, bad)
	if errText(err) != errText(want) || !strings.HasPrefix(errText(err), "invalid ctl line 2 ") {
		t.Errorf("bad ctl write: error %q, want %q", errText(err), errText(want))
	}
	if got := e.ctl.Config(); got != before {
		t.Errorf("a bad write changed the configuration:\n%s\nwas:\n%s", got, before)
	}
	waitLog(t, e, "9p: ctl: invalid ctl line 2 ")

	// Runtime verbs reach the backend.
	if err := fstest.Write(fsys, "ctl", plan9.OWRITE|plan9.OTRUNC, "kick\n"); err != nil {
		t.Errorf("kick: %v", err)
	}
	if acts := e.ctl.actions(); len(acts) != 1 || acts[0].Verb != "kick" {
		t.Errorf("actions %v, want kick", acts)
	}
}

// TestCtlRoundTrip: what reading ctl gives, written back, changes nothing.
func TestCtlRoundTrip(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)
	if err := fstest.Write(fsys, "ctl", plan9.OWRITE, "ournets 10.0.0.0/8 192.0.2.0/24\nourdomains example.org *.example.net\nmailer /bin/cat 'a b'\n"); err != nil {
		t.Fatal(err)
	}
	dump := fstest.Read(t, fsys, "ctl")
	if err := fstest.Write(fsys, "ctl", plan9.OWRITE, dump); err != nil {
		t.Fatalf("writing back %q: %v", dump, err)
	}
	if again := fstest.Read(t, fsys, "ctl"); again != dump {
		t.Errorf("round trip:\n%s\nwas:\n%s", again, dump)
	}
}

// piece returns text padded in front with comment lines to n bytes: a
// write of the size FUSE and 9P clients cut long writes into.
func piece(n int, text string) string {
	pad := n - len(text)
	if pad < 2 {
		panic("piece: no room")
	}
	return "#" + strings.Repeat("-", pad-2) + "\n" + text
}

// TestCtlLines: one write is a whole command, its last line without a
// newline included, and fails when a line is bad; only a write of the size
// a client cuts long writes into (a power of two from 4 KiB, msize-24)
// that ends inside a line leaves that line for the next write, or for the
// clunk, where its error comes back from Close.
func TestCtlLines(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)
	fid, err := fsys.Open("ctl", plan9.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fid.Write([]byte("greylist bogus")); !strings.HasPrefix(errText(err), "invalid ctl line 1 'greylist bogus': ") {
		t.Errorf("a last line without its newline: %q, want it refused at its write", errText(err))
	}
	if _, err := fid.Write([]byte("tarpit o")); err == nil {
		t.Errorf("a line cut by a small write was taken as it is")
	}
	if _, err := fid.Write([]byte("greylist on")); err != nil || !e.ctl.greylist() {
		t.Errorf("greylist on without a newline: %v; applied at its write: %v", err, e.ctl.greylist())
	}
	if err := fid.Close(); err != nil {
		t.Errorf("close: %v", err)
	}

	// Pieces: the line cut at 4 KiB and at 16 KiB goes on in the next
	// write; the last write, small, ends it.
	if err := fstest.Write(fsys, "ctl", plan9.OWRITE, piece(4096, "tarpit o"), "n\n"+piece(16384-2, "helocheck o"), "n"); err != nil {
		t.Fatal(err)
	}
	if got := e.ctl.Config(); !strings.Contains(got, "\ntarpit on\n") || !strings.Contains(got, "\nhelocheck on\n") {
		t.Errorf("config after lines cut into pieces:\n%s", got)
	}
	fid, err = fsys.Open("ctl", plan9.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fid.Write([]byte(piece(8192, "bogus"))); err != nil {
		t.Errorf("a piece ending inside a line failed at once: %v", err)
	}
	if err := fid.Close(); !strings.HasPrefix(errText(err), "invalid ctl line 1 'bogus': ") {
		t.Errorf("close with a bad line left by a piece: %q", errText(err))
	}

	long := strings.Repeat("x", 70<<10)
	err = fstest.Write(fsys, "ctl", plan9.OWRITE, long[:32<<10], long[32<<10:])
	if errText(err) != "line too long" {
		t.Errorf("endless line: %q, want %q", errText(err), "line too long")
	}

	// The tail of a refused line is not a line of its own, even when it
	// reads as one; the line after it is.
	fid, err = fsys.Open("ctl", plan9.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range []struct{ data, err string }{
		{long[:32<<10], ""},
		{long[:32<<10], ""},
		{long[:4<<10], "line too long"},
		{long[:4<<10], "line too long"},
		{"x\ndebug on\n", "line too long"},
		{"plaintextauth on\n", ""},
	} {
		if _, err := fid.Write([]byte(w.data)); errText(err) != w.err {
			t.Errorf("write %d after a long line: %q, want %q", i, errText(err), w.err)
		}
	}
	if err := fid.Close(); err != nil {
		t.Error(err)
	}
	// A line that reaches maxLine (64 KiB) only with the write that ends
	// it is too long too, and the write fails whole.
	err = fstest.Write(fsys, "ctl", plan9.OWRITE, "#"+long[:32<<10-1], long[:32<<10], "x\ntarpit off\n")
	if errText(err) != "line too long" {
		t.Errorf("long line ended in its last write: %q, want %q", errText(err), "line too long")
	}
	got := e.ctl.Config()
	if strings.Contains(got, "\ndebug on\n") || !strings.Contains(got, "\nplaintextauth on\n") || !strings.Contains(got, "\ntarpit on\n") {
		t.Errorf("config after a long line and its tail:\n%s", got)
	}
}

// TestWstat: a length-0 wstat (what `echo x > ctl` sends first) on a
// writable file, the times (touch), a wstat that touches nothing (fsync)
// and one that sets what is already there are accepted and change nothing;
// every other change is refused with its reason, logged, including those
// go9p would drop and answer with success (owner, the mode's upper bits,
// a length on a read-only file or a directory).
func TestWstat(t *testing.T) {
	e := newEnv(t, func(c *fs.Config) { c.Blocked = &listBackend{} })
	fsys := fstest.Dial(t, e.ds)
	null := func(f func(*plan9.Dir)) *plan9.Dir {
		var d plan9.Dir
		d.Null()
		f(&d)
		return &d
	}
	st, err := fsys.Stat("ctl")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		d    *plan9.Dir
		want string
	}{
		{"ctl", null(func(d *plan9.Dir) { d.Length = 0 }), ""},
		{"whitelist", null(func(d *plan9.Dir) { d.Length = 0 }), ""},
		{"blocked", null(func(d *plan9.Dir) { d.Length = 0 }), ""},
		{"queue", null(func(d *plan9.Dir) { d.Length = 0 }), ""},
		{"ctl", null(func(d *plan9.Dir) { d.Mtime = 12345 }), ""},
		{"ctl", null(func(d *plan9.Dir) { d.Atime, d.Mtime = 12345, 12346 }), ""},
		{"stats", null(func(d *plan9.Dir) { d.Atime, d.Mtime = 12345, 12346 }), ""},
		{"ctl", null(func(*plan9.Dir) {}), ""},
		{"stats", null(func(*plan9.Dir) {}), ""},
		{"/", null(func(*plan9.Dir) {}), ""},
		{"ctl", null(func(d *plan9.Dir) { d.Name, d.Uid, d.Gid, d.Mode = "ctl", st.Uid, st.Gid, 0644 }), ""},
		{"whitelist", null(func(d *plan9.Dir) { d.Mode = plan9.DMAPPEND | 0644 }), ""},
		{"/", null(func(d *plan9.Dir) { d.Mode = plan9.DMDIR | 0555 }), ""},
		{"ctl", null(func(d *plan9.Dir) { d.Length = 5 }), "permission denied: the length of ctl can only be set to 0"},
		{"ctl", null(func(d *plan9.Dir) { d.Name = "ctl2" }), "permission denied: cannot rename ctl"},
		{"ctl", null(func(d *plan9.Dir) { d.Mode = 0600 }), "permission denied: cannot change the mode of ctl"},
		{"whitelist", null(func(d *plan9.Dir) { d.Mode = plan9.DMAPPEND | 0600 }), "permission denied: cannot change the mode of whitelist"},
		{"stats", null(func(d *plan9.Dir) { d.Gid = "other" }), "permission denied: cannot change the group of stats"},
		{"/", null(func(d *plan9.Dir) { d.Name = "root" }), "permission denied: cannot rename /"},
		// What go9p drops, answering success.
		{"ctl", null(func(d *plan9.Dir) { d.Uid = "mallory" }), "permission denied: cannot change the owner of ctl"},
		{"whitelist", null(func(d *plan9.Dir) { d.Mode = 0644 }), "permission denied: cannot change the mode of whitelist"},
		{"ctl", null(func(d *plan9.Dir) { d.Mode = plan9.DMEXCL | 0644 }), "permission denied: cannot change the mode of ctl"},
		{"/", null(func(d *plan9.Dir) { d.Mode = 0555 }), "permission denied: cannot change the mode of /"},
		{"stats", null(func(d *plan9.Dir) { d.Length = 0 }), "permission denied: cannot set the length of stats"},
		{"log", null(func(d *plan9.Dir) { d.Length = 0 }), "permission denied: cannot set the length of log"},
		{"/", null(func(d *plan9.Dir) { d.Length = 0 }), "permission denied: cannot set the length of /"},
		{"ctl", null(func(d *plan9.Dir) { d.Muid = "mallory" }), "permission denied: cannot change the type, dev, qid or muid of ctl"},
		{"ctl", null(func(d *plan9.Dir) { d.Qid = plan9.Qid{Path: 99} }), "permission denied: cannot change the type, dev, qid or muid of ctl"},
		{"ctl", null(func(d *plan9.Dir) { d.Dev = 7 }), "permission denied: cannot change the type, dev, qid or muid of ctl"},
	} {
		if err := fsys.Wstat(tc.file, tc.d); errText(err) != tc.want {
			t.Errorf("wstat %s %v: %q, want %q", tc.file, tc.d, errText(err), tc.want)
		}
	}
	for _, name := range []string{"ctl", "whitelist", "stats", "/"} {
		if now, err := fsys.Stat(name); err != nil {
			t.Errorf("%s gone after wstats: %v", name, err)
		} else if name == "ctl" && (now.Uid != st.Uid || now.Mode != st.Mode || now.Name != "ctl") {
			t.Errorf("ctl after wstats: %v, was %v", now, st)
		}
	}
	if got := string(e.wl.Text()); got != "# whitelist\n192.0.2.7 mx.example.net\n" {
		t.Errorf("a wstat changed the whitelist: %q", got)
	}
	waitLog(t, e, "9p: wstat refused: permission denied: cannot change the owner of ctl")
}

func TestPermissions(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)
	open := func(name string, mode uint8) error {
		fid, err := fsys.Open(name, mode)
		if err == nil {
			fid.Close()
		}
		return err
	}
	create := func(name string) error {
		fid, err := fsys.Create(name, plan9.OWRITE, 0644)
		if err == nil {
			fid.Close()
		}
		return err
	}
	for _, tc := range []struct {
		what string
		err  error
		want string
	}{
		{"create", create("new"), "permission denied"},
		{"create dir", func() error { _, err := fsys.Create("d", plan9.OREAD, plan9.DMDIR|0755); return err }(), "permission denied"},
		{"remove ctl", fsys.Remove("ctl"), "permission denied"},
		{"remove queue", fsys.Remove("queue"), "permission denied"},
		{"write stats", open("stats", plan9.OWRITE), "permission denied"},
		{"write version", open("version", plan9.ORDWR), "permission denied"},
		{"write log", open("log", plan9.OWRITE), "permission denied"},
		{"write log.recent", open("log.recent", plan9.OWRITE), "permission denied"},
		{"truncate stats", open("stats", plan9.OREAD|plan9.OTRUNC), "permission denied"},
		{"exec ctl", open("ctl", plan9.OEXEC), "permission denied"},
		{"rclose ctl", open("ctl", plan9.OWRITE|plan9.ORCLOSE), "permission denied"},
		{"write dir", open("/", plan9.OWRITE), "is a directory"},
		{"missing", open("nonesuch", plan9.OREAD), "file does not exist"},
		{"ctl truncating", open("ctl", plan9.OWRITE|plan9.OTRUNC), ""},
		{"whitelist truncating", open("whitelist", plan9.OWRITE|plan9.OTRUNC), ""},
	} {
		if errText(tc.err) != tc.want {
			t.Errorf("%s: %q, want %q", tc.what, errText(tc.err), tc.want)
		}
	}
	for _, name := range []string{"ctl", "queue", "whitelist", "log"} {
		if _, err := fsys.Stat(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestWhitelist(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)
	start := string(e.wl.Text())
	// `>` (OTRUNC, or a length-0 wstat) appends like `>>`.
	if err := fstest.Write(fsys, "whitelist", plan9.OWRITE|plan9.OTRUNC, "10.0.0.0/8\n"); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Wstat("whitelist", func() *plan9.Dir { var d plan9.Dir; d.Null(); d.Length = 0; return &d }()); err != nil {
		t.Fatal(err)
	}
	if err := fstest.Write(fsys, "whitelist", plan9.OWRITE, "2001:db8::/32 v6\n", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	want := start + "10.0.0.0/8\n2001:db8::/32 v6\n198.51.100.1\n"
	if got := fstest.Read(t, fsys, "whitelist"); got != want {
		t.Errorf("whitelist = %q, want %q", got, want)
	}

	err := fstest.Write(fsys, "whitelist", plan9.OWRITE, "192.0.2.1\nbogus\n")
	if errText(err) != "invalid whitelist line 2 bogus: not an address" {
		t.Errorf("bad entry: %q", errText(err))
	}
	if got := string(e.wl.Text()); got != want {
		t.Errorf("a bad write changed the whitelist: %q", got)
	}
	waitLog(t, e, "9p: whitelist: invalid whitelist line 2 bogus: not an address\n")
	waitLog(t, e, "9p: whitelist: 10.0.0.0/8\n")
}

func TestBlocked(t *testing.T) {
	blocked := &listBackend{}
	e := newEnv(t, func(c *fs.Config) { c.Blocked = blocked })
	fsys := fstest.Dial(t, e.ds)
	if err := fstest.Write(fsys, "blocked", plan9.OWRITE, "203.0.113.0/24\n"); err != nil {
		t.Fatal(err)
	}
	if got := fstest.Read(t, fsys, "blocked"); got != "203.0.113.0/24\n" {
		t.Errorf("blocked = %q", got)
	}
}

func TestQueueList(t *testing.T) {
	e := newEnv(t)
	e.q.set([]queue.Item{
		{ID: "q1", From: "alice@example.org", Rcpts: []string{"bob@example.net"}, Size: 1234,
			Arrived: testNow.Add(-5 * time.Minute), Next: testNow.Add(time.Minute)},
		{ID: "q2", Rcpts: []string{"a@example.net", "b@example.com"}, Size: 10,
			Arrived: testNow.Add(-26*time.Hour - 3*time.Minute), Tries: 3, Held: true,
			LastErr: "451 4.7.1 can't deliver now"},
		{ID: "q3", From: "x=y@example.org", Rcpts: []string{"c@example.org"},
			Arrived: testNow.Add(-90 * time.Second), Next: testNow.Add(-10 * time.Second), Tries: 1,
			LastErr: "dial tcp: timeout\nsecond line"},
		{ID: "q4", From: "d@example.org", Rcpts: []string{"e@example.org"}},
	}, nil)

	fsys := fstest.Dial(t, e.ds)
	want := "q1 alice@example.org bob@example.net 1234 5m 0 1m ''\n" +
		"q2 '<>' a@example.net,b@example.com 10 1d2h 3 held '451 4.7.1 can''t deliver now'\n" +
		"q3 'x=y@example.org' c@example.org 0 1m30s 1 0s 'dial tcp: timeout second line'\n" +
		"q4 d@example.org e@example.org 0 - 0 - ''\n"
	if got := fstest.Read(t, fsys, "queue"); got != want {
		t.Errorf("queue:\n%s\nwant:\n%s", got, want)
	}
}

const message = "From: alice@example.org\nTo: bob@example.net\nSubject: hello\n\nHello, Bob.\n"

func TestQueueSubmit(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)

	// The header is checked once, when its blank line arrives.
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, message[:30], message[30:60], message[60:]); err != nil {
		t.Fatal(err)
	}
	if got := e.q.got(); len(got) != 1 || got[0] != message {
		t.Fatalf("submitted %q, want %q", got, message)
	}
	if n := e.q.checks(); n != 1 {
		t.Errorf("Check called %d times, want 1", n)
	}
	waitLog(t, e, fmt.Sprintf("9p: queue: queued q0001, %d bytes\n", len(message)))

	// Empty writes before the message, or instead of one, are nothing.
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, "", "", message); err != nil {
		t.Errorf("empty writes, then a message: %v", err)
	}
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, ""); err != nil {
		t.Errorf("an empty write: %v", err)
	}
	if got := e.q.got(); len(got) != 2 || got[1] != message {
		t.Errorf("submitted %q, want the message twice", got)
	}

	// A message that is all header is checked at clunk.
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, "To: carol@example.com\nSubject: x\n"); err != nil {
		t.Fatal(err)
	}
	if got := len(e.q.got()); got != 3 {
		t.Errorf("%d messages submitted, want 3", got)
	}
}

func TestQueueBadMessages(t *testing.T) {
	e := newEnv(t, func(c *fs.Config) { c.MaxMessage = 1000 })
	fsys := fstest.Dial(t, e.ds)
	badAddr := e.q.Check([]byte("To: <<bob\n"))
	for _, tc := range []struct {
		what  string
		parts []string
		want  string
	}{
		{"no recipients", []string{"From: a@example.org\nSubject: x\n\nbody\n"}, "invalid message: no recipients"},
		{"bad address", []string{"To: <<bob\n", "\nbody\n"}, errText(badAddr)},
		{"empty header", []string{"\nbody\n"}, "invalid message: no recipients"},
		{"too long", []string{"To: bob@example.net\n\n", strings.Repeat("x", 999)}, "message too long"},
		{"no recipients at clunk", []string{"Subject: x\n"}, "invalid message: no recipients"},
	} {
		err := fstest.Write(fsys, "queue", plan9.OWRITE, tc.parts...)
		if errText(err) != tc.want {
			t.Errorf("%s: %q, want %q", tc.what, errText(err), tc.want)
		}
	}
	if !strings.HasPrefix(errText(badAddr), "invalid address in To: ") {
		t.Errorf("fake Check: %q", errText(badAddr))
	}
	if got := e.q.got(); len(got) != 0 {
		t.Errorf("bad messages were submitted: %q", got)
	}
	waitLog(t, e, "9p: queue: message not queued: no recipients\n")

	// Every write after a failed one fails the same, and nothing is queued.
	fid, err := fsys.Open("queue", plan9.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	fid.Write([]byte("Subject: x\n\n"))
	if _, err := fid.Write([]byte("To: late@example.org\n\n")); errText(err) != "invalid message: no recipients" {
		t.Errorf("write after a failure: %q", errText(err))
	}
	if err := fid.Close(); err != nil {
		t.Errorf("close after a failure: %v", err)
	}

	e.q.set(nil, errors.New("disk full"))
	err = fstest.Write(fsys, "queue", plan9.OWRITE, message)
	if errText(err) != "message not queued: i/o error: disk full" {
		t.Errorf("failed submit: %q", errText(err))
	}
	// A temporary failure says so, in a word 9pfuse maps to EAGAIN: when
	// the header is checked (the queue's disk is full), or at the clunk.
	full := smtp.Replyf(452, "4.3.1", "insufficient system storage")
	e.q.set(nil, full)
	err = fstest.Write(fsys, "queue", plan9.OWRITE, message)
	if want := "message not queued: temporary failure: 452 4.3.1 insufficient system storage"; errText(err) != want {
		t.Errorf("temporary failure of submit: %q, want %q", errText(err), want)
	}
	e.q.mu.Lock()
	e.q.full = full
	e.q.mu.Unlock()
	err = fstest.Write(fsys, "queue", plan9.OWRITE, message)
	if want := "temporary failure: 452 4.3.1 insufficient system storage"; errText(err) != want {
		t.Errorf("temporary failure of the header's check: %q, want %q", errText(err), want)
	}
	waitLog(t, e, "9p: queue: message not queued: 452 4.3.1 insufficient system storage\n")
	e.q.mu.Lock()
	e.q.full = nil
	e.q.mu.Unlock()
	// The limit follows SetMaxMessage.
	e.q.set(nil, nil)
	e.srv.SetMaxMessage(2000)
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, "To: bob@example.net\n\n", strings.Repeat("x", 1500)); err != nil {
		t.Errorf("1500 bytes with a limit of 2000: %v", err)
	}
	e.srv.SetMaxMessage(100)
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, "To: bob@example.net\n\n", strings.Repeat("x", 100)); errText(err) != "message too long" {
		t.Errorf("100 bytes with a limit of 100: %v", err)
	}
	if got := len(e.q.got()); got != 1 {
		t.Errorf("%d messages submitted, want 1", got)
	}
}

// TestQueueDropped: a connection that dies in the middle of a message
// queues nothing.
func TestQueueDropped(t *testing.T) {
	e := newEnv(t)
	fsys, nc := fstest.DialConn(t, e.ds)
	fid, err := fsys.Open("queue", plan9.OWRITE)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fid.Write([]byte(message[:40])); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	waitLog(t, e, "9p: queue: connection lost, message of 40 bytes not queued\n")
	if got := e.q.got(); len(got) != 0 {
		t.Errorf("a dropped connection's message was submitted: %q", got)
	}
}

// TestCtlDropped: a line left without its newline by a piece of a longer
// write, on a connection that dies before its clunk, is dropped, not
// applied, on ctl and the lists.
func TestCtlDropped(t *testing.T) {
	bl := &listBackend{}
	e := newEnv(t, func(c *fs.Config) { c.Blocked = bl })
	for _, tc := range []struct{ file, line, logged string }{
		{"ctl", "greylist on", "'greylist on'"},
		{"whitelist", "192.0.2.99", "192.0.2.99"},
		{"blocked", "block 192.0.2.99", "'block 192.0.2.99'"},
	} {
		fsys, nc := fstest.DialConn(t, e.ds)
		fid, err := fsys.Open(tc.file, plan9.OWRITE)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fid.Write([]byte(piece(4096, tc.line))); err != nil {
			t.Fatal(err)
		}
		nc.Close()
		waitLog(t, e, fmt.Sprintf("9p: %s: connection lost, unfinished line %s dropped\n", tc.file, tc.logged))
	}
	if e.ctl.greylist() {
		t.Errorf("the dead connection's ctl line was applied")
	}
	if strings.Contains(string(e.wl.Text()), "192.0.2.99") || strings.Contains(string(bl.Text()), "192.0.2.99") {
		t.Errorf("the dead connection's entries were added: whitelist %q, blocked %q", string(e.wl.Text()), string(bl.Text()))
	}
}

// reader follows the log file in a goroutine, sending what each read
// returns.
func reader(t *testing.T, fid *client.Fid) <-chan string {
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		buf := make([]byte, 8192)
		for {
			n, err := fid.Read(buf)
			if err != nil {
				if err != io.EOF {
					ch <- "error: " + err.Error()
				}
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no log read returned in 10s")
		return ""
	}
}

func TestLog(t *testing.T) {
	e := newEnv(t)
	fmt.Fprintf(e.hub, "Nov 24 15:23:01 smtpd: one\nNov 24 15:23:02 smtpd: two\n")
	fsys := fstest.Dial(t, e.ds)
	if got, want := fstest.Read(t, fsys, "log.recent"), "Nov 24 15:23:01 smtpd: one\nNov 24 15:23:02 smtpd: two\n"; got != want {
		t.Errorf("log.recent = %q, want %q", got, want)
	}
	fid, err := fsys.Open("log", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	ch := reader(t, fid)
	if got, want := next(t, ch), "Nov 24 15:23:01 smtpd: one\nNov 24 15:23:02 smtpd: two\n"; got != want {
		t.Errorf("first read = %q, want %q", got, want)
	}
	fmt.Fprintf(e.hub, "Nov 24 15:23:03 smtp: three")
	if got, want := next(t, ch), "Nov 24 15:23:03 smtp: three\n"; got != want {
		t.Errorf("next read = %q, want %q", got, want)
	}
	// Clunking the fid ends the stream; the blocked read sees EOF.
	fid.Close()
	testlib.WaitFor(t, 10*time.Second, "no log followers", func() bool { return e.hub.Followers() == 0 })
}

func TestLogMark(t *testing.T) {
	e := newEnv(t, func(c *fs.Config) { c.Mark = 10 * time.Millisecond })
	fsys := fstest.Dial(t, e.ds)
	fid, err := fsys.Open("log", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	defer fid.Close()
	if got, want := next(t, reader(t, fid)), "Nov 24 15:23:01 -- MARK --\n"; got != want {
		t.Errorf("idle read = %q, want %q", got, want)
	}
}

// TestLogFollowers: as many readers as allowed block on the log of one
// connection (as FUSE users share one) while other files still answer; one
// more is refused; a reader whose connection dies frees its place.
func TestLogFollowers(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)
	for i := range fs.DefaultMaxFollowers - 1 {
		fid, err := fsys.Open("log", plan9.OREAD)
		if err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
		reader(t, fid)
	}
	other, nc := fstest.DialConn(t, e.ds)
	fid, err := other.Open("log", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	reader(t, fid)
	testlib.WaitFor(t, 10*time.Second, "readers", func() bool { return e.hub.Followers() == fs.DefaultMaxFollowers })

	if _, err := fsys.Open("log", plan9.OREAD); errText(err) != "log busy: too many readers" {
		t.Errorf("one reader too many: %q", errText(err))
	}
	for range 10 {
		if got := fstest.Read(t, fsys, "ctl"); got != e.ctl.Config() {
			t.Fatalf("ctl with the log readers blocked: %q", got)
		}
		if err := fstest.Write(fsys, "ctl", plan9.OWRITE, "tarpit on\n"); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintf(e.hub, "a line for everyone\n")

	nc.Close() // drop the connection, clunking nothing
	testlib.WaitFor(t, 10*time.Second, "a freed reader", func() bool { return e.hub.Followers() == fs.DefaultMaxFollowers-1 })
	fid, err = fsys.Open("log", plan9.OREAD)
	if err != nil {
		t.Fatalf("reader after a disconnect: %v", err)
	}
	fid.Close()
}

func TestClose(t *testing.T) {
	e := newEnv(t)
	fsys := fstest.Dial(t, e.ds)
	fid, err := fsys.Open("log", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	ch := reader(t, fid)
	e.srv.Close()
	for s := range ch {
		if !strings.HasPrefix(s, "error: ") {
			t.Errorf("read after Close: %q", s)
		}
	}
	if e.hub.Followers() != 0 {
		t.Errorf("%d log followers after Close", e.hub.Followers())
	}
	if _, err := client.Dial("unix", e.sock); err == nil {
		t.Errorf("dial after Close succeeded")
	}
}
