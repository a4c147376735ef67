package test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// The outbound fairness tests (issue 11): a destination that answers
// slowly holds at most destconcurrency of the queue's sessions, and for
// at most deliverytimeout; what an untrusted client may queue to its own
// address is bounded.

// slowSink makes s greet at once, then answer each command only after
// delay (or when the test ends): a host that accepts mail very slowly.
func slowSink(t *testing.T, s *testlib.Sink, delay time.Duration) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase != "greeting" {
			select {
			case <-time.After(delay):
			case <-done:
				return testlib.Hangup
			}
		}
		return nil
	})
}

// TestQueueSlowDestination: two messages of 1,000 recipients each to a
// destination that answers each command after a minute make 20 sessions
// there, as many as deliveries allows in all. The destination gets
// destconcurrency (10) of them; a message to another destination, queued
// meanwhile, is delivered within a second or two.
func TestQueueSlowDestination(t *testing.T) {
	slow := testlib.NewSink(t, testlib.SinkOptions{Listen: "127.0.0.2:0"})
	fast := testlib.NewSink(t, testlib.SinkOptions{Listen: "127.0.0.3:" + slow.Port()})
	slowSink(t, slow, time.Minute)
	dns := testlib.NewDNS(t, "slow.example. MX 10 mx.slow.example.\nmx.slow.example. A 127.0.0.2\nfast.example. A 127.0.0.3\n")
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	t.Setenv("SMTPFS_SMTP_PORT", slow.Port())
	w := &queueWorld{t: t, sink: fast, d: startMail(t, queueConf)}
	w.fsys = fstest.Dial(t, w.d.NineP[0])
	for m := range 2 {
		var rcpts []string
		for i := range 1000 {
			rcpts = append(rcpts, "u"+strconv.Itoa(m*1000+i)+"@slow.example")
		}
		w.send("alice@example.org", rcpts, testMsg("many", "tok-many"))
	}
	testlib.WaitFor(t, 15*time.Second, "sessions at the slow destination", func() bool { return len(slow.Sessions()) >= 10 })
	w.send("alice@example.org", []string{"bob@fast.example"}, testMsg("fast", "tok-fast"))
	queued := time.Now()
	m := fast.Wait(t, 1, 3*time.Second)[0]
	took := time.Since(queued)
	if !strings.Contains(string(m.Data), "token tok-fast\r\n") {
		t.Errorf("the fast destination got\n%s", m.Data)
	}
	if took > 3*time.Second {
		t.Errorf("delivered %v after it was queued, want under 3s", took)
	}
	if n := len(slow.Sessions()); n != 10 {
		t.Errorf("%d sessions at the slow destination, want 10 (destconcurrency)", n)
	}
	t.Logf("delivered %v after it was queued, beside %d slow sessions", took, len(slow.Sessions()))
}

// TestQueueDeliveryTimeout: a session that outlives deliverytimeout is
// cut; the message stays queued, deferred, the reason in the queue file
// and the runq log.
func TestQueueDeliveryTimeout(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\ndeliverytimeout 2s\n")
	slowSink(t, w.sink, time.Minute)
	w.send("alice@example.org", []string{"bob@remote.example"}, testMsg("slow", "tok-slow"))
	w.waitRunq(" after 2s (deliverytimeout)")
	var q []queueLine
	testlib.WaitFor(t, 15*time.Second, "the message deferred", func() bool {
		q = w.list()
		return len(q) == 1 && q[0].Tries == "1"
	})
	if !strings.Contains(q[0].LastErr, "session cut after 2s (deliverytimeout)") {
		t.Errorf("last error %q", q[0].LastErr)
	}
	log := runqLog(t, w.d.Root)
	if !strings.Contains(log, "cut "+q[0].ID+" at tcp!127.0.0.1!"+w.sink.Port()+" after 2s (deliverytimeout)") ||
		!strings.Contains(log, "deferred "+q[0].ID+" to bob@remote.example: ") {
		t.Errorf("runq log:\n%s", log)
	}
}

// TestSmtpdLoopbackBounds: an untrusted client may send at most
// loopbackrcpts recipients to [] in a message, and loopbackrate messages
// and recipients in a window; a trusted one is not bounded. The verbs
// show in ctl as they were set.
func TestSmtpdLoopbackBounds(t *testing.T) {
	back := testlib.NewSink(t, testlib.SinkOptions{Listen: "127.0.0.7:0"})
	t.Setenv("SMTPFS_SMTP_PORT", back.Port())
	w := &queueWorld{t: t, sink: back, d: startMail(t, queueConf+"loopbackrate 2 100 1h\n")}
	w.fsys = fstest.Dial(t, w.d.NineP[0])
	r := ehlo(t, w.d, "127.0.0.7")
	r.Send("MAIL FROM:<x@elsewhere.example>")
	r.Expect("250 ")
	for i := range 10 {
		r.Send("RCPT TO:<me" + strconv.Itoa(i) + "@[]>")
		r.Expect("250 2.0.0 receiver is [127.0.0.7]!me")
	}
	r.Send("RCPT TO:<me10@[]>")
	r.Expect("452 4.5.3 Too many recipients at [] in one message")
	r.Send("DATA")
	r.Expect("354 ")
	r.Send(".")
	r.Expect("250 2.5.0 sent")
	if got := r.transaction("x@elsewhere.example", []string{"me@[]"}, ""); got != "250 2.5.0 sent" {
		t.Fatalf("second message: %q", got)
	}
	r.Send("MAIL FROM:<x@elsewhere.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<me@[]>")
	r.Expect("450 4.7.1 Too much mail for [] from 127.0.0.7; try again later")
	waitLog(t, w.d, "refused [127.0.0.7]!me: 2 messages and 11 recipients for [] within 1h0m0s (loopbackrate)")

	msgs := back.Wait(t, 2, 15*time.Second)
	if n := len(msgs[0].Rcpts) + len(msgs[1].Rcpts); n != 11 {
		t.Errorf("%d recipients delivered back, want 11", n)
	}
	// 127.0.0.1 is in ournets: trusted, not bounded.
	rt := ehlo(t, w.d, "127.0.0.1")
	var rcpts []string
	for i := range 20 {
		rcpts = append(rcpts, "me"+strconv.Itoa(i)+"@[]")
	}
	if got := rt.transaction("alice@example.org", rcpts, ""); got != "250 2.5.0 sent" {
		t.Errorf("trusted: %q", got)
	}

	w.mustCtl("loopbackrcpts 3\ndestconcurrency 4\ndeliverytimeout 20m")
	ctl := fstest.Read(t, w.fsys, "ctl")
	for _, want := range []string{"\nloopbackrcpts 3\n", "\nloopbackrate 2 100 1h\n", "\ndestconcurrency 4\n", "\ndeliverytimeout 20m\n"} {
		if !strings.Contains(ctl, want) {
			t.Errorf("ctl lacks %q:\n%s", want, ctl)
		}
	}
}
