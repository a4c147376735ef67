package test

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// The files of contrib/ are run here as systemd and inetd would run them:
// the command lines they hold, through the real programs, with only the
// paths (binaries, mail root, name space) and the SMTP address (loopback,
// a free port) replaced. systemd-analyze checks the units' syntax where it
// is installed.

// A unit is a systemd unit file: section.Key → values, in order.
type unit map[string][]string

// readUnit reads contrib/name.
func readUnit(t *testing.T, name string) unit {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "contrib", name))
	if err != nil {
		t.Fatal(err)
	}
	u, section := unit{}, ""
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("contrib/%s: line %q is not Key=value", name, l)
			}
			u[section+"."+k] = append(u[section+"."+k], v)
		}
	}
	return u
}

// one returns the single value of key, failing the test if there is not
// exactly one.
func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("%s: %q, want one value", key, u[key])
	}
	return u[key][0]
}

// command turns a unit's or inetd's command line into one to run here:
// the binary from its base name, -R's value root, -l's value a free
// loopback port. It fails the test if the line does not run the program
// want from /usr/local/bin.
func command(t *testing.T, words []string, want, root string) []string {
	t.Helper()
	if len(words) == 0 || words[0] != "/usr/local/bin/"+want {
		t.Fatalf("command %q does not run /usr/local/bin/%s", words, want)
	}
	out := []string{bin(t, want)}
	for i := 1; i < len(words); i++ {
		w := words[i]
		out = append(out, w)
		if i+1 < len(words) && (w == "-R" || w == "-l") {
			i++
			switch w {
			case "-R":
				out = append(out, root)
			case "-l":
				out = append(out, "tcp!127.0.0.1!0")
			}
		}
	}
	if !hasFlag(out, "-R") {
		t.Fatalf("command %q gives no mail root (-R)", words)
	}
	return out
}

// TestContribSmtpfsService runs contrib/smtpfs.service's ExecStart as
// systemd would, in /, with its environment (NAMESPACE in a directory of
// the test's), then its ExecReload, which must make the daemon read
// lib/smtpd.conf again, then stops it with SIGTERM within TimeoutStopSec:
// it must exit 0.
func TestContribSmtpfsService(t *testing.T) {
	u := readUnit(t, "smtpfs.service")
	root := filepath.Join(t.TempDir(), "mail")
	d := &Daemon{Root: root, NS: t.TempDir()}
	env := os.Environ()
	for _, e := range u["Service.Environment"] {
		k, _, _ := strings.Cut(e, "=")
		if k != "NAMESPACE" {
			t.Fatalf("Environment=%s: the test knows NAMESPACE only", e)
		}
		env = append(env, "NAMESPACE="+d.NS)
	}
	if !strings.HasPrefix(u.one(t, "Service.RuntimeDirectory"), "smtpfs") {
		t.Errorf("RuntimeDirectory=%s, the NAMESPACE directory is not made", u.one(t, "Service.RuntimeDirectory"))
	}
	args := command(t, strings.Fields(u.one(t, "Service.ExecStart")), "smtpfs", root)
	d.start(t, "/", env, args[1:]...)
	if want := "unix!" + d.NS + "/smtpfs"; len(d.NineP) == 0 || d.NineP[0] != want {
		t.Errorf("9P posted on %q, want %q", d.NineP, want)
	}

	os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte("maxsize 11k\n"), 0644)
	reload := strings.Fields(strings.ReplaceAll(u.one(t, "Service.ExecReload"), "$MAINPID", strconv.Itoa(d.Cmd.Process.Pid)))
	if out, err := exec.Command(reload[0], reload[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %q: %v\n%s", reload, err, out)
	}
	testlib.WaitFor(t, 10*time.Second, "the reload in log/smtpd", func() bool {
		b, _ := os.ReadFile(filepath.Join(root, "log", "smtpd"))
		return bytes.Contains(b, []byte("reloaded "))
	})
	r := dialRaw(t, d.SMTP[0], "")
	r.Expect("220 ")
	r.Send("EHLO client.example")
	if ehlo := strings.Join(r.Expect("250 "), "\n"); !strings.Contains(ehlo, "SIZE 11264") {
		t.Errorf("after ExecReload, EHLO says %q, want SIZE 11264", ehlo)
	}
	r.C.Close()

	stop, err := time.ParseDuration(u.one(t, "Service.TimeoutStopSec") + "s")
	if err != nil {
		t.Fatal(err)
	}
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("SIGTERM: exit status %d, want 0\n%s", code, d.Stderr)
		}
	case <-time.After(stop):
		t.Errorf("still running %v after SIGTERM\n%s", stop, d.Stderr)
	}
}

// acceptedConn connects to a fresh loopback listener from ip and returns
// the client's end and the server's accepted socket as a file: what inetd
// and systemd hand the program.
func acceptedConn(t *testing.T, ip string) (*Raw, *os.File) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.(*net.TCPConn).File()
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return &Raw{t: t, C: c, R: bufio.NewReader(c)}, f
}

// runOnSocket runs args with the socket f on standard input and output,
// and on standard error too when inetd, else standard error in a buffer
// (systemd's journal); it closes f, and returns a function that waits for
// the program's exit and returns its standard error and exit error.
func runOnSocket(t *testing.T, f *os.File, inetd bool, args []string) func() (string, error) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir, cmd.Env = "/", append(os.Environ(), quickExit)
	var stderr SyncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &stderr
	if inetd {
		cmd.Stderr = f
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return func() (string, error) {
		select {
		case err := <-done:
			done <- err // for the cleanup
			return stderr.String(), err
		case <-time.After(20 * time.Second):
			t.Fatalf("%q still running after its session", args)
			return "", nil
		}
	}
}

// contribSession sends a message to bob; the caller checks that it was
// delivered with the client's address, which the program can only have
// taken from its socket.
func contribSession(t *testing.T, r *Raw) {
	t.Helper()
	r.Expect("220 ")
	r.Send("EHLO client.example.net")
	r.Expect("250 ")
	if got := r.transaction("a@sender.example", []string{"bob"}, "Subject: contrib\r\n\r\nhello\r\n"); got != "250 2.5.0 sent" {
		t.Errorf("DATA: %q", got)
	}
	r.Send("QUIT")
	r.Expect("221 ")
}

// TestContribSmtpdSocket runs contrib/smtpd@.service's ExecStart as
// systemd does for contrib/smtpd.socket (Accept=yes): a process per
// connection, the accepted socket on standard input and output, standard
// error elsewhere (the journal).
func TestContribSmtpdSocket(t *testing.T) {
	sock := readUnit(t, "smtpd.socket")
	if sock.one(t, "Socket.Accept") != "yes" || sock.one(t, "Socket.ListenStream") != "25" {
		t.Errorf("smtpd.socket: Accept=%q ListenStream=%q, want yes and 25", sock["Socket.Accept"], sock["Socket.ListenStream"])
	}
	svc := readUnit(t, "smtpd@.service")
	for k, want := range map[string]string{"StandardInput": "socket", "StandardOutput": "socket", "StandardError": "journal"} {
		if got := svc.one(t, "Service."+k); got != want {
			t.Errorf("smtpd@.service: %s=%s, want %s", k, got, want)
		}
	}
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(root, 0755)
	args := command(t, strings.Fields(svc.one(t, "Service.ExecStart")), "smtpd", root)
	r, f := acceptedConn(t, "127.0.0.9")
	wait := runOnSocket(t, f, false, args)
	contribSession(t, r)
	if stderr, err := wait(); err != nil {
		t.Errorf("smtpd: %v\n%s", err, stderr)
	}
	if m := boxMessages(t, root, "bob"); len(m) != 1 || !strings.Contains(m[0], "([127.0.0.9])") {
		t.Errorf("bob has %q, want one message from [127.0.0.9]", m)
	}
}

// TestContribInetd runs the line of contrib/inetd.conf as inetd does: the
// socket on standard input, output and error. A session delivers; and
// when smtpd cannot run (no mail root) the client reads why.
func TestContribInetd(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "contrib", "inetd.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var f []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && l[0] != '#' {
			if f != nil {
				t.Fatalf("inetd.conf: more than one line: %q", l)
			}
			f = strings.Fields(l)
		}
	}
	// service socket-type protocol wait user server argv...
	if len(f) < 7 || f[0] != "smtp" || f[1] != "stream" || f[2] != "tcp" || !strings.HasPrefix(f[3], "nowait") || f[6] != "smtpd" {
		t.Fatalf("inetd.conf line %q: want smtp stream tcp nowait user server smtpd ...", f)
	}
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(root, 0755)
	args := command(t, append([]string{f[5]}, f[7:]...), "smtpd", root)
	r, sock := acceptedConn(t, "127.0.0.10")
	wait := runOnSocket(t, sock, true, args)
	contribSession(t, r)
	if _, err := wait(); err != nil {
		t.Errorf("smtpd: %v", err)
	}
	if m := boxMessages(t, root, "bob"); len(m) != 1 || !strings.Contains(m[0], "([127.0.0.10])") {
		t.Errorf("bob has %q, want one message from [127.0.0.10]", m)
	}

	missing := filepath.Join(t.TempDir(), "nosuchroot")
	r, sock = acceptedConn(t, "127.0.0.10")
	wait = runOnSocket(t, sock, true, command(t, append([]string{f[5]}, f[7:]...), "smtpd", missing))
	line, _ := r.R.ReadString('\n')
	if !strings.HasPrefix(line, "smtpd: mail root "+missing) {
		t.Errorf("without a mail root, the client read %q", line)
	}
	if _, err := wait(); err == nil {
		t.Error("smtpd without a mail root exited 0")
	}
}

// TestContribSystemdVerify: systemd-analyze verify finds nothing to say
// about the units, with their programs built here and their
// Documentation= pages found in man/.
func TestContribSystemdVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze (Debian's systemd package) to check the units")
	}
	dir := t.TempDir()
	names := []string{"smtpfs.service", "smtpd.socket", "smtpd@.service"}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("..", "contrib", n))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"smtpfs", "smtpd"} {
			b = bytes.ReplaceAll(b, []byte("/usr/local/bin/"+p+" "), []byte(bin(t, p)+" "))
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0644); err != nil {
			t.Fatal(err)
		}
	}
	man, err := filepath.Abs(filepath.Join("..", "man"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sa, append([]string{"verify"}, names...)...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "MANPATH="+man)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", strings.Join(names, " "), err, out)
	}
}
