package test

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// The peer check of a -9 TCP listener against the orphan attack: a client
// sends its whole 9P conversation (Tversion, Tattach, Twalk to ctl, Topen,
// Twrite of a mailer line) and closes its socket at once. The kernel keeps
// the socket a while with no owner (FIN-WAIT, TIME-WAIT: inode 0, and in
// TIME-WAIT uid 0), and a daemon that checks late, behind a few hundred
// other connections, took the client for root and ran what it had sent.

// ninepIdle is how many idle connections are opened beside the attack: a
// few hundred, below the daemon's 256 connections at once.
const ninepIdle = 200

// TestNinepPeerOrphan: the daemon is stopped (SIGSTOP) while 200 idle
// connections and the attacking clients connect, send and close, so that
// every check runs after the close, as a slow check would; the attackers
// are the test's own user (root in CI) and, where it can be run, uid
// 65534. Each attack is refused because its socket is no longer
// connected and has no owner, the refusal is logged, nothing it sent is
// applied (ctl unchanged), and an ordinary client is still served.
func TestNinepPeerOrphan(t *testing.T) {
	d := startNinep(t, "")
	tcp := d.NineP[1]
	before := fstest.Read(t, fstest.Dial(t, tcp), "ctl")
	helper := ninepcHelper(t)
	attackers := map[string]func(args ...string) *exec.Cmd{
		"owner": func(args ...string) *exec.Cmd { return exec.Command(helper, args...) },
	}
	if why := noNobody(); why == "" {
		attackers["uid 65534"] = nobodyCmd(helper)
	} else {
		t.Logf("not as another user: %s", why)
	}
	marker := filepath.Join(t.TempDir(), "marker")
	line := "mailer /bin/touch " + marker + "\n"

	pid := d.Cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resume := sync.OnceFunc(func() { syscall.Kill(pid, syscall.SIGCONT) })
	t.Cleanup(resume) // before the daemon's Stop, which was registered first
	addr := dialToAddr(tcp)
	for range ninepIdle {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection: %v", err)
		}
		defer c.Close()
	}
	from := map[string]string{} // attacker → its address, tcp!ip!port
	for who, cmd := range attackers {
		out, err := cmd("-burst", tcp, "ctl", line).Output()
		if err != nil {
			t.Fatalf("%s: ninepc -burst: %v", who, err)
		}
		from[who] = strings.TrimSpace(string(out))
	}
	resume()

	// Either every attack is refused in the log, or (the bug) ctl changes.
	refused := func() bool {
		log := readLog(d, "9p")
		for _, a := range from {
			if !strings.Contains(log, ": refused a connection from "+a+": ") {
				return false
			}
		}
		return true
	}
	changed := func() bool { return fstest.Read(t, fstest.Dial(t, tcp), "ctl") != before }
	testlib.WaitFor(t, 20*time.Second, "the attacks to be refused or applied", func() bool { return refused() || changed() })
	if changed() {
		t.Fatalf("an orphaned connection was served: ctl now\n%s\n9p log:\n%s", fstest.Read(t, fstest.Dial(t, tcp), "ctl"), readLog(d, "9p"))
	}
	log := readLog(d, "9p")
	for who, a := range from {
		i := strings.Index(log, ": refused a connection from "+a+": ")
		reason, _, _ := strings.Cut(log[i:], "\n")
		if !strings.Contains(reason, "closed before it could be checked") {
			t.Errorf("%s: refused for another reason: %s", who, reason)
		}
	}
	// An ordinary client is served, and the attacks changed nothing.
	if got := fstest.Read(t, fstest.Dial(t, tcp), "ctl"); got != before || strings.Contains(got, marker) {
		t.Errorf("ctl after the attacks:\n%s\nwas:\n%s", got, before)
	}
	if got := fstest.Read(t, fstest.Dial(t, tcp), "version"); !strings.HasPrefix(got, "smtpfs") {
		t.Errorf("version = %q", got)
	}
}
