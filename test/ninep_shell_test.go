package test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// What a shell gets from the files through a FUSE mount (mount9p): no
// write vanishes with status 0, and mail is written as a Plan 9 user
// writes it.

// shellMount is a daemon (mail domain example.org, host name
// mx.example.org, a smarthost that takes everything) mounted with mount9p,
// and a 9fans client beside it.
func shellMount(t *testing.T) (*ninepMounted, *testlib.Sink) {
	t.Helper()
	fstest.CanMount(t)
	sink := testlib.NewSink(t, testlib.SinkOptions{})
	d := startMail(t, "defaultdomain example.org\nhostname mx.example.org\nsmarthost tcp!127.0.0.1!"+sink.Port()+"\n")
	m := &ninepMounted{d: d, sink: sink, fsys: fstest.Dial(t, d.NineP[0])}
	m.mnt = fstest.Mount(t, bin(t, "github.com/knusbaum/go9p/cmd/mount9p"), d.UnixSocket(), "ctl")
	return m, sink
}

// TestShellWrites: one write is a whole command, a last line without a
// newline included, so that its error reaches the shell; a write to queue
// that cannot be part of a message fails at once; bulk writes, which FUSE
// cuts into pieces, still arrive whole.
func TestShellWrites(t *testing.T) {
	m, _ := shellMount(t)
	dir := t.TempDir()
	random := make([]byte, 2000)
	r := rand.New(rand.NewPCG(16, 2))
	for i := range random {
		random[i] = byte(r.UintN(256))
	}
	files := map[string]string{"random": string(random)}
	var list strings.Builder
	for i := range 6000 { // 100 KiB: mount9p writes 16 KiB pieces, lines cut across them
		fmt.Fprintf(&list, "10.%d.%d.0/24 host%d.example.net\n", i/250, i%250, i)
	}
	files["list"] = list.String()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0644); err != nil {
			t.Fatal(err)
		}
	}
	ctlHas := func(want string) func(t *testing.T, _ string) {
		return func(t *testing.T, _ string) {
			if got := fstest.Read(t, m.fsys, "ctl"); !strings.Contains(got, "\n"+want+"\n") {
				t.Errorf("ctl lacks %q:\n%s", want, got)
			}
		}
	}
	fstest.RunSteps(t, "sh", m.mnt, []fstest.Step{
		{Cmd: "printf 'greylist bogus' > ctl", OK: false},
		{Cmd: "printf 'tarpit on\\ngreylist bogus' > ctl", OK: false, Check: func(t *testing.T, _ string) {
			if got := fstest.Read(t, m.fsys, "ctl"); strings.Contains(got, "\ntarpit on\n") {
				t.Errorf("a write whose last line was bad changed ctl")
			}
		}},
		{Cmd: "printf 'helocheck on' > ctl", OK: true, Check: ctlHas("helocheck on")},
		{Cmd: "printf 192.0.2.300 > whitelist", OK: false},
		{Cmd: "echo hello > queue", OK: false},
		{Cmd: "cat " + filepath.Join(dir, "random") + " > queue", OK: false},
		{Cmd: "printf 'From: glenda@example.org\\nTo: bob@localhost\\nHi Bob, no empty line before me.\\n' > queue", OK: false, Check: func(t *testing.T, _ string) {
			// The log names the reason of each, as it was.
			log := fstest.Read(t, m.fsys, "log.recent")
			for _, want := range []string{
				"9p: ctl: invalid ctl line 1 'greylist bogus': greylist takes on or off, not 'bogus'\n",
				"9p: whitelist: invalid whitelist entry '192.0.2.300'",
				"9p: queue: message not queued: invalid header line 1: not a field: \"hello\"",
				"9p: queue: message not queued: invalid header line 3: not a field: \"Hi Bob, no empty line before me.\"",
			} {
				if !strings.Contains(log, want) {
					t.Errorf("the log lacks %q", want)
				}
			}
		}},
		{Cmd: "cat " + filepath.Join(dir, "list") + " > whitelist", OK: true, Check: func(t *testing.T, _ string) {
			if got := fstest.Read(t, m.fsys, "whitelist"); got != files["list"] {
				t.Errorf("whitelist after cat of %d bytes has %d bytes", len(files["list"]), len(got))
			}
		}},
		// RFC 5322 allows a message that is all header: it is queued at the
		// clunk.
		{Cmd: "printf 'From: glenda@example.org\\nTo: bob@localhost\\nSubject: only a header\\n' > queue", OK: true, Check: func(t *testing.T, _ string) {
			var box []string
			testlib.WaitFor(t, 10*time.Second, "bob's message", func() bool {
				box = boxMessages(t, m.d.Root, "bob")
				return len(box) == 1
			})
			if !strings.Contains(box[0], "\nSubject: only a header\n") {
				t.Errorf("bob's message:\n%s", box[0])
			}
		}},
	})
	if rc := rcPath(t); rc != "" {
		fstest.RunSteps(t, rc, m.mnt, []fstest.Step{
			{Cmd: "echo -n 'greylist bogus' > ctl", OK: false},
			{Cmd: "echo -n 'greylist on' > ctl", OK: true, Check: ctlHas("greylist on")},
		})
	}
}

// rcPath is rc's path, or "" where there is none (fstest.Rc would skip
// the whole test).
func rcPath(t *testing.T) string {
	var rc string
	t.Run("rc", func(t *testing.T) { rc = fstest.Rc(t) })
	return rc
}

// TestShellLocalNames: a message written to queue the way a Plan 9 user
// writes one, with bare names for local users, goes to their Maildirs,
// qualified with our mail domain, and the rest through the smarthost.
func TestShellLocalNames(t *testing.T) {
	m, sink := shellMount(t)
	msg := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(msg, []byte("From: glenda\nTo: rob, ken@example.com\nCc: Dennis Ritchie <dmr>\nSubject: names\n\nHello.\n"), 0644); err != nil {
		t.Fatal(err)
	}
	fstest.RunSteps(t, "sh", m.mnt, []fstest.Step{{Cmd: "cat " + msg + " > queue", OK: true}})
	got := sink.Wait(t, 1, 10*time.Second)
	if len(got) != 1 || got[0].From != "glenda@example.org" || strings.Join(got[0].Rcpts, " ") != "ken@example.com" {
		t.Fatalf("the smarthost got %+v", got)
	}
	for _, want := range []string{"From: glenda@example.org\r\n", "To: rob@example.org, ken@example.com\r\n", "Cc: Dennis Ritchie <dmr@example.org>\r\n"} {
		if !strings.Contains(string(got[0].Data), want) {
			t.Errorf("the message sent lacks %q:\n%s", want, got[0].Data)
		}
	}
	for _, user := range []string{"rob", "dmr"} {
		var box []string
		testlib.WaitFor(t, 10*time.Second, user+"'s message", func() bool {
			box = boxMessages(t, m.d.Root, user)
			return len(box) == 1
		})
		if !strings.Contains(box[0], "\nSubject: names\n") {
			t.Errorf("%s's message:\n%s", user, box[0])
		}
	}
}
