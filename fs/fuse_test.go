package fs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/fs"
	"smtpfs/fs/fstest"
	"smtpfs/smtp/queue"
	"smtpfs/test/testlib"
)

var (
	binDir      string
	mount9pOnce sync.Once
	mount9pPath string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fs-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mount mounts e's tree with mount9p (built once), or skips the test.
func mount(t *testing.T, e *env) string {
	t.Helper()
	fstest.CanMount(t)
	mount9pOnce.Do(func() { mount9pPath = fstest.BuildMount9p(t, binDir) })
	if mount9pPath == "" {
		t.Fatal("mount9p was not built")
	}
	return fstest.Mount(t, mount9pPath, e.sock, "ctl")
}

// A step is one shell command run on the mount, whether it must succeed,
// and what must hold after it.
type step struct {
	cmd   string
	ok    bool
	check func(t *testing.T, out string)
}

func runSteps(t *testing.T, shell, mnt string, steps []step) {
	t.Helper()
	for _, s := range steps {
		out, err := fstest.Shell(t, shell, mnt, s.cmd)
		if err != nil && !fstest.IsExit(err) {
			t.Fatalf("%s -c %q: %v", shell, s.cmd, err)
		}
		if (err == nil) != s.ok {
			t.Errorf("%s -c %q: error %v (output %q), want success %v", shell, s.cmd, err, out, s.ok)
			continue
		}
		if s.check != nil {
			s.check(t, out)
		}
	}
}

// queueItems are shown in the queue file of the FUSE tests.
var queueItems = []queue.Item{
	{ID: "q1", From: "alice@example.org", Rcpts: []string{"bob@example.net"}, Size: 1234,
		Arrived: testNow.Add(-5 * time.Minute), Next: testNow.Add(time.Minute)},
	{ID: "q2", Rcpts: []string{"a@example.net", "b@example.com"}, Size: 10,
		Arrived: testNow.Add(-26 * time.Hour), Tries: 3, Held: true, LastErr: "451 4.7.1 can't deliver now"},
}

// session is the operator's session of the README, as steps for shell;
// rc and sh differ only in how a failure is reported.
func session(t *testing.T, e *env, msgFile string) []step {
	fsys := fstest.Dial(t, e.ds)
	same := func(file string, want func() string) func(*testing.T, string) {
		return func(t *testing.T, out string) {
			if w := want(); out != w {
				t.Errorf("cat %s = %q, want %q", file, out, w)
			}
		}
	}
	return []step{
		{"echo greylist on > ctl", true, func(t *testing.T, _ string) {
			if !e.ctl.greylist() {
				t.Errorf("greylist on did not apply")
			}
		}},
		{"cat ctl", true, same("ctl", e.ctl.Config)},
		{"echo bogus on > ctl", false, nil},
		{"echo 10.0.0.0/8 >> whitelist", true, nil},
		{"echo 198.51.100.7 relay.example.net > whitelist", true, func(t *testing.T, _ string) {
			if got := e.wl.Text(); !strings.HasSuffix(got, "\n10.0.0.0/8\n198.51.100.7 relay.example.net\n") {
				t.Errorf("whitelist after > and >>: %q", got)
			}
		}},
		{"echo x > whitelist", false, nil},
		{"cat whitelist", true, same("whitelist", e.wl.Text)},
		{"cat " + msgFile + " > queue", true, func(t *testing.T, _ string) {
			// The clunk, where the message is queued, arrives after the
			// shell has returned.
			testlib.WaitFor(t, 10*time.Second, "the message queued", func() bool { return len(e.q.got()) == 1 })
			if got := e.q.got()[0]; got != message {
				t.Errorf("queued %q, want %q", got, message)
			}
		}},
		{"printf 'Subject: no recipients\n\nbody\n' > queue", false, nil},
		{"cat queue", true, same("queue", func() string { return fstest.Read(t, fsys, "queue") })},
		{"ls -l", true, func(t *testing.T, out string) {
			for _, name := range []string{"ctl", "log", "log.recent", "queue", "stats", "version", "whitelist"} {
				if !strings.Contains(out, " "+name+"\n") {
					t.Errorf("ls -l has no %s:\n%s", name, out)
				}
			}
		}},
		{"cat log.recent", true, func(t *testing.T, out string) {
			testlib.WaitFor(t, 10*time.Second, "the queued line", func() bool {
				return strings.Contains(string(e.hub.Recent()), "9p: queue: queued q0001")
			})
			if !strings.Contains(out, "9p: ctl: greylist on\n") {
				t.Errorf("log.recent:\n%s", out)
			}
		}},
		{"sed 1q log", true, func(t *testing.T, out string) {
			if !strings.HasPrefix(string(e.hub.Recent()), out) || out == "" {
				t.Errorf("first line of log = %q", out)
			}
			testlib.WaitFor(t, 10*time.Second, "the reader gone", func() bool { return e.hub.Followers() == 0 })
		}},
		{"cat stats", true, same("stats", func() string { return "connections 12\nmessages.accepted 3\n9p.connections 2\n9p.logreaders 0\n" })},
		{"mv ctl ctl.old", false, nil},
		{"echo x > newfile", false, nil},
		{"mkdir dir", false, nil},
		{"chmod 600 ctl", false, nil},
		{"cat ctl > /dev/null", true, nil},
		// Last: after a failed remove, mount9p v1.18.0 hands out the same
		// fid twice (its client's Remove returns it to the free list
		// twice), which breaks the mount until it is made again.
		{"rm ctl", false, nil},
	}
}

func writeMessage(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(p, []byte(message), 0644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMount9pSh drives the tree through a real FUSE mount with sh.
func TestMount9pSh(t *testing.T) {
	e := newEnv(t)
	e.q.set(queueItems, nil)
	mnt := mount(t, e)
	runSteps(t, "sh", mnt, session(t, e, writeMessage(t)))
}

// TestMount9pRc parses the queue file with rc's own quoting through a real
// FUSE mount, then drives the session with rc.
func TestMount9pRc(t *testing.T) {
	rc := fstest.Rc(t)
	e := newEnv(t)
	e.q.set(queueItems, nil)
	mnt := mount(t, e)
	script := `ifs='
'
for(line in ` + "`" + `{cat $m/queue}) {
	eval 'f=('^$line^')'
	echo $#f $f(1) $f(2) $f(3) $f(7) $f(8)
}
if(echo bogus > $m/ctl) echo bogus accepted
if not echo bogus refused: $status
`
	out, err := fstest.Shell(t, rc, mnt, script)
	if err != nil {
		t.Fatalf("rc script: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []string{
		"8 q1 alice@example.org bob@example.net 1m ", // the last field is ''
		"8 q2 <> a@example.net,b@example.com held 451 4.7.1 can't deliver now",
	}
	if len(lines) < 3 || lines[0] != want[0] || lines[1] != want[1] || !strings.HasPrefix(lines[len(lines)-1], "bogus refused") {
		t.Errorf("rc script:\n%s\nwant:\n%s\n...\nbogus refused...", out, strings.Join(want, "\n"))
	}
	runSteps(t, rc, mnt, session(t, e, writeMessage(t)))
}

// TestMount9pQueueDir lists and reads queued messages through FUSE (one
// longer than mount9p's 16 KiB reads), and removes one.
func TestMount9pQueueDir(t *testing.T) {
	big := strings.Repeat("A line of a long message body.\n", 4000)
	q := msgQueue{&queueBackend{}, map[string]string{"q1": message, "q2": big}}
	q.set([]queue.Item{{ID: "q1"}, {ID: "q2"}}, nil)
	e := newEnv(t, func(c *fs.Config) { c.Queue = q })
	mnt := mount(t, e)
	runSteps(t, "sh", mnt, []step{
		{"ls queue.d", true, func(t *testing.T, out string) {
			if out != "q1\nq2\n" {
				t.Errorf("ls queue.d = %q", out)
			}
		}},
		{"cat queue.d/q2 | wc -c", true, func(t *testing.T, out string) {
			if strings.TrimSpace(out) != fmt.Sprint(len(big)) {
				t.Errorf("cat queue.d/q2 gave %s bytes, want %d", out, len(big))
			}
		}},
		{"cat queue.d/q1", true, func(t *testing.T, out string) {
			if out != message {
				t.Errorf("cat queue.d/q1 = %q", out)
			}
		}},
		{"rm queue.d/q1", true, func(t *testing.T, _ string) {
			if acts := e.ctl.actions(); len(acts) != 1 || acts[0].Verb != "delete" {
				t.Errorf("ctl actions after rm: %v", acts)
			}
		}},
	})
}
