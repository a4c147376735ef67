package queue

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// newReuseHarness is a harness whose deliverer is the client engine, an
// Opener, with the sink as its smarthost; n messages are queued, one
// recipient each, each from its own sender, before the runner starts.
func newReuseHarness(t *testing.T, s Settings, opt testlib.SinkOptions, n int) (*harness, *testlib.Sink, []string) {
	sink := testlib.NewSink(t, opt)
	s.SmartHost = "tcp!127.0.0.1!" + sink.Port()
	h := newHarness(t, s)
	fast := smtp.Timeouts{Connect: 5 * time.Second, Greeting: 10 * time.Second, Command: 10 * time.Second,
		DataInit: 10 * time.Second, DataBlock: 10 * time.Second, DataDone: 10 * time.Second}
	h.q.deliver = &smtp.Client{Hello: "mx.test", Timeouts: fast}
	var ids []string
	for i := range n {
		ids = append(ids, h.put(fmt.Sprintf("s%d@example.org", i), "bob@remote.example"))
	}
	return h, sink, ids
}

// senders returns the senders of the messages the sink took, sorted.
func senders(sink *testlib.Sink) []string {
	var out []string
	for _, m := range sink.Messages() {
		out = append(out, m.From)
	}
	slices.Sort(out)
	return out
}

func wantSenders(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("s%d@example.org", i))
	}
	slices.Sort(out)
	return out
}

// mails counts the MAIL commands of each connection.
func mails(sink *testlib.Sink) []int {
	var out []int
	for _, c := range sink.Sessions() {
		n := 0
		for _, l := range c {
			if strings.HasPrefix(l, "MAIL ") {
				n++
			}
		}
		out = append(out, n)
	}
	return out
}

// 50 messages to one destination go over a few connections, none
// carrying more than sessionmsgs, none open beyond destconcurrency at
// once; every message arrives once.
func TestReuseFewSessions(t *testing.T) {
	s := testSettings()
	s.DestConcurrency = 3
	s.SessionMsgs = 20
	h, sink, _ := newReuseHarness(t, s, testlib.SinkOptions{}, 50)
	var mu sync.Mutex
	open, top := 0, 0
	sink.SetReply(func(phase, arg string) *smtp.Reply {
		mu.Lock()
		defer mu.Unlock()
		switch phase {
		case "greeting":
			open++
			top = max(top, open)
		case "QUIT":
			open--
		}
		return nil
	})
	h.run()
	h.wait(50)
	h.halt()
	if got, want := senders(sink), wantSenders(50); !slices.Equal(got, want) {
		t.Fatalf("sink got %d messages %q, want each of 50 once", len(got), got)
	}
	per := mails(sink)
	if len(per) < 3 || len(per) > 6 || slices.Max(per) > 20 {
		t.Errorf("MAILs per connection %v: want 3 to 6 connections of at most 20", per)
	}
	mu.Lock()
	defer mu.Unlock()
	if top > 3 || open != 0 {
		t.Errorf("%d connections at once (destconcurrency 3), %d left open after Run", top, open)
	}
}

// A server that drops the connection after the 250 to the third
// message: the message after it goes on a new connection; none is lost
// or sent twice.
func TestReuseDroppedAfterMessage(t *testing.T) {
	s := testSettings()
	s.DestConcurrency = 1
	h, sink, _ := newReuseHarness(t, s, testlib.SinkOptions{}, 10)
	var mu sync.Mutex
	n := 0
	sink.SetReply(func(phase, arg string) *smtp.Reply {
		mu.Lock()
		defer mu.Unlock()
		if phase == "MAIL" {
			if n++; n == 4 {
				return testlib.Hangup
			}
		}
		return nil
	})
	h.run()
	h.wait(10)
	if got, want := senders(sink), wantSenders(10); !slices.Equal(got, want) {
		t.Fatalf("sink got %q, want each of 10 once", got)
	}
	if per := mails(sink); !slices.Equal(per, []int{4, 7}) {
		t.Errorf("MAILs per connection %v, want [4 7] (the 4th MAIL hung up, then sent again)", per)
	}
}

// A connection lost before the reply to a message's dot: that message is
// deferred, not lost, and delivered at its retry (at least once).
func TestReuseDroppedInData(t *testing.T) {
	s := testSettings()
	s.DestConcurrency = 1
	h, sink, ids := newReuseHarness(t, s, testlib.SinkOptions{}, 6)
	var mu sync.Mutex
	n := 0
	sink.SetReply(func(phase, arg string) *smtp.Reply {
		mu.Lock()
		defer mu.Unlock()
		if phase == "." {
			if n++; n == 3 {
				return testlib.Hangup
			}
		}
		return nil
	})
	h.run()
	h.wait(6)
	var deferred []Item
	for _, id := range ids {
		if it, ok := h.item(id); ok {
			deferred = append(deferred, it)
		}
	}
	// The third message was lost in DATA, and the destination rests:
	// the three after it wait for the rest to end.
	if len(deferred) != 4 || len(sink.Messages()) != 2 {
		t.Fatalf("%d deferred, %d delivered; want 4, 2", len(deferred), len(sink.Messages()))
	}
	h.clock.Advance(deferred[0].Next.Sub(h.clock.Now()) + time.Minute)
	h.wait(4)
	if got, want := senders(sink), wantSenders(6); !slices.Equal(got, want) {
		t.Fatalf("sink got %q, want each of 6", got)
	}
}

// A server without PIPELINING gets one command at a time, and still
// carries several messages per connection.
func TestReuseNoPipelining(t *testing.T) {
	s := testSettings()
	s.DestConcurrency = 1
	h, sink, _ := newReuseHarness(t, s, testlib.SinkOptions{NoPipelining: true}, 5)
	h.run()
	h.wait(5)
	h.halt()
	if got := senders(sink); !slices.Equal(got, wantSenders(5)) {
		t.Fatalf("sink got %q", got)
	}
	sess := sink.Sessions()
	if len(sess) != 1 {
		t.Fatalf("%d connections, want 1", len(sess))
	}
	for _, l := range sess[0] {
		if strings.HasSuffix(l, "(pipelined)") {
			t.Errorf("pipelined to a server without PIPELINING: %q", sess[0])
			break
		}
	}
}

// A session idle after its last message is kept for the next message to
// its destination, and closed after sessionidle.
func TestReuseIdle(t *testing.T) {
	s := testSettings()
	h, sink, _ := newReuseHarness(t, s, testlib.SinkOptions{}, 1)
	h.run()
	h.wait(1)
	h.put("late@example.org", "bob@remote.example")
	h.wait(1)
	if per := mails(sink); !slices.Equal(per, []int{2}) {
		t.Fatalf("MAILs per connection %v, want [2]: the second message on the parked session", per)
	}
	h.clock.Advance(s.SessionIdle)
	testlib.WaitFor(t, 10*time.Second, "QUIT of the idle session", func() bool {
		c := sink.Sessions()[0]
		return c[len(c)-1] == "QUIT"
	})
	h.put("later@example.org", "bob@remote.example")
	h.wait(1)
	if per := mails(sink); !slices.Equal(per, []int{2, 1}) {
		t.Errorf("MAILs per connection %v, want [2 1]: a new session after the idle one closed", per)
	}
}

// A parked session holds no delivery slot, but the connections open at
// once stay within deliveries: a session to another destination, opened
// while every slot is taken or parked, closes the oldest parked one.
func TestReuseEvictsParked(t *testing.T) {
	a := testlib.NewSink(t, testlib.SinkOptions{})
	b := testlib.NewSink(t, testlib.SinkOptions{Listen: "127.0.0.2:" + a.Port()})
	s := testSettings()
	s.Deliveries = 1
	h := newHarness(t, s)
	fast := smtp.Timeouts{Connect: 5 * time.Second, Greeting: 10 * time.Second, Command: 10 * time.Second,
		DataInit: 10 * time.Second, DataBlock: 10 * time.Second, DataDone: 10 * time.Second}
	h.q.deliver = &smtp.Client{Hello: "mx.test", Port: a.Port(), Timeouts: fast}
	h.run()
	h.put("one@example.org", "bob@[127.0.0.1]")
	h.wait(1)
	if st := h.q.Stats(); st.Active != 0 || len(a.Sessions()) != 1 {
		t.Fatalf("after the first message: %d active, %d connections to a; want 0 (parked), 1", st.Active, len(a.Sessions()))
	}
	h.put("two@example.org", "bob@[127.0.0.2]")
	h.wait(1)
	if len(b.Messages()) != 1 {
		t.Fatalf("b got %d messages", len(b.Messages()))
	}
	testlib.WaitFor(t, 10*time.Second, "QUIT of the session parked at a", func() bool {
		c := a.Sessions()[0]
		return c[len(c)-1] == "QUIT"
	})
	if c := b.Sessions()[0]; c[len(c)-1] == "QUIT" {
		t.Errorf("the session to b, parked last, was closed too: %q", c)
	}
}

// A message that asks for REQUIRETLS is not carried by a parked session
// opened without it: it needs a session of its own, to a host a TLS
// policy authenticates; here there is no policy, so it is never sent
// (RFC 8689 §4.2.1: 5.7.30).
func TestReuseRequireTLS(t *testing.T) {
	s := testSettings()
	h, sink, _ := newReuseHarness(t, s, testlib.SinkOptions{}, 1)
	h.run()
	h.wait(1)
	m := smtp.Mail{From: "tls@example.org", Rcpts: []string{"bob@remote.example"}, Params: smtp.Params{RequireTLS: true}}
	if _, err := h.q.PutMail(t.Context(), m, strings.NewReader(testMsg(m.From))); err != nil {
		t.Fatal(err)
	}
	h.wait(1)
	for _, c := range sink.Sessions() {
		for _, l := range c {
			if strings.HasPrefix(l, "MAIL FROM:<tls@example.org>") {
				t.Errorf("the REQUIRETLS message was sent on a session without an authenticating policy: %q", c)
			}
		}
	}
	if !strings.Contains(h.log.String(), "5.7.30") {
		t.Errorf("no 5.7.30 for the REQUIRETLS message; log:\n%s", h.log)
	}
}
