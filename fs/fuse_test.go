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

// queueItems are shown in the queue file of the FUSE tests.
var queueItems = []queue.Item{
	{ID: "q1", From: "alice@example.org", Rcpts: []string{"bob@example.net"}, Size: 1234,
		Arrived: testNow.Add(-5 * time.Minute), Next: testNow.Add(time.Minute)},
	{ID: "q2", Rcpts: []string{"a@example.net", "b@example.com"}, Size: 10,
		Arrived: testNow.Add(-26 * time.Hour), Tries: 3, Held: true, LastErr: "451 4.7.1 can't deliver now"},
}

// session is the operator's session of the README, as steps for shell;
// rc and sh differ only in how a failure is reported.
func session(t *testing.T, e *env, msgFile string) []fstest.Step {
	fsys := fstest.Dial(t, e.ds)
	same := func(file string, want func() string) func(*testing.T, string) {
		return func(t *testing.T, out string) {
			if w := want(); out != w {
				t.Errorf("cat %s = %q, want %q", file, out, w)
			}
		}
	}
	return []fstest.Step{
		{Cmd: "echo greylist on > ctl", OK: true, Check: func(t *testing.T, _ string) {
			if !e.ctl.greylist() {
				t.Errorf("greylist on did not apply")
			}
		}},
		{Cmd: "cat ctl", OK: true, Check: same("ctl", e.ctl.Config)},
		{Cmd: "echo bogus on > ctl", OK: false},
		{Cmd: "echo 10.0.0.0/8 >> whitelist", OK: true},
		{Cmd: "echo 198.51.100.7 relay.example.net > whitelist", OK: true, Check: func(t *testing.T, _ string) {
			if got := string(e.wl.Text()); !strings.HasSuffix(got, "\n10.0.0.0/8\n198.51.100.7 relay.example.net\n") {
				t.Errorf("whitelist after > and >>: %q", got)
			}
		}},
		{Cmd: "echo x > whitelist", OK: false},
		{Cmd: "cat whitelist", OK: true, Check: same("whitelist", func() string { return string(e.wl.Text()) })},
		{Cmd: "cat " + msgFile + " > queue", OK: true, Check: func(t *testing.T, _ string) {
			// The clunk, where the message is queued, arrives after the
			// shell has returned.
			testlib.WaitFor(t, 10*time.Second, "the message queued", func() bool { return len(e.q.got()) == 1 })
			if got := e.q.got()[0]; got != message {
				t.Errorf("queued %q, want %q", got, message)
			}
		}},
		{Cmd: "printf 'Subject: no recipients\n\nbody\n' > queue", OK: false},
		{Cmd: "cat queue", OK: true, Check: same("queue", func() string { return fstest.Read(t, fsys, "queue") })},
		{Cmd: "ls -l", OK: true, Check: func(t *testing.T, out string) {
			for _, name := range []string{"ctl", "log", "log.recent", "queue", "stats", "version", "whitelist"} {
				if !strings.Contains(out, " "+name+"\n") {
					t.Errorf("ls -l has no %s:\n%s", name, out)
				}
			}
		}},
		{Cmd: "cat log.recent", OK: true, Check: func(t *testing.T, out string) {
			testlib.WaitFor(t, 10*time.Second, "the queued line", func() bool {
				return strings.Contains(string(e.hub.Recent()), "9p: queue: queued q0001")
			})
			if !strings.Contains(out, "9p: ctl: greylist on\n") {
				t.Errorf("log.recent:\n%s", out)
			}
		}},
		{Cmd: "sed 1q log", OK: true, Check: func(t *testing.T, out string) {
			if !strings.HasPrefix(string(e.hub.Recent()), out) || out == "" {
				t.Errorf("first line of log = %q", out)
			}
			testlib.WaitFor(t, 10*time.Second, "the reader gone", func() bool { return e.hub.Followers() == 0 })
		}},
		{Cmd: "cat stats", OK: true, Check: same("stats", func() string { return "connections 12\nmessages.accepted 3\n9p.connections 2\n9p.logreaders 0\n" })},
		{Cmd: "mv ctl ctl.old", OK: false},
		{Cmd: "echo x > newfile", OK: false},
		{Cmd: "mkdir dir", OK: false},
		{Cmd: "chmod 600 ctl", OK: false},
		{Cmd: "cat ctl > /dev/null", OK: true},
		// Last: after a failed remove, mount9p v1.18.0 hands out the same
		// fid twice (its client's Remove returns it to the free list
		// twice), which breaks the mount until it is made again.
		{Cmd: "rm ctl", OK: false},
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
	fstest.RunSteps(t, "sh", mnt, session(t, e, writeMessage(t)))
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
	fstest.RunSteps(t, rc, mnt, session(t, e, writeMessage(t)))
}

// TestMount9pQueueDir lists and reads queued messages through FUSE (one
// longer than mount9p's 16 KiB reads), and removes one.
func TestMount9pQueueDir(t *testing.T) {
	big := strings.Repeat("A line of a long message body.\n", 4000)
	q := msgQueue{&queueBackend{}, map[string]string{"q1": message, "q2": big}}
	q.set([]queue.Item{{ID: "q1"}, {ID: "q2"}}, nil)
	e := newEnv(t, func(c *fs.Config) { c.Queue = q })
	mnt := mount(t, e)
	fstest.RunSteps(t, "sh", mnt, []fstest.Step{
		{Cmd: "ls queue.d", OK: true, Check: func(t *testing.T, out string) {
			if out != "q1\nq2\n" {
				t.Errorf("ls queue.d = %q", out)
			}
		}},
		{Cmd: "cat queue.d/q2 | wc -c", OK: true, Check: func(t *testing.T, out string) {
			if strings.TrimSpace(out) != fmt.Sprint(len(big)) {
				t.Errorf("cat queue.d/q2 gave %s bytes, want %d", out, len(big))
			}
		}},
		{Cmd: "cat queue.d/q1", OK: true, Check: func(t *testing.T, out string) {
			if out != message {
				t.Errorf("cat queue.d/q1 = %q", out)
			}
		}},
		{Cmd: "rm queue.d/q1", OK: true, Check: func(t *testing.T, _ string) {
			if acts := e.ctl.actions(); len(acts) != 1 || acts[0].Verb != "delete" {
				t.Errorf("ctl actions after rm: %v", acts)
			}
		}},
	})
}
