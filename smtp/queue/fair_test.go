package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// A gate holds the sessions to one destination until opened, counting
// how many are in at once.
type gate struct {
	dest    string
	mu      sync.Mutex
	in, top int
	open    chan struct{}
}

func newGate(dest string) *gate { return &gate{dest: dest, open: make(chan struct{})} }

// result is a fakeDeliverer result: calls to g.dest wait for the gate or
// for their context; others are accepted at once.
func (g *gate) result(ctx context.Context, c call) ([]error, error) {
	if c.dest != g.dest {
		return nil, nil
	}
	g.mu.Lock()
	g.in++
	g.top = max(g.top, g.in)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.in--
		g.mu.Unlock()
	}()
	select {
	case <-g.open:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gate) counts() (in, top int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.in, g.top
}

// A destination that holds its sessions gets DestConcurrency of them, no
// more; its other messages wait without a slot, and a message to another
// destination, queued while they wait, is delivered at once.
func TestDestConcurrency(t *testing.T) {
	s := testSettings()
	s.Deliveries, s.DestConcurrency = 4, 2
	h := newHarness(t, s)
	g := newGate("slow.example")
	h.d.setResult(g.result)
	var slow []string
	for i := range 6 {
		slow = append(slow, h.put("alice@example.org", "u"+itoa(i)+"@slow.example"))
	}
	h.run()
	testlib.WaitFor(t, 10*time.Second, "sessions at slow.example", func() bool { in, _ := g.counts(); return in >= 2 })
	fast := h.put("alice@example.org", "bob@fast.example")
	h.waitID(fast) // while the slow ones are held
	if in, _ := g.counts(); in != 2 {
		t.Errorf("%d sessions at slow.example, want 2", in)
	}
	if st := h.q.Stats(); st.Active != 2 {
		t.Errorf("%d sessions under way, want 2", st.Active)
	}
	close(g.open)
	h.wait(len(slow))
	if _, top := g.counts(); top != 2 {
		t.Errorf("%d sessions at once at slow.example, want 2", top)
	}
	if n := len(h.q.List()); n != 0 {
		t.Errorf("%d messages left", n)
	}
	h.halt()
	h.q.mu.Lock()
	defer h.q.mu.Unlock()
	if len(h.q.dests) != 0 || len(h.q.lines) != 0 {
		t.Errorf("bookkeeping left: %v %v", h.q.dests, h.q.lines)
	}
}

// The lines of the destinations take turns: with one slot in all, a
// destination with many jobs waiting does not go first with all of them.
func TestDestTurns(t *testing.T) {
	s := testSettings()
	s.Deliveries = 1
	h := newHarness(t, s)
	var rcpts []string
	for i := range 250 {
		rcpts = append(rcpts, "a"+itoa(i)+"@one.example")
		if i == 0 {
			rcpts = append(rcpts, "b@two.example")
		}
	}
	h.put("alice@example.org", rcpts...) // jobs: one.example ×3, two.example
	h.run()
	h.wait(1)
	var got []string
	for _, c := range h.d.take() {
		got = append(got, c.dest+" "+itoa(len(c.rcpts)))
	}
	if want := "one.example 100,two.example 1,one.example 100,one.example 50"; strings.Join(got, ",") != want {
		t.Errorf("sessions %q, want %s", got, want)
	}
}

// A session is bounded as a whole: one that outlives DeliveryTimeout is
// cut, its recipients deferred on the backoff schedule with the reason,
// the cut logged, and its destination rests like one that failed.
func TestDeliveryTimeout(t *testing.T) {
	s := testSettings()
	s.DeliveryTimeout = time.Hour
	s.Backoff = []time.Duration{10 * time.Minute}
	h := newHarness(t, s)
	started := make(chan struct{}, 1)
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	h.run()
	id := h.put("alice@example.org", "bob@slow.example")
	<-started
	h.clock.Advance(time.Hour - time.Second)
	select {
	case got := <-h.finished:
		t.Fatalf("%s finished before the bound", got)
	default:
	}
	h.clock.Advance(time.Second)
	h.waitID(id)
	it, _ := h.item(id)
	now := h.clock.Now()
	if it.Tries != 1 || !strings.Contains(it.LastErr, "session cut after 1h0m0s (deliverytimeout)") ||
		it.Next.Before(now.Add(9*time.Minute)) || it.Next.After(now.Add(11*time.Minute)) {
		t.Errorf("after the cut: %+v", it)
	}
	for _, want := range []string{"cut " + id + " at slow.example after 1h0m0s (deliverytimeout)",
		"deferred " + id + " to bob@slow.example: session cut after 1h0m0s"} {
		if !strings.Contains(h.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, h.log)
		}
	}
	h.q.mu.Lock()
	_, resting := h.q.down["slow.example"]
	h.q.mu.Unlock()
	if !resting {
		t.Errorf("slow.example does not rest after the cut")
	}
}

// A message held or deleted while its job waits for a slot is not tried:
// the held one keeps its recipients as they were, the deleted one is gone.
func TestWaitingHeldDeleted(t *testing.T) {
	s := testSettings()
	s.DestConcurrency = 1
	h := newHarness(t, s)
	g := newGate("slow.example")
	h.d.setResult(g.result)
	first := h.put("alice@example.org", "a@slow.example")
	held := h.put("alice@example.org", "b@slow.example")
	gone := h.put("alice@example.org", "c@slow.example")
	h.run()
	testlib.WaitFor(t, 10*time.Second, "a session at slow.example", func() bool { in, _ := g.counts(); return in == 1 })
	if err := h.q.Hold(held); err != nil {
		t.Fatal(err)
	}
	if err := h.q.Delete(gone); err != nil {
		t.Fatal(err)
	}
	close(g.open)
	h.wait(3)
	calls := h.d.take()
	if len(calls) != 1 || calls[0].rcpts[0] != "a@slow.example" {
		t.Errorf("calls %+v, want the first message's only", calls)
	}
	if _, ok := h.item(first); ok {
		t.Errorf("%s not delivered", first)
	}
	if it, ok := h.item(held); !ok || !it.Held || it.Tries != 0 || it.Active || it.LastErr != "" {
		t.Errorf("held while waiting: %+v %v", it, ok)
	}
	if _, ok := h.item(gone); ok {
		t.Errorf("%s still queued after delete", gone)
	}
}

// Stopping the runner while a message's job waits for a slot and another
// of its jobs is under way leaves the message as it was, to be delivered
// by the next runner.
func TestShutdownWaiting(t *testing.T) {
	s := testSettings()
	s.Deliveries = 1
	h := newHarness(t, s)
	g := newGate("one.example")
	h.d.setResult(g.result)
	id := h.put("alice@example.org", "a@one.example", "b@two.example")
	h.run()
	testlib.WaitFor(t, 10*time.Second, "the session at one.example", func() bool { in, _ := g.counts(); return in == 1 })
	h.halt()
	h.wait(1)
	it, ok := h.item(id)
	if !ok || len(it.Rcpts) != 2 || it.Tries != 0 || it.Active {
		t.Fatalf("after shutdown: %+v %v", it, ok)
	}
	h.q.Close()
	h.open(s)
	h.d.setResult(nil)
	h.run()
	h.wait(1)
	if _, ok := h.item(id); ok {
		t.Errorf("%s not delivered after restart; log:\n%s", id, h.log)
	}
}
