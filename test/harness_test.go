// Package test holds the end-to-end tests: they build the real programs,
// start them on loopback ports and drive them with real clients.
package test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "smtpfs-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	// The programs check SPF of what arrives from outside (spf tag, the
	// default): their DNS is on loopback, as every network of the tests
	// is, and knows no name unless a test says otherwise
	// (t.Setenv("SMTPFS_RESOLVER", ...)).
	stopDNS := func() {}
	if os.Getenv("SMTPFS_RESOLVER") == "" {
		stop, addr, err := testlib.ServeDNS("")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		stopDNS = stop
		os.Setenv("SMTPFS_RESOLVER", addr)
	}
	code := m.Run()
	stopDNS()
	os.RemoveAll(dir)
	os.Exit(code)
}

var builds sync.Map // program name → *buildOnce

type buildOnce struct {
	once sync.Once
	path string
	err  error
}

// bin returns the path of the program (smtpfs, smtpd, smtp, or a Go
// package path such as github.com/knusbaum/go9p/cmd/mount9p), built once
// per test run, with the race detector when the tests have it.
func bin(t testing.TB, name string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(name, &buildOnce{})
	b := v.(*buildOnce)
	b.once.Do(func() {
		pkg := name
		if !strings.Contains(name, "/") {
			pkg = "smtpfs/cmd/" + name
		}
		b.path = filepath.Join(binDir, filepath.Base(name))
		args := []string{"build", "-o", b.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// quickExit, in a program's environment, makes a program built with -race
// exit at once instead of sleeping a second first for late race reports
// (GORACE's atexit_sleep_ms); a GORACE of the caller's still wins.
var quickExit = "GORACE=atexit_sleep_ms=0 " + os.Getenv("GORACE")

// A Daemon is a running smtpfs.
type Daemon struct {
	Root   string              // mail root
	SMTP   []string            // host:port of each SMTP listener, in -l order
	Submit map[string][]string // host:port of the submission and submissions listeners, by role
	NineP  []string            // dial strings of the 9P service: unix!path first, then -9 listeners
	NS     string              // the namespace directory it posted in
	Cmd    *exec.Cmd
	Stderr *SyncBuffer
	done   chan struct{}
}

var (
	smtpLine  = regexp.MustCompile(`^smtpfs: (smtp|submission|submissions) listening on (\S+)$`)
	ninepLine = regexp.MustCompile(`^smtpfs: 9p (?:posted|listening) on (\S+)$`)
)

// startDaemon starts smtpfs with the mail root root and the arguments args,
// adding -R root, and -l tcp!127.0.0.1!0 unless args has a -l. The 9P
// service is posted in a fresh namespace directory. It waits for the
// daemon's "smtpfs: ready" line and stops it with SIGTERM at the end of
// the test.
func startDaemon(t testing.TB, root string, args ...string) *Daemon {
	t.Helper()
	args = append([]string{"-R", root}, args...)
	if !hasFlag(args, "-l") {
		args = append(args, "-l", "tcp!127.0.0.1!0")
	}
	d := &Daemon{Root: root, NS: t.TempDir()}
	d.start(t, "", append(os.Environ(), "NAMESPACE="+d.NS), args...)
	return d
}

// start runs smtpfs with args in the directory dir ("" for the test's)
// with the environment env, and waits for its "smtpfs: ready" line.
func (d *Daemon) start(t testing.TB, dir string, env []string, args ...string) {
	t.Helper()
	d.Stderr, d.done = &SyncBuffer{}, make(chan struct{})
	d.Cmd = exec.Command(bin(t, "smtpfs"), args...)
	d.Cmd.Dir, d.Cmd.Env = dir, append(env, quickExit)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d.Cmd.Stderr = pw
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	ready := make(chan error, 1)
	go d.readStderr(pr, ready)
	go func() { d.Cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.Stop(t) })
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("smtpfs %q: %v\n%s", args, err, d.Stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("smtpfs %q: not ready after 30s\n%s", args, d.Stderr)
	}
}

func (d *Daemon) readStderr(r *os.File, ready chan<- error) {
	sc := bufio.NewScanner(r)
	said := false
	for sc.Scan() {
		line := sc.Text()
		d.Stderr.WriteString(line + "\n")
		if said {
			continue
		}
		if m := smtpLine.FindStringSubmatch(line); m != nil && m[1] == "smtp" {
			d.SMTP = append(d.SMTP, dialToAddr(m[2]))
		} else if m != nil {
			if d.Submit == nil {
				d.Submit = map[string][]string{}
			}
			d.Submit[m[1]] = append(d.Submit[m[1]], dialToAddr(m[2]))
		} else if m := ninepLine.FindStringSubmatch(line); m != nil {
			d.NineP = append(d.NineP, m[1])
		} else if line == "smtpfs: ready" {
			said = true
			ready <- nil
		}
	}
	if !said {
		ready <- fmt.Errorf("exited before it was ready")
	}
}

// Stop sends SIGTERM and waits for the daemon to exit (killing it after
// 20 s). It is safe to call more than once.
func (d *Daemon) Stop(t testing.TB) {
	select {
	case <-d.done:
		return
	default:
	}
	d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		d.Cmd.Process.Kill()
		<-d.done
		t.Errorf("smtpfs did not stop on SIGTERM within 20s\n%s", d.Stderr)
	}
}

// Kill kills the daemon with SIGKILL and waits for it.
func (d *Daemon) Kill() {
	d.Cmd.Process.Kill()
	<-d.done
}

// Exited reports whether the daemon has exited.
func (d *Daemon) Exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// UnixSocket returns the path of the 9P service posted in the namespace.
func (d *Daemon) UnixSocket() string {
	for _, s := range d.NineP {
		if p, ok := strings.CutPrefix(s, "unix!"); ok {
			return p
		}
	}
	return ""
}

func hasFlag(args []string, f string) bool {
	for _, a := range args {
		if a == f {
			return true
		}
	}
	return false
}

// dialToAddr turns tcp!host!port into host:port.
func dialToAddr(s string) string {
	f := strings.Split(s, "!")
	if len(f) == 3 {
		return net.JoinHostPort(f[1], f[2])
	}
	return s
}

// A SyncBuffer is a bytes.Buffer safe for concurrent use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *SyncBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.WriteString(s)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A Raw is a raw SMTP connection for protocol edge cases.
type Raw struct {
	t testing.TB
	C net.Conn
	R *bufio.Reader
}

// dialRaw connects to addr from the local address from ("" for any,
// "127.0.0.5" to appear as another loopback host).
func dialRaw(t testing.TB, addr, from string) *Raw {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return &Raw{t: t, C: c, R: bufio.NewReader(c)}
}

// Send writes s followed by CRLF.
func (r *Raw) Send(s string) {
	r.t.Helper()
	r.Write(s + "\r\n")
}

// Write writes s as it is.
func (r *Raw) Write(s string) {
	r.t.Helper()
	if _, err := r.C.Write([]byte(s)); err != nil {
		r.t.Fatalf("write %q: %v", s, err)
	}
}

// Reply reads one whole reply and returns its lines without CRLF.
func (r *Raw) Reply() []string {
	r.t.Helper()
	var lines []string
	for {
		l, err := r.R.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// Expect reads one reply and fails the test unless its last line starts
// with prefix. It returns the reply's lines.
func (r *Raw) Expect(prefix string) []string {
	r.t.Helper()
	lines := r.Reply()
	if !strings.HasPrefix(lines[len(lines)-1], prefix) {
		r.t.Fatalf("reply %q, want %q", lines, prefix)
	}
	return lines
}

// Closed reports whether the server closed the connection (EOF or reset)
// within timeout, discarding anything it sent before that.
func (r *Raw) Closed(timeout time.Duration) bool {
	r.C.SetReadDeadline(time.Now().Add(timeout))
	defer r.C.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 4096)
	for {
		_, err := r.R.Read(buf)
		if err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}
