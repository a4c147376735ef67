package test

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// TestQueueSmarthost: a message from a trusted client to two remote
// domains and a local user. The local copy goes to the Maildir at once;
// the remote recipients leave in one session to the smarthost, with the
// envelope and the message as accepted (our Received: line in front), and
// the queue is empty afterwards.
func TestQueueSmarthost(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	msg := testMsg("relayed", "tok-smarthost")
	w.send("alice@example.org", []string{"bob@remote.example", "carol@other.example", "dave@example.org"}, msg)
	m := w.sink.Wait(t, 1, 15*time.Second)[0]
	if m.From != "alice@example.org" || !slices.Equal(m.Rcpts, []string{"bob@remote.example", "carol@other.example"}) {
		t.Errorf("envelope at the sink: from <%s> to %q", m.From, m.Rcpts)
	}
	if m.Helo != "mx.example.org" {
		t.Errorf("EHLO %q, want the hostname", m.Helo)
	}
	data := string(m.Data)
	if !strings.HasPrefix(data, "Received: from localhost ([127.0.0.1]) by mx.example.org with ESMTP id ") || !strings.HasSuffix(data, "\r\n"+msg) {
		t.Errorf("message at the sink:\n%q\nwant our Received: line, then\n%q", data, msg)
	}
	if b := w.waitBox("dave", 1); !strings.Contains(b[0], "\ntoken tok-smarthost\n.a line that starts with a dot\n") {
		t.Errorf("dave has\n%s", b[0])
	}
	w.waitEmpty()
	if n := len(w.sink.Sessions()); n != 1 {
		t.Errorf("%d sessions at the sink, want 1 for both recipients", n)
	}
	w.waitRunq("done ")
	log := runqLog(t, w.d.Root)
	for _, want := range []string{"queued ", "sent ", " to bob@remote.example via tcp!127.0.0.1!" + w.sink.Port()} {
		if !strings.Contains(log, want) {
			t.Errorf("runq log lacks %q:\n%s", want, log)
		}
	}
}

// failFirst makes the sink refuse the end of the data of each message
// holding one of tokens once, with reply, then accept it.
func failFirst(s *testlib.Sink, reply *smtp.Reply, tokens ...string) {
	var mu sync.Mutex
	failed := map[string]bool{}
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase != "." {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		for _, tok := range tokens {
			if strings.Contains(arg, "token "+tok+"\r\n") && !failed[tok] {
				failed[tok] = true
				return reply
			}
		}
		return nil
	})
}

// TestQueueRetry: a 4xx defers a message; it is tried again after the
// backoff (backoff 1s), on retry ID, or on kick, and then delivered
// once.
func TestQueueRetry(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\nbackoff 1s\n")
	busy := smtp.Replyf(451, "4.3.0", "it's busy, try later")
	failFirst(w.sink, busy, "tok-backoff", "tok-retry", "tok-kick")

	w.send("alice@example.org", []string{"bob@remote.example"}, testMsg("backoff", "tok-backoff"))
	w.sink.Wait(t, 1, 15*time.Second)
	w.waitEmpty()
	w.waitRunq("deferred ")

	// With an hour between attempts, only the operator brings it back.
	w.mustCtl("backoff 1h")
	for i, how := range []string{"retry", "kick"} {
		tok := "tok-" + how
		w.send("alice@example.org", []string{"bob@remote.example"}, testMsg(how, tok))
		var q []queueLine
		testlib.WaitFor(t, 15*time.Second, "a deferred message", func() bool {
			q = w.list()
			return len(q) == 1 && q[0].Tries == "1"
		})
		if next, err := time.ParseDuration(q[0].Next); err != nil || next < 50*time.Minute || next > 67*time.Minute {
			t.Errorf("%s: next attempt %q, want about an hour", how, q[0].Next)
		}
		if q[0].LastErr != busy.Error() {
			t.Errorf("%s: last error %q, want %q", how, q[0].LastErr, busy.Error())
		}
		if how == "retry" {
			w.mustCtl("retry " + q[0].ID)
		} else {
			w.mustCtl("kick")
		}
		msgs := w.sink.Wait(t, 2+i, 15*time.Second)
		if last := string(msgs[len(msgs)-1].Data); !strings.Contains(last, "token "+tok+"\r\n") {
			t.Errorf("%s: the sink got\n%s", how, last)
		}
		w.waitEmpty()
	}
	if n := len(w.sink.Messages()); n != 3 {
		t.Errorf("the sink has %d messages, want 3", n)
	}
}

// TestQueueBounce: a 5xx for one recipient; the other is delivered. The
// local sender gets a DSN in its Maildir from <>, quoting the remote
// reply, with the delivery-status fields and the original header. A
// message from <> is never bounced; a remote sender's DSN goes out
// through the smarthost.
func TestQueueBounce(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	refusal := smtp.Replyf(550, "5.1.1", "nobody@remote.example: no such user here")
	w.sink.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" && strings.Contains(arg, "<nobody@remote.example>") {
			return refusal
		}
		return nil
	})
	w.send("alice@example.org", []string{"bob@remote.example", "nobody@remote.example"}, testMsg("bounce-me", "tok-bounce"))
	if m := w.sink.Wait(t, 1, 15*time.Second)[0]; !slices.Equal(m.Rcpts, []string{"bob@remote.example"}) {
		t.Errorf("the sink took %q", m.Rcpts)
	}
	box := w.waitBox("alice", 1)
	if !strings.HasPrefix(box[0], "Return-Path: <>\nDelivered-To: alice@example.org\n") {
		t.Errorf("the DSN's Maildir header:\n%s", box[0])
	}
	d := testlib.ParseDSN(t, []byte(box[0]))
	if got := d.Header.Get("From"); got != "Mail Delivery System <MAILER-DAEMON@mx.example.org>" {
		t.Errorf("DSN From: %q", got)
	}
	if got := d.Header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("DSN Auto-Submitted: %q", got)
	}
	if !strings.Contains(d.Human, "<nobody@remote.example>:") || !strings.Contains(d.Human, refusal.Error()) {
		t.Errorf("the DSN's text does not quote the reply %q:\n%s", refusal.Error(), d.Human)
	}
	if got := d.PerMessage["Reporting-MTA"]; got != "dns; mx.example.org" {
		t.Errorf("Reporting-MTA %q", got)
	}
	if len(d.Recipients) != 1 {
		t.Fatalf("DSN about %d recipients, want 1", len(d.Recipients))
	}
	for field, want := range map[string]string{
		"Final-Recipient": "rfc822; nobody@remote.example",
		"Action":          "failed",
		"Status":          "5.1.1",
		"Remote-MTA":      "dns; 127.0.0.1",
		"Diagnostic-Code": "smtp; " + refusal.Error(),
	} {
		if got := d.Recipients[0][field]; got != want {
			t.Errorf("%s: %q, want %q", field, got, want)
		}
	}
	if !strings.Contains(d.Original, "Subject: bounce-me") || strings.Contains(d.Original, "tok-bounce") {
		t.Errorf("the DSN's copy of the header (no body):\n%s", d.Original)
	}
	w.waitEmpty()

	// From <>: logged and dropped, no DSN anywhere.
	w.send("", []string{"nobody@remote.example"}, testMsg("from null", "tok-null"))
	w.waitRunq("the sender is <>")
	w.waitEmpty()

	// A remote sender's DSN leaves through the smarthost, from <>.
	w.send("zed@remote.example", []string{"nobody@remote.example"}, testMsg("remote sender", "tok-remote"))
	msgs := w.sink.Wait(t, 2, 15*time.Second)
	dsn := msgs[1]
	if dsn.From != "" || !slices.Equal(dsn.Rcpts, []string{"zed@remote.example"}) {
		t.Errorf("remote DSN envelope: from <%s> to %q", dsn.From, dsn.Rcpts)
	}
	if d := testlib.ParseDSN(t, dsn.Data); d.Recipients[0]["Final-Recipient"] != "rfc822; nobody@remote.example" {
		t.Errorf("remote DSN:\n%s", dsn.Data)
	}
	w.waitEmpty()
	if n := len(boxMessages(t, w.d.Root, "alice")); n != 1 {
		t.Errorf("alice has %d messages, want the one DSN", n)
	}
	if stats := fstest.Read(t, w.fsys, "stats"); !strings.Contains(stats, "\nqueue.dsns 2\n") {
		t.Errorf("stats:\n%s", stats)
	}
	if msgs := w.sink.Messages(); len(msgs) != 2 || bytes.Contains(msgs[0].Data, []byte("tok-null")) {
		t.Errorf("the sink has %d messages, want 2", len(msgs))
	}
}

// TestQueueDelayAndExpiry: a recipient still deferred delaywarn after
// arrival earns its sender one delay warning (Action: delayed); one
// still failing when the lifetime ends is bounced with Status: 4.4.7,
// the last reply quoted; one that gets through in time is delivered.
func TestQueueDelayAndExpiry(t *testing.T) {
	// The second attempt comes 0.9 s or more after the first (backoff
	// 1s, less its jitter): after delaywarn.
	w := startQueue(t, "smarthost %SINK\nbackoff 1s\ndelaywarn 500ms\nlifetime 2s\n")
	busy := smtp.Replyf(451, "4.2.1", "mailbox busy")
	var mu sync.Mutex
	tries := map[string]int{}
	w.sink.SetReply(func(phase, arg string) *smtp.Reply {
		if phase != "RCPT" {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		tries[arg]++
		if strings.Contains(arg, "<never@") || strings.Contains(arg, "<slow@") && tries[arg] <= 2 {
			return busy
		}
		return nil
	})
	w.send("alice@example.org", []string{"slow@remote.example"}, testMsg("slow", "tok-slow"))
	w.send("alice@example.org", []string{"never@remote.example"}, testMsg("never", "tok-never"))
	if m := w.sink.Wait(t, 1, 15*time.Second)[0]; !slices.Equal(m.Rcpts, []string{"slow@remote.example"}) {
		t.Errorf("the sink got %q", m.Rcpts)
	}
	w.waitEmpty()
	// Each message has had one delay warning; never@ a failure too.
	got := map[string]int{}
	for _, text := range w.waitBox("alice", 3) {
		for _, r := range testlib.ParseDSN(t, []byte(text)).Recipients {
			got[r["Final-Recipient"]+" "+r["Action"]+" "+r["Status"]]++
			if r["Diagnostic-Code"] != "smtp; "+busy.Error() {
				t.Errorf("Diagnostic-Code %q", r["Diagnostic-Code"])
			}
			if (r["Action"] == "delayed") != (r["Will-Retry-Until"] != "") {
				t.Errorf("%s: Will-Retry-Until %q", r["Action"], r["Will-Retry-Until"])
			}
		}
	}
	want := map[string]int{
		"rfc822; slow@remote.example delayed 4.2.1":  1,
		"rfc822; never@remote.example delayed 4.2.1": 1,
		"rfc822; never@remote.example failed 4.4.7":  1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("DSNs to alice: %v, want %v", got, want)
	}
	if n := len(boxMessages(t, w.d.Root, "alice")); n != 3 {
		t.Errorf("alice has %d messages, want 3", n)
	}
}
