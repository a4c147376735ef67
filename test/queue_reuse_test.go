package test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// TestQueueSessionReuse: 20 messages deferred by the smarthost (451 to
// each RCPT), then released at once with `retry all`: the real daemon
// carries them over a few connections, none with more than sessionmsgs
// messages, and the sink gets each exactly once.
func TestQueueSessionReuse(t *testing.T) {
	const n = 20
	w := startQueue(t, "smarthost %SINK\ndestconcurrency 2\nsessionmsgs 8\n")
	var mu sync.Mutex
	closed := true
	w.sink.SetReply(func(phase, arg string) *smtp.Reply {
		mu.Lock()
		defer mu.Unlock()
		if phase == "RCPT" && closed {
			return smtp.Replyf(451, "4.3.0", "not yet")
		}
		return nil
	})
	for i := range n {
		w.send("alice@example.org", []string{"bob@remote.example"}, testMsg("reuse", fmt.Sprintf("tok-reuse-%d", i)))
	}
	testlib.WaitFor(t, 30*time.Second, "every message deferred", func() bool {
		l := w.list()
		if len(l) != n {
			return false
		}
		for _, q := range l {
			if q.Tries != "1" {
				return false
			}
		}
		return true
	})
	// Sessions of the deferring round may still be parked (sessionidle)
	// and carry some of the messages: what counts is the MAILs each
	// connection sends from here on, and its MAILs in all.
	before := mailsPer(w.sink)
	mu.Lock()
	closed = false
	mu.Unlock()
	w.mustCtl("retry all")
	msgs := w.sink.Wait(t, n, 30*time.Second)
	w.waitEmpty()

	seen := map[string]int{}
	for _, m := range msgs {
		for i := range n {
			if tok := fmt.Sprintf("token tok-reuse-%d\r\n", i); strings.Contains(string(m.Data), tok) {
				seen[tok]++
			}
		}
	}
	if len(msgs) != n || len(seen) != n {
		t.Errorf("the sink got %d messages, %d different, want each of %d once", len(msgs), len(seen), n)
	}
	all := mailsPer(w.sink)
	var per []int
	for i, m := range all {
		if i < len(before) {
			m -= before[i]
		}
		if m > 0 {
			per = append(per, m)
		}
	}
	if len(per) < 3 || len(per) > 6 {
		t.Errorf("%d connections carried %d messages (MAILs per connection %v), want 3 to 6 (sessionmsgs 8)", len(per), n, per)
	}
	for _, m := range all {
		if m > 8 {
			t.Errorf("a connection carried %d messages, sessionmsgs is 8: %v", m, all)
		}
	}
}

// mailsPer returns the MAIL commands of each of the sink's connections.
func mailsPer(sink *testlib.Sink) []int {
	var per []int
	for _, c := range sink.Sessions() {
		mails := 0
		for _, l := range c {
			if strings.HasPrefix(l, "MAIL ") {
				mails++
			}
		}
		per = append(per, mails)
	}
	return per
}
