package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// smtpdTry runs attempt in a session of the smtpd program from ip, and
// waits for the program to exit.
func smtpdTry(t *testing.T, root, ip, from string, rcpts []string, args ...string) string {
	t.Helper()
	p := startSmtpd(t, ip, append([]string{"-R", root, "-h", "example.org"}, args...)...)
	p.Expect("220 example.org ESMTP")
	got := attempt(t, p.Raw, from, rcpts, greyMsg)
	p.wait(t)
	return got
}

// TestGreySmtpdProgram: the smtpd program, one session per process, opens
// the greylist when a session first needs it and follows the same files as
// the daemon: the 451 and its triplet, the pass after the window, the
// whitelist read by the next process; lib/blocked with -s; -r; and -k.
func TestGreySmtpdProgram(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	os.WriteFile(filepath.Join(root, "lib", "blocked"), []byte("block 127.0.0.66\n*deny !baduser\n"), 0644)
	dns := testlib.NewDNS(t, "sender.example. MX 10 mx.sender.example.\nfar.example. A 192.0.2.9\ngone.example NXDOMAIN\n")
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	flags := []string{"-g", "-s", "-r", "-k", "127.0.0.99"}
	bob := []string{"bob@example.org"}
	const sent = greySent

	if got := smtpdTry(t, root, "127.0.0.5", "alice@sender.example", bob, flags...); got != greyRefusal {
		t.Fatalf("first attempt: %q, want %q", got, greyRefusal)
	}
	tri := filepath.Join(root, "grey", "tmp", "127.0.0.1", "127.0.0.5", "bob@example.org")
	backdate(t, tri, 6*time.Minute)
	if got := smtpdTry(t, root, "127.0.0.5", "alice@sender.example", bob, flags...); got != sent {
		t.Errorf("retry after 6 minutes: %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "grey", "whitelist")); string(b) != "127.0.0.5\n" {
		t.Errorf("whitelist = %q", b)
	}
	if got := smtpdTry(t, root, "127.0.0.5", "alice@sender.example", []string{"carol@example.org"}, flags...); got != sent {
		t.Errorf("whitelisted, to a new recipient: %q", got)
	}
	if got := smtpdTry(t, root, "127.0.0.6", "alice@sender.example", bob, flags...); got != greyRefusal {
		t.Errorf("127.0.0.6: %q, want %q", got, greyRefusal)
	}

	if got := smtpdTry(t, root, "127.0.0.66", "alice@sender.example", bob, flags...); got != greySpam {
		t.Errorf("blocked 127.0.0.66: %q", got)
	}
	dumps, _ := filepath.Glob(filepath.Join(root, "queue.dump", "*", "*"))
	if len(dumps) != 1 {
		t.Errorf("dumps %q, want 1", dumps)
	}
	if got := smtpdTry(t, root, "127.0.0.7", "baduser@far.example", bob, flags...); got != "554-5.7.1 We don't accept mail from far.example!baduser.|554 5.7.1 Contact postmaster@example.org for more information." {
		t.Errorf("denied sender: %q", got)
	}
	if got := smtpdTry(t, root, "127.0.0.7", "a@gone.example", bob, flags...); got != "554 5.7.1 Sender domain must exist: gone.example!a" {
		t.Errorf("-r, a sender domain that does not exist: %q", got)
	}

	// -k: no greeting, the program exits, nothing is logged.
	p := startSmtpd(t, "127.0.0.99", append([]string{"-R", root, "-h", "example.org"}, flags...)...)
	if !p.Closed(10 * time.Second) {
		t.Errorf("-k 127.0.0.99: the connection is open")
	}
	p.wait(t)

	if n := len(boxMessages(t, root, "bob")); n != 1 {
		t.Errorf("bob has %d messages, want 1", n)
	}
	b, _ := os.ReadFile(filepath.Join(root, "log", "smtpd"))
	log := string(b)
	logHas(t, log,
		"no call registered for 127.0.0.5/bob@example.org; registering",
		"127.0.0.5/bob@example.org was grey; adding IP to white",
		"127.0.0.5 whitelisted",
		"no call registered for 127.0.0.6/bob@example.org; registering",
		"Blocked sender.example!alice (client.example.net/127.0.0.66) (example.org!bob)",
		"Denied far.example!baduser (client.example.net/127.0.0.7) (example.org!bob)",
		"sendercheck: Sender domain must exist: gone.example!a",
	)
	if strings.Contains(log, "127.0.0.99") {
		t.Errorf("the evil client was logged:\n%s", log)
	}
}

// TestGreySmtpdNetdir: with -n netdir the smtpd program greylists the
// client the netdir names (here on a socket from elsewhere), under the
// addresses it gives.
func TestGreySmtpdNetdir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(root, 0755)
	netdir := t.TempDir()
	os.WriteFile(filepath.Join(netdir, "remote"), []byte("192.0.2.7!4321\n"), 0644)
	os.WriteFile(filepath.Join(netdir, "local"), []byte("198.51.100.1!25\n"), 0644)
	if got := smtpdTry(t, root, "127.0.0.5", "alice@sender.example", []string{"bob@example.org"}, "-g", "-n", netdir); got != greyRefusal {
		t.Errorf("got %q, want %q", got, greyRefusal)
	}
	if _, err := os.Stat(filepath.Join(root, "grey", "tmp", "198.51.100.1", "192.0.2.7", "bob@example.org")); err != nil {
		t.Errorf("triplet: %v", err)
	}
}

// TestGreySmtpdSweep: the smtpd program with -g expires old triplets after
// its session when nobody has for an hour (grey/swept), and not again
// within the hour.
func TestGreySmtpdSweep(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	tmp := filepath.Join(root, "grey", "tmp", "127.0.0.1")
	mk := func(remote string, ago time.Duration) string {
		f := filepath.Join(tmp, remote, "bob@example.org")
		os.MkdirAll(filepath.Dir(f), 0755)
		os.WriteFile(f, nil, 0644)
		backdate(t, f, ago)
		return f
	}
	session := func() {
		p := startSmtpd(t, "127.0.0.5", "-R", root, "-h", "example.org", "-g")
		p.Expect("220 ")
		p.Send("QUIT")
		p.Expect("221 ")
		p.wait(t)
	}
	exists := func(f string) bool { _, err := os.Stat(f); return err == nil }
	old, young := mk("192.0.2.9", 15*time.Hour), mk("192.0.2.10", 13*time.Hour)
	session()
	if exists(filepath.Dir(old)) || !exists(young) {
		t.Errorf("after the first session: old triplet there %v, young one there %v; want false, true", exists(old), exists(young))
	}
	if !exists(filepath.Join(root, "grey", "swept")) {
		t.Errorf("no grey/swept after a sweep")
	}
	old2 := mk("192.0.2.11", 15*time.Hour)
	session()
	if !exists(old2) {
		t.Errorf("swept again within the hour")
	}
	backdate(t, filepath.Join(root, "grey", "swept"), 2*time.Hour)
	session()
	if exists(old2) {
		t.Errorf("not swept after an hour")
	}
	b, _ := os.ReadFile(filepath.Join(root, "log", "smtpd"))
	if n := strings.Count(string(b), "greylist: expired 1 triplets, 1 left"); n != 2 {
		t.Errorf("%d sweeps logged, want 2:\n%s", n, b)
	}
}
