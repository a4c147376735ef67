// Package fstest helps tests drive smtpfs's 9P tree for real, wherever it
// is served from (the fs package's own tests, or the daemon's end-to-end
// tests): a 9fans.net/go/plan9/client connection from a dial string, raw 9P
// messages, a FUSE mount made with go9p's mount9p, and shells run on it.
// Every helper takes the dial string or socket path of the service.
package fstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"
	"github.com/knusbaum/go9p/proto"
)

// User is the name the helpers attach as.
const User = "glenda"

// Timeout bounds each helper's wait on the server.
const Timeout = 30 * time.Second

// NetAddr turns a dial string (unix!path, tcp!host!port) into what net.Dial takes.
func NetAddr(dialstring string) (network, addr string, err error) {
	f := strings.Split(dialstring, "!")
	switch {
	case len(f) == 2 && f[0] == "unix":
		return "unix", f[1], nil
	case len(f) == 3 && (f[0] == "tcp" || f[0] == "net"):
		return "tcp", net.JoinHostPort(f[1], f[2]), nil
	}
	return "", "", fmt.Errorf("fstest: bad dial string %q", dialstring)
}

// DialRaw connects to the 9P service at dialstring, with no protocol: for
// tests that write bytes of their own. The connection is closed at the
// end of the test.
func DialRaw(t testing.TB, dialstring string) net.Conn {
	t.Helper()
	network, addr, err := NetAddr(dialstring)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout(network, addr, Timeout)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * Timeout))
	t.Cleanup(func() { c.Close() })
	return c
}

// Dial attaches to the 9P service at dialstring as User with the 9fans
// client. The connection is closed at the end of the test.
func Dial(t testing.TB, dialstring string) *client.Fsys {
	t.Helper()
	fsys, _ := DialConn(t, dialstring)
	return fsys
}

// DialConn is Dial, and also returns the connection beneath, which a test
// may close to drop the client without a clunk.
func DialConn(t testing.TB, dialstring string) (*client.Fsys, net.Conn) {
	t.Helper()
	nc := DialRaw(t, dialstring)
	conn, err := client.NewConn(nc)
	if err != nil {
		t.Fatalf("9P version on %s: %v", dialstring, err)
	}
	fsys, err := conn.Attach(nil, User, "")
	if err != nil {
		t.Fatalf("9P attach on %s: %v", dialstring, err)
	}
	return fsys, nc
}

// Read returns the whole content of the file name, failing the test on an
// error. It must not be used on a file that blocks (log).
func Read(t testing.TB, fsys *client.Fsys, name string) string {
	t.Helper()
	fid, err := fsys.Open(name, plan9.OREAD)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer fid.Close()
	b, err := io.ReadAll(fid)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

// Write opens name for writing with mode (plan9.OWRITE, maybe |OTRUNC),
// writes each of parts in its own Twrite, and clunks the fid. It returns
// the first error: of the open, of a write, or of the clunk.
func Write(fsys *client.Fsys, name string, mode uint8, parts ...string) error {
	fid, err := fsys.Open(name, mode)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := fid.Write([]byte(p)); err != nil {
			fid.Close()
			return err
		}
	}
	return fid.Close()
}

// Send writes 9P messages, composed by go9p's proto, on a raw connection.
func Send(t testing.TB, c net.Conn, msgs ...proto.FCall) {
	t.Helper()
	for _, m := range msgs {
		if _, err := c.Write(m.Compose()); err != nil {
			t.Fatalf("write %s: %v", m, err)
		}
	}
}

// Recv reads one 9P message from a raw connection.
func Recv(t testing.TB, r io.Reader) proto.FCall {
	t.Helper()
	fc, err := proto.ParseCall(r)
	if err != nil {
		t.Fatalf("read 9P reply: %v", err)
	}
	return fc
}

// Version sends Tversion on a raw connection and checks that the reply
// is 9P2000.
func Version(t testing.TB, c net.Conn, r io.Reader) {
	t.Helper()
	Send(t, c, &proto.TRVersion{Header: proto.Header{Type: proto.Tversion, Tag: 0xFFFF}, Msize: 8192, Version: "9P2000"})
	if rv, ok := Recv(t, r).(*proto.TRVersion); !ok || rv.Version != "9P2000" {
		t.Fatalf("Tversion: got %v, want Rversion 9P2000", rv)
	}
}

// CanMount skips the test unless a FUSE mount can be made here: /dev/fuse,
// fusermount3 (or fusermount) and root, since /dev/fuse is root's only on
// most machines and mount9p forces allow_other.
func CanMount(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse: FUSE tests need Debian's fuse3")
	}
	if fusermount() == "" {
		t.Skip("no fusermount3 or fusermount: FUSE tests need Debian's fuse3")
	}
	if os.Getuid() != 0 {
		t.Skip("FUSE tests need root: /dev/fuse is root's, and mount9p mounts with allow_other")
	}
}

func fusermount() string {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// BuildMount9p builds go9p's mount9p (a tool of the module) into dir and
// returns its path.
func BuildMount9p(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "mount9p")
	out, err := exec.Command("go", "build", "-o", p, "github.com/knusbaum/go9p/cmd/mount9p").CombinedOutput()
	if err != nil {
		t.Fatalf("go build mount9p: %v\n%s", err, out)
	}
	return p
}

// Mount mounts the 9P service on the Unix socket at socket with the
// mount9p binary, waits until it shows the file probe, and returns the
// mount point. At the end of the test mount9p gets SIGTERM (which frees
// any process stuck in a FUSE request) and the mount is lazily unmounted,
// so that no mount is ever left behind. Call CanMount first.
func Mount(t testing.TB, mount9p, socket, probe string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0755); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(mount9p, socket, mnt)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		exec.Command(fusermount(), "-u", "-z", mnt).Run()
	})
	deadline := time.Now().Add(Timeout)
	for d := time.Millisecond; ; d = min(2*d, 100*time.Millisecond) {
		if _, err := os.Stat(filepath.Join(mnt, probe)); err == nil {
			return mnt
		}
		select {
		case err := <-exited:
			t.Fatalf("mount9p exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount9p: %s/%s not there after %v\n%s", mnt, probe, Timeout, stderr.String())
		}
		time.Sleep(d)
	}
}

// Rc returns the path of an rc shell (plan9port's, or Debian 9base's), or
// skips the test.
func Rc(t testing.TB) string {
	t.Helper()
	places := []string{"/usr/lib/plan9/bin/rc", "/usr/local/plan9/bin/rc"}
	if p9 := os.Getenv("PLAN9"); p9 != "" {
		places = append([]string{p9 + "/bin/rc"}, places...)
	}
	for _, p := range places {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("rc"); err == nil {
		return p
	}
	t.Skip("no rc: install Debian's 9base (or plan9port)")
	return ""
}

// Shell runs script with shell -c in dir, with $m set to dir, and returns
// its standard output and error, and its error (an *exec.ExitError when it
// exits non-zero). It is killed after Timeout.
func Shell(t testing.TB, shell, dir, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell, "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "m="+dir)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s -c %q: killed after %v\n%s", shell, script, Timeout, out)
	}
	return string(out), err
}

// A Step is one shell command run in a mount: whether it must succeed
// (its exit status is all that is checked of a failure, since the texts
// are the shell's and the errno's), and what must hold after it.
type Step struct {
	Cmd   string
	OK    bool
	Check func(t *testing.T, out string) // nil: nothing more
}

// RunSteps runs each step with shell -c in dir (see Shell), in order.
func RunSteps(t *testing.T, shell, dir string, steps []Step) {
	t.Helper()
	for _, s := range steps {
		out, err := Shell(t, shell, dir, s.Cmd)
		if err != nil && !IsExit(err) {
			t.Fatalf("%s -c %q: %v", shell, s.Cmd, err)
		}
		if (err == nil) != s.OK {
			t.Errorf("%s -c %q: %v (output %q), want success %v", shell, s.Cmd, err, out, s.OK)
			continue
		}
		if s.Check != nil {
			s.Check(t, out)
		}
	}
}

// IsExit reports whether err is a command's non-zero exit.
func IsExit(err error) bool {
	var e *exec.ExitError
	return errors.As(err, &e)
}
