package test

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// TestGreyEvil: -k, evil in smtpd.conf and evil written to ctl drop a
// client at connect, with no greeting and no log line; everyone else is
// served as before.
func TestGreyEvil(t *testing.T) {
	d := startMail(t, "evil 127.0.2.0/24\n", "-k", "127.0.0.5")
	if err := ctl(t, d, "evil 127.0.0.6\n"); err != nil {
		t.Fatalf("evil written to ctl: %v", err)
	}
	for _, ip := range []string{"127.0.0.5", "127.0.0.6", "127.0.2.9"} {
		r := dialRaw(t, d.SMTP[0], ip)
		r.C.SetReadDeadline(time.Now().Add(10 * time.Second))
		if b, err := r.R.Peek(1); err != io.EOF {
			t.Errorf("%s: read %q, %v; want nothing and the connection closed", ip, b, err)
		}
	}
	if got := greyTry(t, d, "127.0.0.7", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("127.0.0.7, not evil: %q", got)
	}
	if got := statValue(t, d, "refused"); got != "3" {
		t.Errorf("stats refused = %s, want 3", got)
	}
	log := logText(t, d)
	for _, ip := range []string{"127.0.0.5", "127.0.0.6", "127.0.2.9"} {
		if strings.Contains(log, ip) {
			t.Errorf("the evil connection from %s was logged:\n%s", ip, log)
		}
	}
	if !strings.Contains(log, "ehlo from 127.0.0.7") {
		t.Errorf("the log does not have 127.0.0.7's session:\n%s", log)
	}
}

// blockedFile is the lib/blocked of TestGreyBlocked: every verb, for
// addresses, networks and senders.
const blockedFile = `# upas ratfs classification
block 127.0.0.10
deny 127.0.0.11
dial 127.0.0.12
delay 127.0.0.13
relay 127.0.0.14	# relay means delay
block 127.0.1.0/24
allow 127.0.1.5
*block spammer.example
*deny !baduser
* dial *.dialup.example
*delay slow.example!late*
`

// TestGreyBlocked: the verdicts of lib/blocked at DATA, with upas's
// replies: for addresses, networks and sender patterns; allow overriding
// a block of its network (but not a sender block); Block and Delay
// messages saved under queue.dump/<Mon><day>/<n> with -s, and not without.
func TestGreyBlocked(t *testing.T) {
	const spam, delay, dial, sent = greySpam, greyDelay, greyDialup, greySent
	deny := func(sender string) string {
		return "554-5.7.1 We don't accept mail from " + sender + ".|554 5.7.1 Contact postmaster@example.org for more information."
	}
	tests := []struct {
		ip, from, want string
		dumped         bool
	}{
		{"127.0.0.10", "a@sender.example", spam, true},
		{"127.0.0.11", "a@sender.example", deny("sender.example!a"), false},
		{"127.0.0.12", "a@sender.example", dial, false},
		{"127.0.0.13", "a@sender.example", delay, true},
		{"127.0.0.14", "a@sender.example", delay, true},
		{"127.0.1.7", "a@sender.example", spam, true},
		{"127.0.1.5", "a@sender.example", sent, false},                            // allow beats the block of its /24
		{"127.0.1.5", "x@spammer.example", spam, true},                            // but not a sender's block
		{"127.0.0.20", "x@spammer.example", spam, true},                           // *block dom
		{"127.0.0.20", "baduser@far.example", deny("far.example!baduser"), false}, // *deny !user
		{"127.0.0.20", "a@ppp9.dialup.example", dial, false},                      // * dial *.dom
		{"127.0.0.20", "lateness@slow.example", delay, true},                      // *delay dom!user*
		{"127.0.0.20", "prompt@slow.example", sent, false},
		{"127.0.0.20", "", sent, false}, // the null sender matches no pattern
	}
	for _, save := range []bool{true, false} {
		name := "without -s"
		args := []string{"-h", "example.org"}
		if save {
			name = "with -s"
			args = append(args, "-s")
		}
		t.Run(name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "mail")
			os.MkdirAll(filepath.Join(root, "lib"), 0755)
			os.WriteFile(filepath.Join(root, "lib", "blocked"), []byte(blockedFile), 0644)
			d := startDaemon(t, root, args...)
			before := time.Now()
			wantDumps, wantSent := 0, 0
			for _, tc := range tests {
				if got := blockedTry(t, d, tc.ip, tc.from); got != tc.want {
					t.Errorf("%s <%s>: %q, want %q", tc.ip, tc.from, got, tc.want)
				}
				if tc.dumped {
					wantDumps++
				}
				if tc.want == sent {
					wantSent++
				}
			}
			after := time.Now()
			if n := len(boxMessages(t, root, "bob")); n != wantSent {
				t.Errorf("bob has %d messages, want %d", n, wantSent)
			}
			dumps, _ := filepath.Glob(filepath.Join(root, "queue.dump", "*", "*"))
			if !save {
				wantDumps = 0
			}
			if len(dumps) != wantDumps {
				t.Errorf("queue.dump holds %q, want %d files", dumps, wantDumps)
			}
			number := regexp.MustCompile(`^[0-9]+$`)
			for _, f := range dumps {
				day := filepath.Base(filepath.Dir(f))
				if day != before.Format("Jan2") && day != after.Format("Jan2") {
					t.Errorf("dump %s: directory %s, want %s", f, day, before.Format("Jan2"))
				}
				if !number.MatchString(filepath.Base(f)) {
					t.Errorf("dump %s: not named by a number", f)
				}
				if b, err := os.ReadFile(f); err != nil || !strings.Contains(string(b), "\r\nSubject: buy now\r\n\r\ncheap pills\r\n") {
					t.Errorf("dump %s: %q, %v", f, b, err)
				}
			}
			log := logText(t, d)
			logHas(t, log,
				"Blocked sender.example!a (client.example.net/127.0.0.10) (localhost!bob)",
				"Denied sender.example!a (client.example.net/127.0.0.11) (localhost!bob)",
				"Dialup sender.example!a (client.example.net/127.0.0.12) (localhost!bob)",
				"Blocked slow.example!lateness (client.example.net/127.0.0.20) (localhost!bob)",
			)
			if save && !strings.Contains(log, "blocked message saved as "+filepath.Join(root, "queue.dump")) {
				t.Errorf("the log does not say where the dumps went:\n%s", log)
			}
		})
	}
}

// blockedTry runs attempt from ip as from to bob@localhost, with a
// message that looks like spam.
func blockedTry(t *testing.T, d *Daemon, ip, from string) string {
	t.Helper()
	r := dialRaw(t, d.SMTP[0], ip)
	r.Expect("220 ")
	return attempt(t, r, from, []string{"bob@localhost"}, "Subject: buy now\r\n\r\ncheap pills\r\n")
}

// rewriteInPlace overwrites path with text of the same length and puts
// its modification time back, so that only a reload can notice (the
// once-a-second check goes by inode, size and mtime).
func rewriteInPlace(t *testing.T, path, text string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(len(text)) {
		t.Fatalf("rewriteInPlace: %d bytes for a file of %d", len(text), fi.Size())
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(text), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// TestGreyBlockedReload: reload on ctl and SIGHUP read lib/blocked again
// (an edit that the once-a-second check cannot see, so only the reload
// explains the change); a file with a bad line fails the reload, names the
// line, and the classification in force stays; a line appended through
// the 9P blocked file takes effect at once.
func TestGreyBlockedReload(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	blocked := filepath.Join(root, "lib", "blocked")
	os.WriteFile(blocked, []byte("block 127.0.0.15\n"), 0644)
	d := startDaemon(t, root, "-h", "example.org")
	const spam, sent = greySpam, greySent
	check := func(when string, want map[string]string) {
		t.Helper()
		for ip, w := range want {
			if got := blockedTry(t, d, ip, "a@sender.example"); got != w {
				t.Errorf("%s: %s: %q, want %q", when, ip, got, w)
			}
		}
	}
	check("at start", map[string]string{"127.0.0.15": spam, "127.0.0.16": sent})

	rewriteInPlace(t, blocked, "block 127.0.0.16\n")
	if err := ctl(t, d, "reload\n"); err != nil {
		t.Fatalf("reload: %v", err)
	}
	check("after reload", map[string]string{"127.0.0.15": sent, "127.0.0.16": spam})

	rewriteInPlace(t, blocked, "block 127.0.0.17\n")
	d.Cmd.Process.Signal(syscall.SIGHUP)
	testlib.WaitFor(t, 10*time.Second, "the second reload", func() bool {
		return strings.Count(logText(t, d), "reloaded ") >= 2
	})
	check("after SIGHUP", map[string]string{"127.0.0.16": sent, "127.0.0.17": spam})

	os.WriteFile(blocked, []byte("blok 127.0.0.18\n"), 0644)
	err := ctl(t, d, "reload\n")
	if err == nil || !strings.Contains(err.Error(), "line 1 'blok 127.0.0.18': unknown verb 'blok'") {
		t.Errorf("reload of a bad lib/blocked: %v", err)
	}
	check("after a failed reload", map[string]string{"127.0.0.17": spam, "127.0.0.18": sent})

	fsys := fstest.Dial(t, d.NineP[0])
	if err := fstest.Write(fsys, "blocked", plan9.OWRITE, "*deny spam.example\n"); err == nil {
		t.Errorf("a line appended through 9P to a lib/blocked with a bad line was taken")
	}
	if b, _ := os.ReadFile(blocked); string(b) != "blok 127.0.0.18\n" {
		t.Errorf("a refused append through 9P changed lib/blocked to %q", b)
	}
	os.WriteFile(blocked, []byte("block 127.0.0.17\n"), 0644)
	if err := fstest.Write(fsys, "blocked", plan9.OWRITE, "*deny spam.example\n"); err != nil {
		t.Fatalf("echo '*deny spam.example' >> blocked: %v", err)
	}
	if got := blockedTry(t, d, "127.0.0.19", "eve@spam.example"); !strings.HasPrefix(got, "554-5.7.1 We don't accept mail from spam.example!eve.") {
		t.Errorf("after *deny spam.example was appended through 9P: %q", got)
	}
	if b, _ := os.ReadFile(blocked); string(b) != "block 127.0.0.17\n*deny spam.example\n" {
		t.Errorf("lib/blocked = %q", b)
	}
}

// TestGreyNoSpamFiltering: a user with box/<user>/nospamfiltering gets
// mail that lib/blocked would refuse, when every recipient has opted out
// (upas.md §2.9); the greylist still applies.
func TestGreyNoSpamFiltering(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	os.MkdirAll(filepath.Join(root, "box", "opted"), 0755)
	os.WriteFile(filepath.Join(root, "box", "opted", "nospamfiltering"), nil, 0644)
	os.WriteFile(filepath.Join(root, "lib", "blocked"), []byte("block 127.0.0.10\n"), 0644)
	d := startDaemon(t, root)
	for _, tc := range []struct {
		rcpts []string
		want  string
	}{
		{[]string{"opted@localhost"}, greySent},
		{[]string{"opted@localhost", "bob@localhost"}, greySpam},
		{[]string{"bob@localhost"}, greySpam},
	} {
		if got := greyTry(t, d, "127.0.0.10", "a@sender.example", tc.rcpts...); got != tc.want {
			t.Errorf("to %q: %q, want %q", tc.rcpts, got, tc.want)
		}
	}
	if err := ctl(t, d, "greylist on\n"); err != nil {
		t.Fatal(err)
	}
	if got := greyTry(t, d, "127.0.0.10", "a@sender.example", "opted@localhost"); got != greyRefusal {
		t.Errorf("opted out, greylist on: %q, want %q", got, greyRefusal)
	}
	if n := len(boxMessages(t, root, "opted")); n != 1 {
		t.Errorf("opted has %d messages, want 1", n)
	}
}
