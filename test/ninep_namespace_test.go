package test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9/client"
)

// ninepFreshEnv is the environment of a fresh login, with user and display
// (either may be "" for unset) and no NAMESPACE.
func ninepFreshEnv(user, display string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if user != "" {
		env = append(env, "USER="+user)
	}
	if display != "" {
		env = append(env, "DISPLAY="+display)
	}
	return env
}

// ninepNSDir returns the name space directory /tmp/ns.user.display and removes
// it at the end of the test: registered before the daemon starts, that
// runs after the daemon has stopped.
func ninepNSDir(t *testing.T, user, display string) string {
	dir := "/tmp/ns." + user + "." + display
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestNinepFreshMachine runs smtpfs with no arguments in an empty
// directory, with the environment of a fresh login (USER and DISPLAY, no
// NAMESPACE), as `go run ./cmd/smtpfs` does: it makes ./mail, listens for
// SMTP on 127.0.0.1:2525 and posts its 9P service in
// /tmp/ns.$USER.$DISPLAY, where the 9fans client finds it by name.
func TestNinepFreshMachine(t *testing.T) {
	if l, err := net.Listen("tcp", "127.0.0.1:2525"); err != nil {
		t.Skipf("127.0.0.1:2525, the default port, is busy: %v", err)
	} else {
		l.Close()
	}
	u, disp := fmt.Sprintf("smtpfs-test%d", os.Getpid()), fmt.Sprintf(":%d", 100+os.Getpid()%10000)
	ns := ninepNSDir(t, u, disp)
	dir := t.TempDir()
	d := &Daemon{Root: filepath.Join(dir, "mail")}
	d.start(t, dir, ninepFreshEnv(u, disp+".0"))
	if want := []string{"127.0.0.1:2525"}; strings.Join(d.SMTP, " ") != strings.Join(want, " ") {
		t.Errorf("SMTP on %q, want %q", d.SMTP, want)
	}
	if want := []string{"unix!" + ns + "/smtpfs"}; strings.Join(d.NineP, " ") != strings.Join(want, " ") {
		t.Errorf("9P on %q, want %q", d.NineP, want)
	}
	for path, want := range map[string]os.FileMode{ns: os.ModeDir | 0700, ns + "/smtpfs": os.ModeSocket | 0600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, want mode %v", path, fi.Mode(), want)
		}
	}
	for _, sub := range []string{"box", "grey", "lib", "log", "queue"} {
		if fi, err := os.Stat(filepath.Join(d.Root, sub)); err != nil || !fi.IsDir() {
			t.Errorf("mail/%s: %v", sub, err)
		}
	}
	r := ehlo(t, d, "")
	r.Send("QUIT")
	r.Expect("221 ")
	// The 9fans client finds the service by name, from USER and DISPLAY.
	t.Setenv("NAMESPACE", "")
	t.Setenv("USER", u)
	t.Setenv("DISPLAY", disp+".0")
	fsys, err := client.MountService("smtpfs")
	if err != nil {
		t.Fatalf("9fans MountService(smtpfs): %v", err)
	}
	defer fsys.Close()
	fid, err := fsys.Open("version", 0)
	if err != nil {
		t.Fatal(err)
	}
	fid.Close()
	d.Stop(t)
	if _, err := os.Lstat(ns + "/smtpfs"); !os.IsNotExist(err) {
		t.Errorf("the socket is still there after SIGTERM: %v", err)
	}
}

// TestNinepNamespaceUnset: without USER the name space directory is named
// after the user's login name, as plan9port's getns does; without DISPLAY
// the display is :0, as the 9fans client's Namespace says.
func TestNinepNamespaceUnset(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Skipf("no login name: %v", err)
	}
	u, disp := fmt.Sprintf("smtpfs-test%d", os.Getpid()), fmt.Sprintf(":%d", 200+os.Getpid()%10000)
	for _, tc := range []struct{ user, display, dir string }{
		{"", disp, ninepNSDir(t, me.Username, disp)},
		{u, "", ninepNSDir(t, u, ":0")},
	} {
		root := filepath.Join(t.TempDir(), "mail")
		d := &Daemon{Root: root}
		d.start(t, "", ninepFreshEnv(tc.user, tc.display), "-R", root, "-l", "tcp!127.0.0.1!0")
		if want := "unix!" + tc.dir + "/smtpfs"; len(d.NineP) != 1 || d.NineP[0] != want {
			t.Errorf("USER=%q DISPLAY=%q: 9P on %q, want %s", tc.user, tc.display, d.NineP, want)
		}
		d.Stop(t)
	}
}

// TestNinepNamespaceForeign: a name space directory that another user
// made (anyone may make /tmp/ns.$USER.$DISPLAY first) stops smtpfs at
// start, with an error that says how to go on, and nothing is posted
// there; with $NAMESPACE set to a private directory, as it says, smtpfs
// starts and posts there.
func TestNinepNamespaceForeign(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to make a directory of another user")
	}
	u, disp := fmt.Sprintf("smtpfs-test%d", os.Getpid()), fmt.Sprintf(":%d", 300+os.Getpid()%10000)
	ns := ninepNSDir(t, u, disp)
	if err := os.Mkdir(ns, 0700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ns, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "mail")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "smtpfs"), "-R", root, "-l", "tcp!127.0.0.1!0")
	cmd.Env = append(ninepFreshEnv(u, disp), quickExit)
	out, err := cmd.CombinedOutput()
	want := "smtpfs: posting the 9P service: name space " + ns + ": permission denied: owned by uid 65534, " +
		"who could read or replace what is posted there; set $NAMESPACE to a directory of yours of mode 0700, " +
		"for 9p and 9pfuse too, or remove the directory (as root)\n"
	if err == nil || !strings.Contains(string(out), want) {
		t.Errorf("smtpfs with %s another user's: %v\n%s\nwant %s", ns, err, out, want)
	}
	if _, err := os.Lstat(filepath.Join(ns, "smtpfs")); !os.IsNotExist(err) {
		t.Errorf("posted in %s: %v", ns, err)
	}

	private := filepath.Join(t.TempDir(), "ns")
	d := &Daemon{Root: root}
	d.start(t, "", append(ninepFreshEnv(u, disp), "NAMESPACE="+private), "-R", root, "-l", "tcp!127.0.0.1!0")
	if want := "unix!" + private + "/smtpfs"; len(d.NineP) != 1 || d.NineP[0] != want {
		t.Errorf("9P on %q, want %s", d.NineP, want)
	}
}
