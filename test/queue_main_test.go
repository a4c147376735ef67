package test

import (
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// The queue's end-to-end tests (issue 5): the real daemon takes mail from
// a trusted client (127.0.0.1 is in ournets) or through the 9P queue
// file, and delivers it to testlib's sink, as smarthost or as the MX of a
// fake DNS; the tests steer it through ctl and read the queue file.

// queueConf is the configuration every queue test starts from: mail
// from 127.0.0.1 may relay; example.org is ours, so alice@example.org is
// a local sender whose bounces land in box/alice.
const queueConf = "ournets 127.0.0.1\nourdomains example.org\nhostname mx.example.org\ndefaultdomain example.org\n"

// A queueWorld is a daemon, the sink it delivers to, and a 9P client on
// its posted socket.
type queueWorld struct {
	t    *testing.T
	d    *Daemon
	sink *testlib.Sink
	fsys *client.Fsys
}

// startQueue starts a sink and a daemon whose configuration is queueConf,
// then conf; "%SINK" in conf stands for the sink's dial string
// (tcp!127.0.0.1!port).
func startQueue(t *testing.T, conf string, args ...string) *queueWorld {
	t.Helper()
	w := &queueWorld{t: t, sink: testlib.NewSink(t, testlib.SinkOptions{})}
	conf = strings.ReplaceAll(conf, "%SINK", "tcp!127.0.0.1!"+w.sink.Port())
	w.d = startMail(t, queueConf+conf, args...)
	w.fsys = fstest.Dial(t, w.d.NineP[0])
	return w
}

// send sends one message from 127.0.0.1 with net/smtp.
func (w *queueWorld) send(from string, rcpts []string, msg string) {
	w.t.Helper()
	if err := smtp.SendMail(w.d.SMTP[0], nil, from, rcpts, []byte(msg)); err != nil {
		w.t.Fatalf("sending from <%s> to %q: %v", from, rcpts, err)
	}
}

// ctl writes one line to the ctl file.
func (w *queueWorld) ctl(line string) error {
	return fstest.Write(w.fsys, "ctl", plan9.OWRITE|plan9.OTRUNC, line+"\n")
}

// mustCtl writes one line to ctl and fails the test if the write fails.
func (w *queueWorld) mustCtl(line string) {
	w.t.Helper()
	if err := w.ctl(line); err != nil {
		w.t.Fatalf("ctl %q: %v", line, err)
	}
}

// A queueLine is one line of the 9P queue file, split into its fields.
type queueLine struct {
	ID, From, Rcpts, Size, Age, Tries, Next, LastErr string
}

// list reads the queue file.
func (w *queueWorld) list() []queueLine {
	w.t.Helper()
	return parseQueue(w.t, fstest.Read(w.t, w.fsys, "queue"))
}

// parseQueue splits the queue file's lines into their eight rc-quoted
// words, failing the test on a line that has not eight.
func parseQueue(t testing.TB, text string) []queueLine {
	t.Helper()
	var out []queueLine
	for l := range strings.Lines(text) {
		f, err := rcWords(strings.TrimSuffix(l, "\n"))
		if err != nil || len(f) != 8 {
			t.Fatalf("queue file line %q: %d words, %v", l, len(f), err)
		}
		out = append(out, queueLine{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]})
	}
	return out
}

// rcWords splits a line into words as rc does: spaces and tabs separate,
// 'quotes' group, ” inside them is a quote.
func rcWords(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	in, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case in && c == '\'' && i+1 < len(line) && line[i+1] == '\'':
			w.WriteByte('\'')
			i++
		case c == '\'':
			in, have = !in, true
		case !in && (c == ' ' || c == '\t'):
			if have {
				words = append(words, w.String())
				w.Reset()
				have = false
			}
		default:
			w.WriteByte(c)
			have = true
		}
	}
	if in {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if have {
		words = append(words, w.String())
	}
	return words, nil
}

// waitQueue waits until the queue file lists exactly n messages and
// returns them.
func (w *queueWorld) waitQueue(n int, what string) []queueLine {
	w.t.Helper()
	var l []queueLine
	testlib.WaitFor(w.t, 15*time.Second, what, func() bool {
		l = w.list()
		return len(l) == n
	})
	return l
}

// waitEmpty waits until the queue file lists nothing and the queue
// directory holds no record.
func (w *queueWorld) waitEmpty() {
	w.t.Helper()
	w.waitQueue(0, "an empty queue")
	testlib.WaitFor(w.t, 10*time.Second, "no record left in queue/", func() bool {
		return len(queueRecords(w.t, w.d.Root)) == 0
	})
}

// queueRecords returns the ids of the envelopes in <root>/queue.
func queueRecords(t testing.TB, root string) []string {
	t.Helper()
	envs, err := filepath.Glob(filepath.Join(root, "queue", "*.env"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range envs {
		ids = append(ids, strings.TrimSuffix(filepath.Base(e), ".env"))
	}
	return ids
}

// runqLog returns the queue runner's log.
func runqLog(t testing.TB, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "log", "runq"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// waitRunq waits for the runner's log to hold s.
func (w *queueWorld) waitRunq(s string) {
	w.t.Helper()
	testlib.WaitFor(w.t, 15*time.Second, "runq log line "+s, func() bool { return strings.Contains(runqLog(w.t, w.d.Root), s) })
}

// waitBox waits for n messages in box/<user>/new and returns them.
func (w *queueWorld) waitBox(user string, n int) []string {
	w.t.Helper()
	var m []string
	testlib.WaitFor(w.t, 15*time.Second, fmt.Sprintf("%d messages for %s", n, user), func() bool {
		m = boxMessages(w.t, w.d.Root, user)
		return len(m) >= n
	})
	return m
}

// testMsg is a message whose body carries token, CRLF line ends.
func testMsg(subject, token string) string {
	return "From: alice@example.org\r\nTo: bob@remote.example\r\nSubject: " + subject + "\r\n\r\n" +
		"token " + token + "\r\n.a line that starts with a dot\r\nend of " + token + "\r\n"
}
