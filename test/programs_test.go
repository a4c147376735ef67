package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The three programs as a shell runs them: their usage errors, -C, and
// the smtpd program's exit status.

// runProgram runs a program of ours with args, its standard input in,
// in dir with env added, for at most 20 seconds, and returns its exit
// status (-1 if it had to be killed) and standard error.
func runProgram(t *testing.T, name, dir, in string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, name), args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), quickExit, "NAMESPACE="+t.TempDir()), env...)
	cmd.Stdin = strings.NewReader(in)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, stderr.String()
	}
	if err != nil && !isExitError(err) {
		t.Fatalf("%s: %v", name, err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

func isExitError(err error) bool {
	_, ok := err.(*exec.ExitError)
	return ok
}

// TestProgramUsage: a usage error names its program, as smtp's does, then
// gives the usage line, and the status is 1.
func TestProgramUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"smtpfs", []string{"-x"}, "smtpfs: unknown flag -x\nusage: smtpfs "},
		{"smtpfs", []string{"-l"}, "smtpfs: flag -l needs a value\nusage: smtpfs "},
		{"smtpfs", []string{"extra"}, "smtpfs: unexpected argument \"extra\"\nusage: smtpfs "},
		{"smtpd", []string{"-x"}, "smtpd: unknown flag -x\nusage: smtpd "},
		{"smtp", []string{"-x"}, "smtp: unknown flag -x\nusage: smtp "},
	} {
		code, stderr := runProgram(t, tc.name, t.TempDir(), "", nil, tc.args...)
		if code != 1 || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("%s %q: exit %d, stderr %q; want 1 and %q", tc.name, tc.args, code, stderr, tc.want)
		}
	}
}

// TestProgramConfMissing: -C naming a file that is not there is an error:
// neither program runs on the defaults instead.
func TestProgramConfMissing(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "mail")
	if err := os.MkdirAll(root, 0755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nosuch.conf")
	want := "-C " + missing + ": no such file or directory\n"
	code, stderr := runProgram(t, "smtpfs", dir, "", nil, "-R", root, "-C", missing, "-l", "tcp!127.0.0.1!0")
	if code != 1 || stderr != "smtpfs: "+want {
		t.Errorf("smtpfs -C missing: exit %d, stderr %q; want 1 and %q", code, stderr, "smtpfs: "+want)
	}
	code, stderr = runProgram(t, "smtpd", dir, "", []string{"TCPREMOTEIP=127.0.0.1", "TCPLOCALIP=127.0.0.1"}, "-R", root, "-C", missing)
	if code != 1 || stderr != "smtpd: "+want {
		t.Errorf("smtpd -C missing: exit %d, stderr %q; want 1 and %q", code, stderr, "smtpd: "+want)
	}
	// A FIFO named by -C is refused at once, not waited on.
	fifo := filepath.Join(dir, "fifo.conf")
	if err := syscall.Mkfifo(fifo, 0600); err != nil {
		t.Fatal(err)
	}
	want = "-C " + fifo + ": not a regular file\n"
	code, stderr = runProgram(t, "smtpd", dir, "", []string{"TCPREMOTEIP=127.0.0.1", "TCPLOCALIP=127.0.0.1"}, "-R", root, "-C", fifo)
	if code != 1 || stderr != "smtpd: "+want {
		t.Errorf("smtpd -C fifo: exit %d, stderr %q; want 1 and %q", code, stderr, "smtpd: "+want)
	}
	code, stderr = runProgram(t, "smtpfs", dir, "", nil, "-R", root, "-C", fifo, "-l", "tcp!127.0.0.1!0")
	if code != 1 || stderr != "smtpfs: "+want {
		t.Errorf("smtpfs -C fifo: exit %d, stderr %q; want 1 and %q", code, stderr, "smtpfs: "+want)
	}
}

// TestSmtpdBdatCut: a session whose BDAT chunk (RFC 3030) never came
// whole ends inside its transaction: smtpd exits 1 and says so, as for
// DATA.
func TestSmtpdBdatCut(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "mail")
	if err := os.MkdirAll(root, 0755); err != nil {
		t.Fatal(err)
	}
	in := "EHLO me.example.org\r\nMAIL FROM:<glenda@example.org>\r\nRCPT TO:<bob@localhost>\r\n" +
		"BDAT 100 LAST\r\nSubject: cut\r\n\r\nshort\r\n"
	code, stderr := runProgram(t, "smtpd", dir, in, []string{"TCPREMOTEIP=127.0.0.1", "TCPLOCALIP=127.0.0.1"}, "-R", root)
	if want := "smtpd: the session ended inside a transaction: the message was not accepted\n"; code != 1 || stderr != want {
		t.Errorf("a cut BDAT: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
	if m := boxMessages(t, root, "bob"); len(m) != 0 {
		t.Errorf("bob has %q", m)
	}
}

// heredoc is the session of the README's example, for sh.
const heredoc = `HELO me.example.org
MAIL FROM:<glenda@example.org>
RCPT TO:<bob@localhost>
DATA
Subject: by hand

Hello, Bob.
.
QUIT
`

// TestSmtpdHereDocument: smtpd on a here-document, as the README shows
// it. With LF line ends the message never ends (DATA ends on CRLF.CRLF
// alone), and smtpd says so by its exit status and on standard error;
// with sed making them CRLF it is delivered, and the status is 0.
func TestSmtpdHereDocument(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "mail")
	if err := os.MkdirAll(root, 0755); err != nil {
		t.Fatal(err)
	}
	smtpd := bin(t, "smtpd")
	env := append(os.Environ(), quickExit, "SMTPD="+smtpd, "ROOT="+root)
	run := func(script string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("sh -c %q: killed after 20s\n%s", script, out)
		}
		return string(out), err
	}
	out, err := run("TCPREMOTEIP=127.0.0.1 TCPLOCALIP=127.0.0.1 $SMTPD -R $ROOT <<EOF\n" + heredoc + "EOF\n")
	if !isExitError(err) || !strings.Contains(out, "smtpd: the session ended inside a transaction: the message was not accepted\n") {
		t.Errorf("a here-document with LF line ends: %v\n%s", err, out)
	}
	if m := boxMessages(t, root, "bob"); len(m) != 0 {
		t.Errorf("bob has %q", m)
	}
	out, err = run("sed 's/$/\r/' <<EOF | TCPREMOTEIP=127.0.0.1 TCPLOCALIP=127.0.0.1 $SMTPD -R $ROOT\n" + heredoc + "EOF\n")
	if err != nil || !strings.Contains(out, "250 2.5.0 sent\r\n221 ") {
		t.Errorf("a here-document made CRLF: %v\n%s", err, out)
	}
	if m := boxMessages(t, root, "bob"); len(m) != 1 || !strings.Contains(m[0], "Subject: by hand\n\nHello, Bob.\n") {
		t.Errorf("bob has %q", m)
	}
}
