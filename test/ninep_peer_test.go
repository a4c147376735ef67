package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// The 9P service is the machine owner's (SPEC §3): another local user
// who reaches a -9 TCP listener on loopback is refused, as on the posted
// socket, and cannot set the mailer the daemon runs.

// asNobody returns the path of the ninepc helper, and a command that runs
// it as uid 65534 (setpriv), skipping the test where that cannot be done.
func asNobody(t *testing.T) (string, func(args ...string) *exec.Cmd) {
	t.Helper()
	if why := noNobody(); why != "" {
		t.Skip(why)
	}
	helper := ninepcHelper(t)
	return helper, nobodyCmd(helper)
}

// noNobody says why a client cannot be run as uid 65534 here, "" if it can.
func noNobody() string {
	if os.Getuid() != 0 {
		return "needs root, to run a client as another user"
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		return "needs setpriv (util-linux), to run a client as another user"
	}
	return ""
}

// nobodyCmd returns a command that runs helper as uid 65534.
func nobodyCmd(helper string) func(args ...string) *exec.Cmd {
	return func(args ...string) *exec.Cmd {
		return exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", helper}, args...)...)
	}
}

// ninepcHelper returns the path of the ninepc helper, copied where any
// user may run it: the build directory is private.
func ninepcHelper(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ninepc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, err := os.ReadFile(bin(t, "smtpfs/test/internal/ninepc"))
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "ninepc")
	if err := os.WriteFile(helper, b, 0755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0755); err != nil {
		t.Fatal(err)
	}
	return helper
}

// TestNinepPeerOtherUser: the reviewer's attack (one ctl write of
// `mailer /bin/sh -c ...` as uid 65534 over -9 tcp!127.0.0.1) is refused
// at the connection, changes nothing and is logged; the same helper as
// root (the owner here) is served.
func TestNinepPeerOtherUser(t *testing.T) {
	helper, nobody := asNobody(t)
	d := startNinep(t, "")
	tcp := d.NineP[1]
	before := fstest.Read(t, fstest.Dial(t, tcp), "ctl")

	out, err := nobody(tcp, "ctl", "mailer /bin/sh -c 'id > /tmp/x' x\n").CombinedOutput()
	if err == nil {
		t.Errorf("uid 65534 wrote ctl over %s: %s", tcp, out)
	}
	out, err = nobody(tcp, "version").CombinedOutput()
	if err == nil {
		t.Errorf("uid 65534 read version over %s: %s", tcp, out)
	}
	if got := fstest.Read(t, fstest.Dial(t, tcp), "ctl"); got != before {
		t.Errorf("ctl changed by another user:\n%s\nwas:\n%s", got, before)
	}
	waitNinepLog(t, d, tcp+": refused a connection from tcp!127.0.0.1!")
	waitNinepLog(t, d, "uid 65534 is another user")

	// The owner, with the same helper, is served.
	out, err = exec.Command(helper, tcp, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "smtpfs") {
		t.Errorf("root read version over %s: %q, %v", tcp, out, err)
	}
}

// TestNinepPeerBeyondLoopback: -9 refuses an address that is not
// loopback and the daemon does not start; -N takes it, says on standard
// error that it is open to every machine, and still refuses another
// local user.
func TestNinepPeerBeyondLoopback(t *testing.T) {
	cmd := exec.Command(bin(t, "smtpfs"), "-R", filepath.Join(t.TempDir(), "mail"), "-l", "tcp!127.0.0.1!0", "-9", "tcp!*!0")
	cmd.Env = append(os.Environ(), "NAMESPACE="+t.TempDir(), quickExit)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-9 tcp!*!0: 9p listen tcp!*!0: permission denied: not a loopback address") {
		t.Errorf("smtpfs -9 tcp!*!0: %v\n%s", err, out)
	}

	_, nobody := asNobody(t)
	d := startMail(t, "", "-N", "tcp!*!0")
	if len(d.NineP) != 2 || !strings.HasPrefix(d.NineP[1], "tcp!") {
		t.Fatalf("9P service at %q, want the socket and the -N listener", d.NineP)
	}
	if !strings.Contains(d.Stderr.String(), "smtpfs: warning: 9p on "+d.NineP[1]+" serves every machine that reaches it") {
		t.Errorf("no warning on standard error:\n%s", d.Stderr)
	}
	port := d.NineP[1][strings.LastIndexByte(d.NineP[1], '!')+1:]
	local := "tcp!127.0.0.1!" + port
	if out, err := nobody(local, "version").CombinedOutput(); err == nil {
		t.Errorf("uid 65534 read version over -N: %s", out)
	}
	if got := fstest.Read(t, fstest.Dial(t, local), "version"); !strings.HasPrefix(got, "smtpfs") {
		t.Errorf("version over -N = %q", got)
	}
	waitNinepLog(t, d, "uid 65534 is another user")
}

// waitNinepLog waits for the 9P tree's log to hold s.
func waitNinepLog(t *testing.T, d *Daemon, s string) {
	t.Helper()
	testlib.WaitFor(t, 10*time.Second, "9p log line "+s, func() bool {
		return strings.Contains(readLog(d, "9p"), s)
	})
}
