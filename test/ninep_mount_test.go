package test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9/client"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// The daemon's tree through a real FUSE mount made with go9p's mount9p,
// driven by sh and rc as an operator would: the session of the README.

// A ninepMounted is a daemon whose tree is mounted, with a 9fans client beside
// the mount to check what the shell did, and a smarthost that says 451 so
// that queued mail stays in the queue.
type ninepMounted struct {
	d    *Daemon
	mnt  string
	fsys *client.Fsys
	sink *testlib.Sink
	msg  string // path of a message file to queue
}

func ninepMountDaemon(t *testing.T) *ninepMounted {
	t.Helper()
	m := ninepDaemon(t)
	m.mnt = fstest.Mount(t, bin(t, "github.com/knusbaum/go9p/cmd/mount9p"), m.d.UnixSocket(), "ctl")
	return m
}

// ninepDaemon is ninepMountDaemon before the mount.
func ninepDaemon(t *testing.T) *ninepMounted {
	t.Helper()
	fstest.CanMount(t)
	sink := testlib.NewSink(t, testlib.SinkOptions{})
	sink.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" {
			return smtp.Replyf(451, "4.3.0", "not now")
		}
		return nil
	})
	d := startMail(t, "smarthost tcp!127.0.0.1!"+sink.Port()+"\n")
	m := &ninepMounted{d: d, sink: sink, fsys: fstest.Dial(t, d.NineP[0]), msg: filepath.Join(t.TempDir(), "msg")}
	if err := os.WriteFile(m.msg, []byte(ninepMsg), 0644); err != nil {
		t.Fatal(err)
	}
	return m
}

const ninepMsg = "From: glenda@example.org\nTo: rob@example.net, bob@localhost\nSubject: hello\n\nHi Rob.\n"

// ninepSession is the operator's session of the README as shell steps,
// for sh and rc alike (the exit status is what a failure is).
func ninepSession(m *ninepMounted) []fstest.Step {
	has := func(file string, wants ...string) func(t *testing.T, out string) {
		return func(t *testing.T, out string) {
			for _, w := range wants {
				if !strings.Contains(out, w) {
					t.Errorf("%s lacks %q:\n%s", file, w, out)
				}
			}
		}
	}
	var ctl string
	return []fstest.Step{
		{Cmd: "echo greylist on > ctl", OK: true, Check: func(t *testing.T, _ string) {
			if got := ninepDataReply(t, m.d, "127.0.0.5", "bob@localhost"); got != "451 4.7.1 please try again soon from the same IP." {
				t.Errorf("DATA after greylist on: %q", got)
			}
			ctl = fstest.Read(t, m.fsys, "ctl")
		}},
		{Cmd: "cat ctl", OK: true, Check: func(t *testing.T, out string) {
			if out != ctl || !strings.Contains(out, "\ngreylist on\n") {
				t.Errorf("cat ctl = %q, want %q", out, ctl)
			}
		}},
		{Cmd: "echo bogus on > ctl", OK: false},
		{Cmd: "printf 'tarpit on\\nbogus\\n' > ctl", OK: false, Check: func(t *testing.T, _ string) {
			if got := fstest.Read(t, m.fsys, "ctl"); got != ctl {
				t.Errorf("a refused write changed ctl:\n%s", got)
			}
		}},
		{Cmd: "echo 10.0.0.0/8 >> whitelist", OK: true},
		{Cmd: "echo 192.0.2.7 mx.example.net > whitelist", OK: true},
		{Cmd: "echo x > whitelist", OK: false},
		{Cmd: "cat whitelist", OK: true, Check: func(t *testing.T, out string) {
			if want := "10.0.0.0/8\n192.0.2.7 mx.example.net\n"; out != want {
				t.Errorf("cat whitelist = %q, want %q", out, want)
			}
		}},
		{Cmd: "cat " + m.msg + " > queue", OK: true, Check: func(t *testing.T, _ string) {
			// The clunk, where the message is queued, comes after the
			// shell has returned; the smarthost refuses rob.
			ninepWaitQueue(t, m.fsys, "the message tried", func(f []string) bool { return f[5] == "1" })
			if b := boxMessages(t, m.d.Root, "bob"); len(b) != 1 || !strings.Contains(b[0], "\nSubject: hello\n") || !strings.HasSuffix(b[0], "\n\nHi Rob.\n") {
				t.Errorf("bob's Maildir has %q", b)
			}
		}},
		{Cmd: "printf 'From: glenda@example.org\\nSubject: nobody\\n\\nbody\\n' > queue", OK: false},
		{Cmd: "cat queue", OK: true, Check: func(t *testing.T, out string) {
			q := ninepQueue(t, m.fsys)
			got := ninepRcWords(strings.TrimSuffix(out, "\n"))
			if len(q) != 1 || len(got) != 8 {
				t.Fatalf("cat queue = %q; the 9P client reads %q", out, q)
			}
			for _, i := range []int{0, 1, 2, 3, 5, 7} { // age and next move on
				if got[i] != q[0][i] {
					t.Errorf("cat queue = %q, want %q", got, q[0])
				}
			}
			if got[2] != "rob@example.net" || got[5] != "1" || !strings.Contains(got[7], "451 4.3.0 not now") {
				t.Errorf("cat queue = %q", out)
			}
		}},
		{Cmd: "ls -l", OK: true, Check: has("ls -l", "-rw-r--r-- 1 ", " ctl\n", " whitelist\n", " queue\n", "-r--r--r-- 1 ", " log\n",
			" log.recent\n", " stats\n", " version\n", "dr-xr-xr-x 1 ", " queue.d\n")},
		{Cmd: "cat log.recent", OK: true, Check: has("log.recent", "9p: ctl: greylist on\n", "9p: ctl: invalid ctl line 1 'bogus on': unknown verb 'bogus'\n",
			"9p: whitelist: 10.0.0.0/8\n", "9p: queue: queued ", "runq: deferred ", "smtpd: ehlo from 127.0.0.5 as client.example.net\n")},
		{Cmd: "sed 2q log", OK: true, Check: func(t *testing.T, out string) {
			if lines := strings.Split(out, "\n"); len(lines) != 3 || !strings.HasPrefix(fstest.Read(t, m.fsys, "log.recent"), out) {
				t.Errorf("sed 2q log = %q", out)
			}
			// sed is gone: so is its place among the log's readers.
			testlib.WaitFor(t, 10*time.Second, "the reader gone", func() bool { return ninepStats(t, m.fsys)["9p.logreaders"] == 0 })
		}},
		{Cmd: "cat stats", OK: true, Check: has("stats", "\ngreylisted 1\n", "\nqueue.length 1\n", "\nwhitelist.entries 2\n", "\n9p.connections 2\n")},
		{Cmd: "mv ctl ctl.old", OK: false},
		{Cmd: "echo x > newfile", OK: false},
		{Cmd: "mkdir dir", OK: false},
		{Cmd: "echo x > stats", OK: false},
		{Cmd: "truncate -s 0 ctl", OK: true},
		{Cmd: "cat ctl > /dev/null", OK: true},
	}
}

// TestNinepMountSh is the operator's session with sh.
func TestNinepMountSh(t *testing.T) {
	m := ninepMountDaemon(t)
	fstest.RunSteps(t, "sh", m.mnt, ninepSession(m))
	ninepFollowMount(t, m)
	// Last: a failed rm leaves mount9p v1.18.0 confused (smtpfs(4), BUGS).
	ninepMessageSteps(t, m)
}

// ninepMessageSteps writes a big message to queue, reads a queued one in
// queue.d and removes it, and fails to remove ctl.
func ninepMessageSteps(t *testing.T, m *ninepMounted) {
	id := ninepQueue(t, m.fsys)[0][0]
	// A message bigger than mount9p's 16 KiB writes, which all carry the
	// offset of their 64 KiB FUSE write, arrives whole.
	var body strings.Builder
	for i := range 4000 {
		fmt.Fprintf(&body, "line %04d of a long message\n", i)
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, []byte("From: glenda@example.org\nTo: carol@localhost\nSubject: big\n\n"+body.String()), 0644); err != nil {
		t.Fatal(err)
	}
	fstest.RunSteps(t, "sh", m.mnt, []fstest.Step{
		{Cmd: "cat " + big + " > queue", OK: true, Check: func(t *testing.T, _ string) {
			var box []string
			testlib.WaitFor(t, 10*time.Second, "carol's message", func() bool {
				box = boxMessages(t, m.d.Root, "carol")
				return len(box) == 1
			})
			if !strings.Contains(box[0], "\nSubject: big\n") || !strings.HasSuffix(box[0], "\n\n"+body.String()) {
				t.Errorf("carol's message (%d bytes) is not the %d bytes of body written", len(box[0]), body.Len())
			}
		}},
		{Cmd: "cat queue.d/" + id, OK: true, Check: func(t *testing.T, out string) {
			if !strings.Contains(out, "Subject: hello\r\n") {
				t.Errorf("cat queue.d/%s = %q", id, out)
			}
		}},
		{Cmd: "rm queue.d/" + id, OK: true, Check: func(t *testing.T, _ string) {
			if q := ninepQueue(t, m.fsys); len(q) != 0 {
				t.Errorf("queue after rm: %q", q)
			}
		}},
		{Cmd: "rm ctl", OK: false},
	})
}

// TestNinepMountRc is the operator's session with rc, and an rc script
// that takes the queue file apart with rc's own quoting.
func TestNinepMountRc(t *testing.T) {
	rc := fstest.Rc(t)
	m := ninepMountDaemon(t)
	fstest.RunSteps(t, rc, m.mnt, ninepSession(m))
	ninepRcScript(t, rc, m)
}

// ninepRcScript runs an rc script on the mount: it takes the queue file
// apart with rc's own quoting, and writes ctl, a bad write and a good one.
func ninepRcScript(t *testing.T, rc string, m *ninepMounted) {
	script := `ifs='
'
for(line in ` + "`" + `{cat queue}) {
	eval 'f=('^$line^')'
	echo $#f $f(2) $f(3) $f(6) $f(8)
}
echo 'kick
bogus' > ctl
echo bogus: $status
echo greylist off > ctl && echo greylist off: $status
`
	out, err := fstest.Shell(t, rc, m.mnt, script)
	if err != nil {
		t.Fatalf("rc script: %v\n%s", err, out)
	}
	want := "8 glenda@example.org rob@example.net 1 451 4.3.0 not now\n" +
		"echo: write error: Invalid argument\n" + // mount9p's errno of every error; smtpfs mount's of 'invalid'
		"bogus: 1\n" +
		"greylist off: \n"
	if out != want {
		t.Errorf("rc script said:\n%s\nwant:\n%s", out, want)
	}
	if ctl := fstest.Read(t, m.fsys, "ctl"); !strings.Contains(ctl, "\ngreylist off\n") {
		t.Errorf("greylist off did not take:\n%s", ctl)
	}
	if log := fstest.Read(t, m.fsys, "log.recent"); strings.Contains(log, "9p: ctl: kick") || strings.Contains(log, "runq: kick") {
		t.Errorf("kick, in a write with a bad line, ran:\n%s", log)
	}
}

// ninepFollowMount runs `cat log` on the mount, sees an SMTP session
// arrive in it as it happens, then kills cat: once the read it was blocked
// in returns, the daemon forgets the reader.
func ninepFollowMount(t *testing.T, m *ninepMounted) {
	cmd := exec.Command("cat", filepath.Join(m.mnt, "log"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	r := ehlo(t, m.d, "127.0.0.6")
	r.Send("QUIT")
	r.Expect("221 ")
	timeout := time.After(10 * time.Second)
	for found := false; !found; {
		select {
		case l := <-lines:
			found = strings.HasSuffix(l, "smtpd: ehlo from 127.0.0.6 as client.example.net")
		case <-timeout:
			t.Fatalf("cat log did not show the session in 10s")
		}
	}
	if n := ninepStats(t, m.fsys)["9p.logreaders"]; n != 1 {
		t.Errorf("9p.logreaders %d while cat log runs, want 1", n)
	}
	cmd.Process.Kill()
	// FUSE cannot interrupt the read cat is blocked in: the next line
	// ends it.
	r = ehlo(t, m.d, "127.0.0.7")
	r.Send("QUIT")
	r.Expect("221 ")
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("cat log was not gone 10s after SIGKILL and a new log line")
	}
	testlib.WaitFor(t, 10*time.Second, "cat log's place freed", func() bool { return ninepStats(t, m.fsys)["9p.logreaders"] == 0 })
}
