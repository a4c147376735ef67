package test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// The daemon's tree through `smtpfs mount`, the FUSE client of its own
// (fs/mount): the operator's session with sh and rc, Ctrl-C on a
// following `cat log`, the errnos a program sees, and the ways a mount
// ends, each leaving nothing mounted and no process behind.

// A fuseMount is a running `smtpfs mount`.
type fuseMount struct {
	dir    string
	cmd    *exec.Cmd
	stderr *SyncBuffer
	done   chan struct{} // closed when it has exited
}

// smtpfsMount runs `smtpfs mount -9 dialstring DIR` on a fresh directory
// and waits for its "mounted" line. At the end of the test it gets
// SIGTERM if it still runs, and must leave nothing mounted.
func smtpfsMount(t *testing.T, dialstring string) *fuseMount {
	t.Helper()
	fstest.CanMount(t)
	fm := &fuseMount{dir: filepath.Join(t.TempDir(), "mnt"), stderr: &SyncBuffer{}, done: make(chan struct{})}
	if err := os.Mkdir(fm.dir, 0755); err != nil {
		t.Fatal(err)
	}
	fm.cmd = exec.Command(bin(t, "smtpfs"), "mount", "-9", dialstring, fm.dir)
	fm.cmd.Env = append(os.Environ(), quickExit)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fm.cmd.Stderr = pw
	if err := fm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	mounted := make(chan bool, 1)
	go func() {
		said := false
		for sc := bufio.NewScanner(pr); sc.Scan(); {
			fm.stderr.WriteString(sc.Text() + "\n")
			if !said && strings.HasPrefix(sc.Text(), "smtpfs: mounted ") {
				said = true
				mounted <- true
			}
		}
		if !said {
			mounted <- false
		}
	}()
	go func() { fm.cmd.Wait(); close(fm.done) }()
	t.Cleanup(func() {
		fm.cmd.Process.Signal(syscall.SIGTERM)
		if !fm.exited(10 * time.Second) {
			fm.cmd.Process.Kill()
			<-fm.done
			t.Errorf("smtpfs mount did not exit 10s after SIGTERM\n%s", fm.stderr)
		}
		if isMounted(t, fm.dir) {
			exec.Command("fusermount3", "-u", "-z", fm.dir).Run()
			t.Errorf("%s still mounted after smtpfs mount exited", fm.dir)
		}
	})
	select {
	case ok := <-mounted:
		if !ok {
			t.Fatalf("smtpfs mount exited: %v\n%s", fm.cmd.ProcessState, fm.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("smtpfs mount: not mounted after 30s\n%s", fm.stderr)
	}
	return fm
}

// exited reports whether the mount process exits within d.
func (fm *fuseMount) exited(d time.Duration) bool {
	select {
	case <-fm.done:
		return true
	case <-time.After(d):
		return false
	}
}

// isMounted reports whether dir is a mount point, from /proc/self/mountinfo.
func isMounted(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// TestSmtpfsMountSh is the operator's session with sh, through smtpfs mount.
func TestSmtpfsMountSh(t *testing.T) {
	m := ninepDaemon(t)
	m.mnt = smtpfsMount(t, "unix!"+m.d.UnixSocket()).dir
	fstest.RunSteps(t, "sh", m.mnt, ninepSession(m))
	ninepFollowMount(t, m)
	ninepMessageSteps(t, m)
}

// TestSmtpfsMountRc is the operator's session with rc, and an rc script,
// through smtpfs mount.
func TestSmtpfsMountRc(t *testing.T) {
	rc := fstest.Rc(t)
	m := ninepDaemon(t)
	m.mnt = smtpfsMount(t, "unix!"+m.d.UnixSocket()).dir
	fstest.RunSteps(t, rc, m.mnt, ninepSession(m))
	ninepRcScript(t, rc, m)
}

// TestSmtpfsMountInterrupt: Ctrl-C ends a `cat log` waiting for the next
// line within two seconds (the FUSE interrupt becomes a Tflush), and the
// daemon forgets the reader. Through mount9p or 9pfuse, cat waits, in an
// uninterruptible sleep, for the next line.
func TestSmtpfsMountInterrupt(t *testing.T) {
	m := ninepDaemon(t)
	m.mnt = smtpfsMount(t, "unix!"+m.d.UnixSocket()).dir
	ninepInterrupt(t, m)
	ninepInterrupt(t, m) // and again, on the same connection
}

// ninepInterrupt runs `cat log` in a process group of its own, waits until
// it is blocked in a read of the mount, and sends the group SIGINT, as a
// terminal's Ctrl-C does.
func ninepInterrupt(t *testing.T, m *ninepMounted) {
	cmd := exec.Command("cat", filepath.Join(m.mnt, "log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string, 1000)
	exited := make(chan error, 1)
	go func() {
		for sc := bufio.NewScanner(out); sc.Scan(); {
			lines <- sc.Text()
		}
		exited <- cmd.Wait()
	}()
	// A line of this session: cat has read up to it.
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
	pid := cmd.Process.Pid
	testlib.WaitFor(t, 10*time.Second, "cat blocked in a read of the mount", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/wchan")
		return string(b) == "request_wait_answer" // FUSE's wait for its daemon
	})
	start := time.Now()
	if err := syscall.Kill(-pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
			t.Errorf("cat log ended with %v, want killed by SIGINT", err)
		}
		t.Logf("cat log ended %v after SIGINT", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Fatalf("cat log still runs 2s after SIGINT")
	}
	testlib.WaitFor(t, 10*time.Second, "cat log's place freed", func() bool { return ninepStats(t, m.fsys)["9p.logreaders"] == 0 })
}

// TestSmtpfsMountErrno: what a program sees of the daemon's errors through
// the mount, over TCP this time: the errno of each error's kind (as 9pfuse
// would have it, whatever words of its table the line quotes), and `>`
// accepted on every writable file.
func TestSmtpfsMountErrno(t *testing.T) {
	d := startMail(t, "", "-9", "tcp!127.0.0.1!0")
	mnt := smtpfsMount(t, d.NineP[1]).dir
	at := func(name string) string { return filepath.Join(mnt, name) }
	write := func(name, data string) error {
		f, err := os.OpenFile(at(name), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = f.WriteString(data)
		return err
	}
	for _, tc := range []struct {
		what string
		err  error
		want syscall.Errno // 0: success
	}{
		{"> ctl", write("ctl", "greylist on\n"), 0},
		{"> whitelist", write("whitelist", "192.0.2.7 mx.example.net\n"), 0},
		{"> queue", write("queue", "From: glenda@example.org\nTo: bob@localhost\n\nhi\n"), 0},
		{"a bad ctl line", write("ctl", "bogus on\n"), syscall.EINVAL},
		{"a bad whitelist entry", write("whitelist", "x\n"), syscall.EINVAL},
		{"a message without recipients", write("queue", "From: glenda@example.org\nSubject: x\n\nhi\n"), syscall.EINVAL},
		{"a ctl line of 70,000 bytes", write("ctl", strings.Repeat("x", 70000)+"\n"), syscall.E2BIG},
		{"a ctl line of 9pfuse's words", write("ctl", "no such verb busy\n"), syscall.EINVAL},
		{"a bad ctl line without its newline", write("ctl", "greylist bogus"), syscall.EINVAL},
		{"unwhitelist of nothing", write("ctl", "unwhitelist 192.0.2.9\n"), syscall.ENOENT},
		{"exportwhitelist into no directory", write("ctl", "exportwhitelist /nonexistent/no-such-dir/wl\n"), syscall.ENOENT},
		{"a write to queue that is no message", write("queue", "hello\n"), syscall.EINVAL},
		{"writing stats", write("stats", "x\n"), syscall.EACCES},
		{"rm ctl", os.Remove(at("ctl")), syscall.EACCES},
		{"mv ctl", os.Rename(at("ctl"), at("ctl.old")), syscall.EACCES},
		{"creating a file", os.WriteFile(at("new"), []byte("x"), 0644), syscall.EACCES},
		{"mkdir", os.Mkdir(at("dir"), 0755), syscall.EACCES},
		{"a file not there", func() error { _, err := os.Stat(at("nosuch")); return err }(), syscall.ENOENT},
	} {
		if tc.want == 0 && tc.err != nil || tc.want != 0 && !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, tc.err, tc.want)
		}
	}
	fsys := fstest.Dial(t, d.NineP[0])
	if ctl := fstest.Read(t, fsys, "ctl"); !strings.Contains(ctl, "\ngreylist on\n") {
		t.Errorf("greylist on did not take:\n%s", ctl)
	}
	if wl := fstest.Read(t, fsys, "whitelist"); wl != "192.0.2.7 mx.example.net\n" {
		t.Errorf("whitelist %q", wl)
	}
	testlib.WaitFor(t, 10*time.Second, "the message delivered", func() bool { return len(boxMessages(t, d.Root, "bob")) == 1 })
	// Readers of log beyond the daemon's 32: "log busy", EBUSY.
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for range 32 {
		f, err := os.Open(at("log"))
		if err != nil {
			t.Fatalf("open log: %v", err)
		}
		files = append(files, f)
	}
	if _, err := os.Open(at("log")); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("33rd reader of log: %v, want EBUSY", err)
	}
}

// TestSmtpfsMountEnds: a mount ends cleanly, leaving nothing mounted and
// no process: on SIGTERM while a `cat log` holds it busy (cat's read
// fails), on fusermount -u, and when the daemon goes away (exit 1).
func TestSmtpfsMountEnds(t *testing.T) {
	d := startMail(t, "")
	sock := "unix!" + d.UnixSocket()

	fm := smtpfsMount(t, sock)
	cat := exec.Command("cat", filepath.Join(fm.dir, "log"))
	if err := cat.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Process.Kill() })
	catDone := make(chan error, 1)
	go func() { catDone <- cat.Wait() }()
	testlib.WaitFor(t, 10*time.Second, "cat blocked in a read of the mount", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(cat.Process.Pid) + "/wchan")
		return string(b) == "request_wait_answer"
	})
	fm.cmd.Process.Signal(syscall.SIGTERM)
	if !fm.exited(10 * time.Second) {
		t.Fatalf("smtpfs mount still runs 10s after SIGTERM\n%s", fm.stderr)
	}
	if !fm.cmd.ProcessState.Success() || isMounted(t, fm.dir) {
		t.Errorf("after SIGTERM: %v, mounted %v\n%s", fm.cmd.ProcessState, isMounted(t, fm.dir), fm.stderr)
	}
	select {
	case err := <-catDone:
		if err == nil {
			t.Errorf("cat log succeeded on a mount that went away")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("cat log still runs 10s after the mount went away")
	}

	fm = smtpfsMount(t, sock)
	if out, err := exec.Command("fusermount3", "-u", fm.dir).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v\n%s", err, out)
	}
	if !fm.exited(10 * time.Second) {
		t.Fatalf("smtpfs mount still runs 10s after fusermount3 -u\n%s", fm.stderr)
	}
	if !fm.cmd.ProcessState.Success() {
		t.Errorf("after fusermount3 -u: %v\n%s", fm.cmd.ProcessState, fm.stderr)
	}

	fm = smtpfsMount(t, sock)
	d.Stop(t)
	if !fm.exited(10 * time.Second) {
		t.Fatalf("smtpfs mount still runs 10s after the daemon stopped\n%s", fm.stderr)
	}
	if fm.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(fm.stderr.String(), "smtpfs: mount: the 9P server is gone") || isMounted(t, fm.dir) {
		t.Errorf("after the daemon stopped: %v, mounted %v\n%s", fm.cmd.ProcessState, isMounted(t, fm.dir), fm.stderr)
	}
}

// TestSmtpfsMountUsage: smtpfs mount wants one directory, and says what
// it could not reach.
func TestSmtpfsMountUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mount"}, "usage: smtpfs mount [-9 dialstring] dir\n"},
		{[]string{"mount", "a", "b"}, "usage: smtpfs mount [-9 dialstring] dir\n"},
		{[]string{"mount", "-x", "a"}, "unknown flag -x"},
		{[]string{"mount", "-9", "unix!" + filepath.Join(t.TempDir(), "nosuch"), t.TempDir()}, "smtpfs: mount: 9P service unix!"},
		{[]string{"mount", "-9", "tcp!127.0.0.1", t.TempDir()}, "no port"},
	} {
		cmd := exec.Command(bin(t, "smtpfs"), tc.args...)
		cmd.Env = append(os.Environ(), quickExit)
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("smtpfs %q: %v\n%s\nwant exit 1 and %q", tc.args, err, out, tc.want)
		}
	}
}
