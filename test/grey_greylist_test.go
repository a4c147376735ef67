package test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// The greylist tests run the real daemon on the real clock. "Time passes"
// by moving a triplet file's modification time back (os.Chtimes): the
// file's mtime is the greylist's only record of the first attempt, so
// backdating it is exactly what the passing of 6 minutes would do, and it
// lets the tests use upas's own window (5 minutes to 14 hours) instead of
// a window of seconds that would need waiting and polling.

const greyMsg = "Subject: greylisted\r\n\r\nhello\r\n"

// The outcomes of attempt that the tests compare with.
const (
	greyRefusal = "451 4.7.1 please try again soon from the same IP."
	greySent    = "354|250 2.5.0 sent"
	greySpam    = "354|554 5.7.1 we believe this is spam."
	greyDelay   = "354|450 4.3.0 There will be a delay in delivery of this message."
	greyDialup  = "554 5.7.1 We don't accept mail from dial-up ports."
)

// attempt runs one transaction on a greeted session: EHLO, MAIL from,
// RCPT for each of rcpts (all must be accepted), DATA, and when that is
// answered 354, msg. It returns the replies from DATA on, a line each,
// joined by |: "354|<final reply>" when the message was sent, else the
// refusal of DATA. It then ends the session: after a 451 the server must
// hang up by itself; after a dial-up refusal every later command but QUIT
// must be refused too; then QUIT.
func attempt(t *testing.T, r *Raw, from string, rcpts []string, msg string) string {
	t.Helper()
	r.Send("EHLO client.example.net")
	r.Expect("250 ")
	r.Send("MAIL FROM:<" + from + ">")
	r.Expect("250 ")
	for _, rc := range rcpts {
		r.Send("RCPT TO:<" + rc + ">")
		r.Expect("250 ")
	}
	r.Send("DATA")
	l := r.Reply()
	if strings.HasPrefix(l[0], "354 ") {
		r.Write(msg + ".\r\n")
		l = append([]string{"354"}, r.Reply()...)
	}
	got := strings.Join(l, "|")
	switch {
	case strings.HasPrefix(got, "451 "):
		if !r.Closed(10 * time.Second) {
			t.Errorf("still connected after %q", got)
		}
		return got
	case got == greyDialup:
		for _, cmd := range []string{"RSET", "NOOP", "MAIL FROM:<" + from + ">"} {
			r.Send(cmd)
			if l := r.Reply(); l[0] != greyDialup {
				t.Errorf("%s after a dial-up refusal: %q", cmd, l)
			}
		}
	}
	r.Send("QUIT")
	r.Expect("221 ")
	return got
}

// greyTry runs attempt in a session with the daemon from the loopback
// address ip, with greyMsg.
func greyTry(t *testing.T, d *Daemon, ip, from string, rcpts ...string) string {
	t.Helper()
	addr := d.SMTP[0]
	if strings.Contains(ip, ":") { // IPv6: the listener on ::1
		addr = d.SMTP[len(d.SMTP)-1]
	}
	r := dialRaw(t, addr, ip)
	r.Expect("220 ")
	return attempt(t, r, from, rcpts, greyMsg)
}

// triplet returns the path of the triplet file of a client at remote (or
// its pool) writing to rcpt, on the daemon's listener at 127.0.0.1, or at
// ::1 for an IPv6 remote.
func triplet(d *Daemon, remote, rcpt string) string {
	local := "127.0.0.1"
	if strings.Contains(remote, ":") {
		local = "::1"
	}
	return filepath.Join(d.Root, "grey", "tmp", local, remote, rcpt)
}

// logHas fails the test for each of wants that log does not hold.
func logHas(t *testing.T, log string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(log, w) {
			t.Errorf("the log has no %q:\n%s", w, log)
		}
	}
}

// mtime returns the modification time of path, failing the test if it is
// missing.
func mtime(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("triplet file: %v", err)
	}
	return fi.ModTime()
}

// backdate moves the modification time of path back by ago, as if the
// first attempt it records had come that long ago.
func backdate(t *testing.T, path string, ago time.Duration) {
	t.Helper()
	old := time.Now().Add(-ago)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// whitelistText returns grey/whitelist.
func whitelistText(t *testing.T, d *Daemon) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Root, "grey", "whitelist"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// ctl writes lines to the daemon's 9P ctl file and returns the error of
// the write.
func ctl(t *testing.T, d *Daemon, lines string) error {
	t.Helper()
	return fstest.Write(fstest.Dial(t, d.NineP[0]), "ctl", plan9.OWRITE, lines)
}

// statValue returns one counter of the 9P stats file.
func statValue(t *testing.T, d *Daemon, name string) string {
	t.Helper()
	for l := range strings.SplitSeq(fstest.Read(t, fstest.Dial(t, d.NineP[0]), "stats"), "\n") {
		if n, v, ok := strings.Cut(l, " "); ok && n == name {
			return v
		}
	}
	t.Fatalf("no %s in stats", name)
	return ""
}

// TestGreyWindow walks upas's algorithm against the daemon with -g: the
// first attempt is refused with 451 and a hang-up and leaves its triplet
// file; a retry too soon is refused and does not move the clock; a retry
// after the window's start passes, delivers, and appends the client to
// grey/whitelist, after which it passes at once for any recipient; another
// address is still greylisted; a retry after the window's end starts
// again; and the log has every decision.
func TestGreyWindow(t *testing.T) {
	d := startMail(t, "", "-g")
	bob := triplet(d, "127.0.0.5", "bob@localhost")

	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Fatalf("first attempt: %q, want %q", got, greyRefusal)
	}
	first := mtime(t, bob)

	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("retry at once: %q, want %q", got, greyRefusal)
	}
	if m := mtime(t, bob); !m.Equal(first) {
		t.Errorf("a retry too soon moved the triplet's time from %v to %v", first, m)
	}
	if w := whitelistText(t, d); w != "" {
		t.Errorf("whitelist after refusals: %q", w)
	}

	backdate(t, bob, 6*time.Minute)
	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Fatalf("retry after 6 minutes: %q", got)
	}
	if m := boxMessages(t, d.Root, "bob"); len(m) != 1 || !strings.Contains(m[0], "Subject: greylisted") {
		t.Errorf("bob has %q", m)
	}
	if w := whitelistText(t, d); w != "127.0.0.5\n" {
		t.Errorf("whitelist = %q, want %q", w, "127.0.0.5\n")
	}

	// Whitelisted: any recipient passes at once, and no triplet is made.
	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "carol@localhost"); got != greySent {
		t.Errorf("whitelisted client to a new recipient: %q", got)
	}
	if _, err := os.Stat(triplet(d, "127.0.0.5", "carol@localhost")); !os.IsNotExist(err) {
		t.Errorf("a triplet was made for a whitelisted client: %v", err)
	}

	// Another address is a stranger.
	dave := triplet(d, "127.0.0.6", "bob@localhost")
	if got := greyTry(t, d, "127.0.0.6", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("127.0.0.6: %q, want %q", got, greyRefusal)
	}
	// Coming back after the window: refused, and the clock starts again.
	backdate(t, dave, 15*time.Hour)
	if got := greyTry(t, d, "127.0.0.6", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("127.0.0.6 after 15 hours: %q, want %q", got, greyRefusal)
	}
	if age := time.Since(mtime(t, dave)); age > time.Minute {
		t.Errorf("after a retry past the window the triplet is %v old; want the clock restarted", age)
	}
	if w := whitelistText(t, d); w != "127.0.0.5\n" {
		t.Errorf("whitelist = %q", w)
	}

	logHas(t, logText(t, d),
		"no call registered for 127.0.0.5/bob@localhost; registering",
		"no recent call from 127.0.0.5 for a rcpt; rejecting with temporary failure",
		"call for 127.0.0.5/bob@localhost was just minutes ago or long ago (",
		"ago: too soon)",
		"127.0.0.5/bob@localhost was grey; adding IP to white",
		"127.0.0.5 whitelisted",
		"no call registered for 127.0.0.6/bob@localhost; registering",
		"ago: too late; registering again)",
	)
	if got := statValue(t, d, "greylisted"); got != "4" {
		t.Errorf("stats greylisted = %s, want 4", got)
	}
}

// TestGreyWhitelist: entries of grey/whitelist pass at once, for every
// recipient: a host with a name, a network, an IPv4 address written
// through the 9P whitelist file, and one appended to the file by another
// program (picked up within a second, without a reload). A bad entry
// written through 9P is refused and changes nothing; malformed lines
// already in the file are skipped; unwhitelist takes an entry out.
func TestGreyWhitelist(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "grey"), 0755)
	os.WriteFile(filepath.Join(root, "grey", "whitelist"), []byte(
		"# partners\n127.0.0.20 partner.example\n\n127.0.1.0/24\tpool.example\nnot-an-address\n"), 0644)
	d := startDaemon(t, root, "-g")

	for _, tc := range []struct {
		ip, want string
	}{
		{"127.0.0.20", greySent},
		{"127.0.1.7", greySent},
		{"127.0.0.21", greyRefusal},
		{"127.0.2.7", greyRefusal},
	} {
		if got := greyTry(t, d, tc.ip, "alice@sender.example", "bob@localhost", "carol@localhost"); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.ip, got, tc.want)
		}
	}
	waitLog(t, d, "not-an-address")

	fsys := fstest.Dial(t, d.NineP[0])
	if err := fstest.Write(fsys, "whitelist", plan9.OWRITE, "127.0.0.21 mx.example\n"); err != nil {
		t.Fatalf("echo 127.0.0.21 mx.example >> whitelist: %v", err)
	}
	if got := greyTry(t, d, "127.0.0.21", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("127.0.0.21 after its entry was written through 9P: %q", got)
	}
	before := whitelistText(t, d)
	err := fstest.Write(fsys, "whitelist", plan9.OWRITE, "127.0.0.30\n300.1.2.3 bad.example\n")
	if err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Errorf("a bad whitelist entry: %v, want an error saying invalid", err)
	}
	if after := whitelistText(t, d); after != before {
		t.Errorf("a refused write changed the whitelist from %q to %q", before, after)
	}
	if !strings.HasSuffix(before, "\n127.0.0.21 mx.example\n") {
		t.Errorf("whitelist %q does not end with the entry written through 9P", before)
	}

	// Another program appends, as `echo ip >> grey/whitelist` does.
	f, err := os.OpenFile(filepath.Join(root, "grey", "whitelist"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("127.0.0.22 edited.example\n")
	f.Close()
	testlib.WaitFor(t, 10*time.Second, "the appended entry to take effect", func() bool {
		return greyTry(t, d, "127.0.0.22", "alice@sender.example", "bob@localhost") == greySent
	})

	if err := ctl(t, d, "unwhitelist 127.0.0.21\n"); err != nil {
		t.Fatalf("unwhitelist: %v", err)
	}
	if got := greyTry(t, d, "127.0.0.21", "alice@sender.example", "dave@localhost"); got != greyRefusal {
		t.Errorf("127.0.0.21 after unwhitelist: %q, want %q", got, greyRefusal)
	}
	if w := whitelistText(t, d); strings.Contains(w, "127.0.0.21") || !strings.Contains(w, "127.0.0.22 edited.example") {
		t.Errorf("whitelist after unwhitelist 127.0.0.21: %q", w)
	}
	if n := len(boxMessages(t, root, "bob")); n < 4 {
		t.Errorf("bob has %d messages, want at least 4", n)
	}
}

// TestGreyPrefix: with greyprefix 24 64 a sender's pool counts as one
// client: 127.0.0.7 passes after 127.0.0.5 of the same /24 tried, the
// pool is whitelisted, and a third address of it passes at once.
func TestGreyPrefix(t *testing.T) {
	d := startMail(t, "greyprefix 24 64\n", "-g")
	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Fatalf("127.0.0.5: %q, want %q", got, greyRefusal)
	}
	pool := triplet(d, "127.0.0.0", "bob@localhost")
	backdate(t, pool, 10*time.Minute)
	if _, err := os.Stat(filepath.Join(d.Root, "grey", "tmp", "127.0.0.1", "127.0.0.5")); !os.IsNotExist(err) {
		t.Errorf("a triplet directory for the address itself, not its pool: %v", err)
	}
	if got := greyTry(t, d, "127.0.0.7", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("127.0.0.7 of the same pool: %q", got)
	}
	if w := whitelistText(t, d); w != "127.0.0.0/24\n" {
		t.Errorf("whitelist = %q, want the pool", w)
	}
	if got := greyTry(t, d, "127.0.0.9", "alice@sender.example", "carol@localhost"); got != greySent {
		t.Errorf("127.0.0.9 of the whitelisted pool: %q", got)
	}
	if got := greyTry(t, d, "127.0.1.9", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("127.0.1.9, another pool: %q, want %q", got, greyRefusal)
	}
}

// TestGreyTrusted: a client in ournets and an authenticated client are
// never greylisted, and leave no triplet; the same address without AUTH
// is.
func TestGreyTrusted(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte("ournets 127.0.0.3\n"), 0644)
	os.WriteFile(filepath.Join(root, "lib", "secrets"), []byte("glenda s3cret\n"), 0600)
	d := startDaemon(t, root, "-g", "-p")

	if got := greyTry(t, d, "127.0.0.3", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("trusted 127.0.0.3: %q", got)
	}
	r := ehlo(t, d, "127.0.0.4")
	r.Send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	r.Expect("235 ")
	if got := r.transaction("glenda@sender.example", []string{"bob@localhost"}, greyMsg); got != "250 2.5.0 sent" {
		t.Errorf("authenticated 127.0.0.4: %q", got)
	}
	if got := greyTry(t, d, "127.0.0.4", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("127.0.0.4 without AUTH: %q, want %q", got, greyRefusal)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "grey", "tmp", "127.0.0.1"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "127.0.0.4" {
		t.Errorf("triplet directories %q, want only 127.0.0.4's (its session without AUTH)", names)
	}
	if n := len(boxMessages(t, root, "bob")); n != 2 {
		t.Errorf("bob has %d messages, want 2", n)
	}
}

// TestGreySettings: greylist on in smtpd.conf turns it on without -g;
// greywindow and greylist written to ctl take effect for the next session.
func TestGreySettings(t *testing.T) {
	d := startMail(t, "greylist on\n")
	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Fatalf("greylist on in smtpd.conf: %q, want %q", got, greyRefusal)
	}
	bob := triplet(d, "127.0.0.5", "bob@localhost")
	backdate(t, bob, 90*time.Second)
	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("after 90 s with the default window: %q, want %q", got, greyRefusal)
	}
	if err := ctl(t, d, "greywindow 1m 2h\n"); err != nil {
		t.Fatal(err)
	}
	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("after 90 s with greywindow 1m 2h: %q", got)
	}
	if got := greyTry(t, d, "127.0.0.6", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("127.0.0.6: %q, want %q", got, greyRefusal)
	}
	if err := ctl(t, d, "greylist off\n"); err != nil {
		t.Fatal(err)
	}
	if got := greyTry(t, d, "127.0.0.6", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("127.0.0.6 with greylist off: %q", got)
	}
}

// TestGreyIPv6: a client on ::1 is greylisted under its /64 with
// greyprefix 24 64, passes after the window, and its pool is whitelisted
// in IPv6 form.
func TestGreyIPv6(t *testing.T) {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	l.Close()
	d := startMail(t, "greyprefix 24 64\n", "-g", "-l", "tcp!127.0.0.1!0", "-l", "tcp!::1!0")
	if got := greyTry(t, d, "::1", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Fatalf("::1: %q, want %q", got, greyRefusal)
	}
	backdate(t, triplet(d, "::", "bob@localhost"), time.Hour)
	if got := greyTry(t, d, "::1", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("::1 after an hour: %q", got)
	}
	if w := whitelistText(t, d); w != "::/64\n" {
		t.Errorf("whitelist = %q, want %q", w, "::/64\n")
	}
	if got := greyTry(t, d, "::1", "alice@sender.example", "carol@localhost"); got != greySent {
		t.Errorf("::1 whitelisted: %q", got)
	}
}

// TestGreyExpire: at start the daemon removes the triplets whose first
// attempt is older than the window's end, and the directories they leave
// empty; younger ones stay.
func TestGreyExpire(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	old := filepath.Join(root, "grey", "tmp", "127.0.0.1", "192.0.2.9", "bob@localhost")
	young := filepath.Join(root, "grey", "tmp", "127.0.0.1", "192.0.2.10", "bob@localhost")
	for _, f := range []string{old, young} {
		os.MkdirAll(filepath.Dir(f), 0755)
		os.WriteFile(f, nil, 0644)
	}
	backdate(t, old, 15*time.Hour)
	backdate(t, young, 13*time.Hour)
	d := startDaemon(t, root, "-g")
	testlib.WaitFor(t, 10*time.Second, "the old triplet to be expired", func() bool {
		_, err := os.Stat(filepath.Dir(old))
		return os.IsNotExist(err)
	})
	if _, err := os.Stat(young); err != nil {
		t.Errorf("the young triplet: %v", err)
	}
	waitLog(t, d, "greylist: expired 1 triplets, 1 left")
}
