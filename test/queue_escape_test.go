package test

import (
	"strings"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// TestQueueHostileReplies: a server whose refusal is full of terminal
// controls (ESC sequences, C1 CSI and NEL, a bare 0x9b byte) is quoted by
// the daemon in `cat queue` (the last error) and in `cat log`, each
// control escaped: an operator's terminal shows them, never obeys them.
func TestQueueHostileReplies(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	w.sink.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" {
			return smtp.Replyf(451, "4.7.1", "later %s", hostile)
		}
		return nil
	})
	w.send("alice@example.org", []string{"bob@remote.example"}, testMsg("hostile", "tok-hostile"))
	esc := `\x1b[2J\x1b]0;owned\x07\u009b31m\x9b\u0085`
	var queue string
	testlib.WaitFor(t, 15*time.Second, "a first attempt", func() bool {
		queue = fstest.Read(t, w.fsys, "queue")
		return strings.Contains(queue, "later")
	})
	log := fstest.Read(t, w.fsys, "log.recent")
	for name, text := range map[string]string{"queue": queue, "log": log} {
		if !strings.Contains(text, "451 4.7.1 later "+esc) {
			t.Errorf("%s does not quote the reply escaped (%q):\n%s", name, esc, text)
		}
		if i := strings.IndexFunc(text, terminalControl); i >= 0 {
			t.Errorf("%s has a terminal control at byte %d:\n%q", name, i, text)
		}
	}
}
