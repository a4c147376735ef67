package test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// An smtpWorld is what the smtp command meets in a test: a sink (mx2 of
// example.org, the one MX of single.example), a fake DNS, a mail root and
// an environment pointing at them.
type smtpWorld struct {
	t    *testing.T
	root string
	dns  *testlib.DNS
	sink *testlib.Sink
	env  []string
}

// smtpZone: example.org has mx1 (127.0.0.3, where nothing listens) and mx2
// (127.0.0.1, the sink).
const smtpZone = `
example.org.       MX 10 mx1.example.org.
example.org.       MX 20 mx2.example.org.
mx1.example.org.   A 127.0.0.3
mx2.example.org.   A 127.0.0.1
single.example.    MX 10 mx2.example.org.
implicit.example.  A 127.0.0.1
implicit.example.  AAAA ::1
nullmx.example.    MX 0 .
gone.example       NXDOMAIN
broken.example     SERVFAIL
`

func newSMTPWorld(t *testing.T, opt testlib.SinkOptions, zone string) *smtpWorld {
	t.Helper()
	w := &smtpWorld{t: t, root: t.TempDir(), sink: testlib.NewSink(t, opt)}
	if zone == "" {
		zone = smtpZone
	}
	w.dns = testlib.NewDNS(t, zone)
	home := t.TempDir()
	w.env = append(os.Environ(),
		"SMTPFS_RESOLVER="+w.dns.Addr,
		"SMTPFS_SMTP_PORT="+w.sink.Port(),
		"HOME="+home,
		"NETRC="+filepath.Join(home, "netrc"),
	)
	return w
}

// run runs smtp -R root args with stdin and returns its exit status,
// standard output and standard error.
func (w *smtpWorld) run(stdin string, args ...string) (int, string, string) {
	w.t.Helper()
	cmd := exec.Command(bin(w.t, "smtp"), append([]string{"-R", w.root}, args...)...)
	cmd.Env = w.env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			w.t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		w.t.Fatalf("smtp %q still running after 60s\n%s", args, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// netrc writes the netrc file, mode 0600.
func (w *smtpWorld) netrc(text string) {
	for _, e := range w.env {
		if f, ok := strings.CutPrefix(e, "NETRC="); ok {
			if err := os.WriteFile(f, []byte(text), 0600); err != nil {
				w.t.Fatal(err)
			}
		}
	}
}

// commands returns every command the sink was sent, one per line.
func (w *smtpWorld) commands() string {
	var all []string
	for _, s := range w.sink.Sessions() {
		all = append(all, s...)
	}
	return strings.Join(all, "\n")
}

const smtpMsg = "Subject: hello\n\nHello, world.\n.a dotted line\n"

func TestSMTPDelivers(t *testing.T) {
	w := newSMTPWorld(t, testlib.SinkOptions{}, "")
	code, _, stderr := w.run(smtpMsg, "-h", "gnot.example.com", "example.org", "glenda@example.com", "bob@example.org", "example.org!ken")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	m := w.sink.Wait(t, 1, 10*time.Second)[0]
	if m.From != "glenda@example.com" || strings.Join(m.Rcpts, " ") != "bob@example.org ken@example.org" || m.Helo != "gnot.example.com" {
		t.Errorf("sink got from %q to %q, EHLO %q", m.From, m.Rcpts, m.Helo)
	}
	data := string(m.Data)
	for _, want := range []string{"\r\nSubject: hello\r\n\r\nHello, world.\r\n.a dotted line\r\n", "Message-ID: <", "@gnot.example.com>\r\n",
		"From: glenda@example.com\r\n", "To: bob@example.org, ken@example.org\r\n", "Date: "} {
		if !strings.Contains(data, want) {
			t.Errorf("message lacks %q:\n%s", want, data)
		}
	}
	logged, _ := os.ReadFile(filepath.Join(w.root, "log", "smtp"))
	if !strings.Contains(string(logged), "glenda@example.com sent ") || !strings.Contains(string(logged), "(mx2.example.org 127.0.0.1:") {
		t.Errorf("log/smtp: %q", logged)
	}
}

// TestSMTPExitStatus: 0 delivered, 2 retry, 1 permanent, and the upas words.
func TestSMTPExitStatus(t *testing.T) {
	tests := []struct {
		name   string
		answer func(phase, arg string) *smtp.Reply
		rcpts  []string
		code   int
		stderr []string
		sent   int // messages the sink accepts
	}{
		{"delivered", nil, []string{"bob@example.org"}, 0, nil, 1},
		{"greeting 421", on("greeting", 421, ""), []string{"bob@example.org"}, 2,
			[]string{"connect to single.example (mx2.example.org 127.0.0.1:", ") greeting:\n421 ", "\nRetry, Temporary Failure\n"}, 0},
		{"MAIL 451", on("MAIL", 451, "4.3.0"), []string{"bob@example.org"}, 2,
			[]string{") mailfrom:\n451 4.3.0 ", "Retry, Temporary Failure"}, 0},
		{"MAIL 553", on("MAIL", 553, "5.7.1"), []string{"bob@example.org"}, 1,
			[]string{") mailfrom:\n553 5.7.1 ", "\nPermanent Failure\n"}, 0},
		{"every RCPT 450", on("RCPT", 450, "4.2.1"), []string{"bob@example.org", "ken@example.org"}, 2,
			[]string{") rcptto:\n", "  mail to bob@example.org failed: 450 4.2.1", "\n  mail to ken@example.org failed: 450 4.2.1", "Retry, Temporary Failure"}, 0},
		{"one RCPT 550", onArg("RCPT", "nobody", 550, "5.1.1"), []string{"bob@example.org", "nobody@example.org"}, 1,
			[]string{"  mail to nobody@example.org failed: 550 5.1.1", "Permanent Failure"}, 1},
		{"one RCPT 450, the other delivered", onArg("RCPT", "full", 452, "4.2.2"), []string{"bob@example.org", "full@example.org"}, 1,
			[]string{"  mail to full@example.org failed: 452 4.2.2", "1 of 2 recipients have the message", "Permanent Failure"}, 1},
		{"DATA 451", on("DATA", 451, ""), []string{"bob@example.org"}, 2, []string{") data:\n451 ", "Retry"}, 0},
		{"final dot 554", on(".", 554, "5.7.1"), []string{"bob@example.org"}, 1, []string{") data:\n554 5.7.1 ", "Permanent Failure"}, 0},
		{"hangup at RCPT", hangup("RCPT"), []string{"bob@example.org"}, 2, []string{"rcptto:\nconnection closed unexpectedly", "Retry"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newSMTPWorld(t, testlib.SinkOptions{}, "")
			if tt.answer != nil {
				w.sink.SetReply(tt.answer)
			}
			code, _, stderr := w.run(smtpMsg, append([]string{"single.example", "glenda@example.com"}, tt.rcpts...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s", code, tt.code, stderr)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if n := len(w.sink.Messages()); n != tt.sent {
				t.Errorf("sink has %d messages, want %d", n, tt.sent)
			}
			if tt.code != 0 {
				failed, _ := os.ReadFile(filepath.Join(w.root, "log", "smtp.fail"))
				if len(failed) == 0 {
					t.Errorf("nothing in log/smtp.fail")
				}
			}
		})
	}
}

// on answers code (and enh) in phase.
func on(phase string, code int, enh string) func(string, string) *smtp.Reply {
	return onArg(phase, "", code, enh)
}

// onArg answers code in phase when the argument contains arg.
func onArg(phase, arg string, code int, enh string) func(string, string) *smtp.Reply {
	return func(p, a string) *smtp.Reply {
		if p == phase && strings.Contains(a, arg) {
			return smtp.Replyf(code, enh, "test says no")
		}
		return nil
	}
}

func hangup(phase string) func(string, string) *smtp.Reply {
	return func(p, a string) *smtp.Reply {
		if p == phase {
			return testlib.Hangup
		}
		return nil
	}
}

func TestSMTPUsage(t *testing.T) {
	w := newSMTPWorld(t, testlib.SinkOptions{}, "")
	for _, args := range [][]string{{}, {"example.org", "glenda"}, {"-x", "example.org", "glenda", "bob"}, {"-b"}} {
		code, _, stderr := w.run("", args...)
		if code != 1 || !strings.HasPrefix(stderr, "smtp: ") || !strings.Contains(stderr, "usage: smtp") {
			t.Errorf("smtp %q: exit %d, want 1 and a usage line\n%s", args, code, stderr)
		}
	}
	code, _, stderr := w.run("", "tcp!a!b!c", "glenda", "bob")
	if code != 1 || !strings.Contains(stderr, "invalid dial string") || !strings.Contains(stderr, "Permanent Failure") {
		t.Errorf("bad dial string: exit %d\n%s", code, stderr)
	}
}

// TestSMTPFilter: -f writes the converted message as upas's does, as it
// goes after DATA (CRLF, dot-stuffed, no final dot), and touches no
// network; -h names our host, .domain qualifies system names, and bare
// names, wherever an address stands, are users of our host.
func TestSMTPFilter(t *testing.T) {
	w := newSMTPWorld(t, testlib.SinkOptions{}, "")
	in := "From glenda Wed Mar 20 10:00:00 +0100 2024 remote from gnot\nTo: kremvax!ken, rob\nCc: Dennis Ritchie <dmr>\nSubject: hi\n\nbody\n.dot\nlast line"
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"-f", "-h", "gnot", ".example.com", "nowhere.invalid", "glenda", "kremvax!ken", "rob"},
			[]string{"Message-ID: <", "@gnot.example.com>\r\n", "From: glenda@gnot.example.com\r\n",
				"Date: Wed, 20 Mar 2024 10:00:00 +0100\r\n", "To: ken@kremvax.example.com, rob@gnot.example.com\r\n" +
					"Cc: Dennis Ritchie <dmr@gnot.example.com>\r\nSubject: hi\r\n\r\nbody\r\n..dot\r\nlast line\r\n"}},
		{[]string{"-f", "-h", "gnot.example.net", "nowhere.invalid", "/dev/null", "bob"},
			[]string{"@gnot.example.net>\r\n", "From: Postmaster@gnot.example.net\r\n", "To: kremvax!ken@gnot.example.net, rob@gnot.example.net\r\n"}},
	}
	for _, tt := range tests {
		code, stdout, stderr := w.run(in, tt.args...)
		if code != 0 {
			t.Errorf("smtp %q: exit %d\n%s", tt.args, code, stderr)
		}
		for _, want := range tt.want {
			if !strings.Contains(stdout, want) {
				t.Errorf("smtp %q: output lacks %q:\n%q", tt.args, want, stdout)
			}
		}
		if strings.Contains(strings.ReplaceAll(stdout, "\r\n", ""), "\n") || strings.Contains(stdout, "remote from") || strings.HasSuffix(stdout, ".\r\n") {
			t.Errorf("smtp %q: output has a bare LF, the envelope line or a final dot:\n%q", tt.args, stdout)
		}
	}
	if w.dns.Queries.Load() != 0 || len(w.sink.Sessions()) != 0 {
		t.Errorf("-f used the network: %d DNS queries, %d sessions", w.dns.Queries.Load(), len(w.sink.Sessions()))
	}
}

// TestSMTPPing: -p asks for each recipient and sends nothing.
func TestSMTPPing(t *testing.T) {
	w := newSMTPWorld(t, testlib.SinkOptions{}, "")
	w.sink.SetReply(onArg("RCPT", "nobody", 550, "5.1.1"))
	code, _, stderr := w.run(smtpMsg, "-p", "single.example", "glenda@example.com", "bob@example.org")
	if code != 0 {
		t.Errorf("ping of a good recipient: exit %d\n%s", code, stderr)
	}
	code, _, stderr = w.run(smtpMsg, "-p", "single.example", "glenda@example.com", "bob@example.org", "nobody@example.org")
	if code != 1 || !strings.Contains(stderr, "mail to nobody@example.org failed: 550") {
		t.Errorf("ping of a bad recipient: exit %d\n%s", code, stderr)
	}
	w.sink.SetReply(onArg("RCPT", "full", 452, "4.2.2"))
	code, _, stderr = w.run(smtpMsg, "-p", "single.example", "glenda@example.com", "bob@example.org", "full@example.org")
	if code != 2 || !strings.Contains(stderr, "mail to full@example.org failed: 452") {
		t.Errorf("ping of a full mailbox: exit %d\n%s", code, stderr)
	}
	if cmds := w.commands(); strings.Contains(cmds, "DATA") || !strings.Contains(cmds, "RCPT TO:<nobody@example.org>") {
		t.Errorf("ping sessions:\n%s", cmds)
	}
	if n := len(w.sink.Messages()); n != 0 {
		t.Errorf("ping delivered %d messages", n)
	}
}

// TestSMTPProvoke: -A gets a greeting out of a server that waits for its
// client to speak first.
func TestSMTPProvoke(t *testing.T) {
	w := newSMTPWorld(t, testlib.SinkOptions{Mute: true}, "")
	code, _, stderr := w.run(smtpMsg, "-A", "single.example", "glenda@example.com", "bob@example.org")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if cmds := w.commands(); !strings.HasPrefix(cmds, "NOOP\nEHLO ") {
		t.Errorf("session:\n%s", cmds)
	}
	w.sink.Wait(t, 1, 10*time.Second)
}

// TestSMTPDebug: -d shows the conversation on standard error, the body
// left out.
func TestSMTPDebug(t *testing.T) {
	w := newSMTPWorld(t, testlib.SinkOptions{}, "")
	code, _, stderr := w.run(smtpMsg, "-d", "single.example", "glenda@example.com", "bob@example.org")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"< 220 sink ESMTP\n", "> EHLO ", "> MAIL FROM:<glenda@example.com>", "> Subject: hello\n", " bytes of body]\n", "< 250 2.0.0 queued\n", "> QUIT\n"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("transcript lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "Hello, world") {
		t.Errorf("transcript shows the body:\n%s", stderr)
	}
}

// hostile is what a hostile server puts in its replies for a terminal to
// obey: clear the screen (ESC [ 2 J), set the title (OSC), CSI as the C1
// control U+009B and as a bare byte, NEL (U+0085), BEL.
const hostile = "\x1b[2J\x1b]0;owned\x07\u009b31m\x9b\u0085"

// TestSMTPHostileReplies: replies full of terminal controls reach the
// smtp program's standard error, upas texts and -d transcript alike, with
// every control escaped and the rest of their text kept; so does the log.
func TestSMTPHostileReplies(t *testing.T) {
	w := newSMTPWorld(t, testlib.SinkOptions{}, "")
	w.sink.SetReply(func(phase, arg string) *smtp.Reply {
		switch phase {
		case "greeting":
			return smtp.Replyf(220, "", "sink %s ESMTP", hostile)
		case "RCPT":
			if strings.Contains(arg, "nobody") {
				return &smtp.Reply{Code: 550, Enh: "5.1.1", Lines: []string{"no such user " + hostile, "really" + hostile}}
			}
		case ".":
			return smtp.Replyf(554, "5.7.1", "rejected %s", hostile)
		}
		return nil
	})
	code, _, stderr := w.run(smtpMsg, "-d", "single.example", "glenda@example.com", "bob@example.org", "nobody@example.org")
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s", code, stderr)
	}
	esc := `\x1b[2J\x1b]0;owned\x07\u009b31m\x9b\u0085`
	for _, want := range []string{
		"< 220 sink " + esc + " ESMTP\n",            // -d
		"< 550-5.1.1 no such user " + esc + "\n",    // -d, a line of a multiline reply
		") data:\n554 5.7.1 rejected " + esc + "\n", // the upas text
		"mail to nobody@example.org failed: 550-5.1.1 no such user " + esc + " / 550 5.1.1 really" + esc + "\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	logged, _ := os.ReadFile(filepath.Join(w.root, "log", "smtp.fail"))
	for name, text := range map[string]string{"stderr": stderr, "log/smtp.fail": string(logged)} {
		if i := strings.IndexFunc(text, terminalControl); i >= 0 {
			t.Errorf("%s has a terminal control at byte %d:\n%q", name, i, text)
		}
	}
	if !strings.Contains(string(logged), esc) {
		t.Errorf("log/smtp.fail lacks the escaped reply:\n%s", logged)
	}
}

// terminalControl reports whether r is something a terminal obeys, or a
// byte that is not UTF-8: all but newline and tab of C0, DEL, C1.
func terminalControl(r rune) bool {
	return r < ' ' && r != '\n' && r != '\t' || r == 0x7f || r >= 0x80 && r <= 0x9f || r == utf8.RuneError
}
