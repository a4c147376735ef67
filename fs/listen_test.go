package fs_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"smtpfs/fs/fstest"
)

func TestPost(t *testing.T) {
	base, err := os.MkdirTemp("", "fs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	ns := filepath.Join(base, "ns")
	t.Setenv("NAMESPACE", ns)

	e := newEnv(t)
	ds, err := e.srv.Post("smtpfs")
	sock := filepath.Join(ns, "smtpfs")
	if err != nil || ds != "unix!"+sock {
		t.Fatalf("Post = %q, %v; want unix!%s", ds, err, sock)
	}
	for _, tc := range []struct {
		path string
		want os.FileMode
	}{{ns, os.ModeDir | 0700}, {sock, os.ModeSocket | 0600}} {
		if fi, err := os.Stat(tc.path); err != nil || fi.Mode() != tc.want {
			t.Errorf("%s: mode %v (%v), want %v", tc.path, fi.Mode(), err, tc.want)
		}
	}
	if _, err := fstest.Dial(t, ds).Stat("ctl"); err != nil {
		t.Errorf("stat ctl through the posted socket: %v", err)
	}

	// A live service is not replaced; a stale socket is.
	e2 := newEnv(t)
	if _, err := e2.srv.Post("smtpfs"); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("second Post: %v, want busy", err)
	}
	e.srv.Close()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket after Close: %v", err)
	}
	stale := filepath.Join(ns, "stale")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if ds, err := e2.srv.Post("stale"); err != nil {
		t.Errorf("Post over a stale socket: %v", err)
	} else if _, err := fstest.Dial(t, ds).Stat("ctl"); err != nil {
		t.Errorf("stat ctl through the reposted socket: %v", err)
	}

	if err := os.WriteFile(filepath.Join(ns, "plain"), nil, 0600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, mode string
		chmod      os.FileMode
		want       string
	}{
		{"plain", "", 0700, "exists and is not a socket"},
		{"a/b", "", 0700, "invalid service name"},
		{"open", "group writable", 0770, "permission denied: mode 0770 lets others write"},
		{"open", "world writable", 0703, "permission denied: mode 0703 lets others write"},
	} {
		if err := os.Chmod(ns, tc.chmod); err != nil {
			t.Fatal(err)
		}
		if _, err := e2.srv.Post(tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Post %s %s: %v, want %q", tc.name, tc.mode, err, tc.want)
		}
	}
}

func TestListenTCP(t *testing.T) {
	e := newEnv(t)
	ds, err := e.srv.Listen("tcp!127.0.0.1!0")
	if err != nil || !regexp.MustCompile(`^tcp!127\.0\.0\.1!\d+$`).MatchString(ds) {
		t.Fatalf("Listen = %q, %v", ds, err)
	}
	if got := fstest.Read(t, fstest.Dial(t, ds), "version"); got != "smtpfs test\n" {
		t.Errorf("version over TCP = %q", got)
	}
	if strings.Contains(string(e.hub.Recent()), "any machine") {
		t.Errorf("loopback listener warned:\n%s", e.hub.Recent())
	}

	// Beyond loopback only when asked for with ListenNetwork, loudly.
	for _, ds := range []string{"tcp!*!0", "tcp!!0", ":0", "tcp!0.0.0.0!0"} {
		if got, err := e.srv.Listen(ds); err == nil || !strings.Contains(err.Error(), "permission denied: not a loopback address") {
			t.Errorf("Listen(%s) = %q, %v; want refused", ds, got, err)
		}
	}
	all, err := e.srv.ListenNetwork("tcp!*!0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(e.hub.Recent()), "listening on "+all+" for clients of any machine: anyone who can reach it controls this server") {
		t.Errorf("no warning for a listener on every address:\n%s", e.hub.Recent())
	}
	// This process is ours: served through the open listener too.
	port := all[strings.LastIndexByte(all, '!')+1:]
	if got := fstest.Read(t, fstest.Dial(t, "tcp!127.0.0.1!"+port), "version"); got != "smtpfs test\n" {
		t.Errorf("version through the open listener = %q", got)
	}
	e.srv.Close()
	if _, err := e.srv.Listen("tcp!127.0.0.1!0"); err == nil {
		t.Errorf("Listen after Close succeeded")
	}
}

// TestPeerCred: on Linux, a process of another user is refused on the
// Unix socket even when its mode would let it in, and on loopback TCP;
// the owner (root here) is served on both.
func TestPeerCred(t *testing.T) {
	if runtime.GOOS != "linux" || os.Getuid() != 0 {
		t.Skip("needs Linux and root, to connect as another user")
	}
	py := "/usr/bin/python3" // one that another user may run
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3, to connect as another user")
	}
	e := newEnv(t)
	os.Chmod(filepath.Dir(e.sock), 0755)
	os.Chmod(e.sock, 0666)
	tcp, err := e.srv.Listen("tcp!127.0.0.1!0")
	if err != nil {
		t.Fatal(err)
	}
	open, err := e.srv.ListenNetwork("tcp!127.0.0.1!0")
	if err != nil {
		t.Fatal(err)
	}
	// Tversion, then print how many bytes come back.
	script := `import socket, sys
if sys.argv[1] == "unix":
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[2])
else:
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])))
s.settimeout(10)
try:
    s.sendall(bytes.fromhex("1300000064ffff002000000600395032303030"))
    print(len(s.recv(100)))
except (BrokenPipeError, ConnectionResetError):
    print(0)`
	run := func(uid uint32, ds string) string {
		args := []string{"-c", script, "unix", e.sock}
		if ds != e.ds {
			args = append([]string{"-c", script}, strings.Split(ds, "!")...)
		}
		cmd := exec.Command(py, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("python3 as uid %d: %v\n%s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, ds := range []string{e.ds, tcp, open} {
		if got := run(0, ds); got != "19" {
			t.Errorf("%s: root got %s bytes, want a 19-byte Rversion", ds, got)
		}
		if got := run(65534, ds); got != "0" {
			t.Errorf("%s: another user got %s bytes, want the connection closed", ds, got)
		}
		waitLog(t, e, ds+": refused a connection from ")
	}
	waitLog(t, e, "uid 65534 is another user")
}

// TestPostForeignNamespace: a name space directory that another user
// made, that others may write, or that is not a directory is refused, and
// the error says how to go on.
func TestPostForeignNamespace(t *testing.T) {
	base := t.TempDir()
	e := newEnv(t)
	for i, tc := range []struct {
		what  string
		make  func(dir string) error
		env   bool // $NAMESPACE names it
		want  string
		owner bool // needs root
	}{
		{"another user's", func(dir string) error {
			if err := os.Mkdir(dir, 0700); err != nil {
				return err
			}
			return os.Chown(dir, 65534, 65534)
		}, false, "permission denied: owned by uid 65534, who could read or replace what is posted there; " +
			"set $NAMESPACE to a directory of yours of mode 0700, for 9p and 9pfuse too, or remove the directory (as root)", true},
		{"another user's, named", func(dir string) error {
			if err := os.Mkdir(dir, 0700); err != nil {
				return err
			}
			return os.Chown(dir, 65534, 65534)
		}, true, "permission denied: owned by uid 65534, who could read or replace what is posted there; " +
			"set $NAMESPACE to another directory, of yours and of mode 0700, or remove the directory (as root)", true},
		{"open to all", func(dir string) error {
			if err := os.Mkdir(dir, 0700); err != nil {
				return err
			}
			return os.Chmod(dir, 01777)
		}, false, "permission denied: mode 0777 lets others write; chmod 700 DIR, or set $NAMESPACE to a directory of yours of mode 0700, for 9p and 9pfuse too", false},
		{"a symbolic link", func(dir string) error { return os.Symlink(base, dir) }, false,
			"permission denied: a symbolic link; remove it, or set $NAMESPACE", false},
		{"a file", func(dir string) error { return os.WriteFile(dir, nil, 0600) }, true,
			"not a directory; remove it, or set $NAMESPACE to another directory", false},
	} {
		if tc.owner && os.Getuid() != 0 {
			t.Logf("%s: needs root", tc.what)
			continue
		}
		dir := filepath.Join(base, strings.ReplaceAll(tc.what, " ", "_"))
		if tc.env {
			t.Setenv("NAMESPACE", dir)
		} else { // /tmp/ns.$USER.$DISPLAY
			user, disp := fmt.Sprintf("smtpfs-test%d", os.Getpid()), fmt.Sprintf(":%d", i)
			t.Setenv("NAMESPACE", "")
			t.Setenv("USER", user)
			t.Setenv("DISPLAY", disp)
			dir = "/tmp/ns." + user + "." + disp
			t.Cleanup(func() { os.RemoveAll(dir) })
		}
		if err := tc.make(dir); err != nil {
			t.Fatal(err)
		}
		want := "name space " + dir + ": " + strings.ReplaceAll(tc.want, "DIR", dir)
		if _, err := e.srv.Post("smtpfs"); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: Post: %v, want %s", tc.what, err, want)
		}
	}
}
