package queue

import (
	"bytes"
	"context"
	"io"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/smtp"
)

// A fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	t time.Time
	c chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

// pending returns the times of the timers waiting.
func (c *fakeClock) pending() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ts []time.Time
	for _, w := range c.waiters {
		ts = append(ts, w.t)
	}
	return ts
}

// Advance moves the clock on and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.t.After(c.now) {
			kept = append(kept, w)
		} else {
			w.c <- c.now
		}
	}
	c.waiters = kept
}

// A call is one Deliver call a fakeDeliverer got.
type call struct {
	dest, from string
	rcpts      []string
	msg        []byte
	params     smtp.Params
}

// A fakeDeliverer records calls and answers them with result (nil:
// everything accepted).
type fakeDeliverer struct {
	mu     sync.Mutex
	calls  []call
	result func(ctx context.Context, c call) ([]error, error)
	dsn    map[string]bool // destinations that offer DSN (SendOutcome)
}

// SendOutcome is Send, saying the destinations of dsn offer DSN.
func (d *fakeDeliverer) SendOutcome(ctx context.Context, dest string, m smtp.Mail, msg io.Reader) ([]error, smtp.Outcome, error) {
	errs, err := d.Send(ctx, dest, m, msg)
	d.mu.Lock()
	o := smtp.Outcome{DSN: d.dsn[dest]}
	d.mu.Unlock()
	return errs, o, err
}

func (d *fakeDeliverer) Send(ctx context.Context, dest string, m smtp.Mail, msg io.Reader) ([]error, error) {
	from, rcpts := m.From, m.Rcpts
	b, err := io.ReadAll(msg)
	if err != nil {
		return nil, err
	}
	c := call{dest, from, append([]string(nil), rcpts...), b, m.Params}
	d.mu.Lock()
	d.calls = append(d.calls, c)
	f := d.result
	d.mu.Unlock()
	if f == nil {
		return nil, nil
	}
	return f(ctx, c)
}

func (d *fakeDeliverer) setResult(f func(ctx context.Context, c call) ([]error, error)) {
	d.mu.Lock()
	d.result = f
	d.mu.Unlock()
}

// take returns the calls so far and forgets them.
func (d *fakeDeliverer) take() []call {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.calls
	d.calls = nil
	return c
}

// A fakeLocal records local deliveries.
type fakeLocal struct {
	mu   sync.Mutex
	got  map[string][][]byte // user → messages
	fail error
}

func (l *fakeLocal) Deliver(ctx context.Context, from string, users []string, msg io.Reader) error {
	b, err := io.ReadAll(msg)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	if l.got == nil {
		l.got = map[string][][]byte{}
	}
	for _, u := range users {
		l.got[u] = append(l.got[u], b)
	}
	return nil
}

func (l *fakeLocal) messages(user string) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[user]
}

// localDomain makes addresses @local.test local, their local part the user.
func localDomain(addr string) (string, bool) {
	u, ok := strings.CutSuffix(addr, "@local.test")
	return u, ok
}

// A logBuf collects log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A harness is a queue on a fake clock in a temporary directory, with its
// runner going and every finished attempt reported on finished.
type harness struct {
	t        *testing.T
	dir      string
	q        *Queue
	clock    *fakeClock
	d        *fakeDeliverer
	local    *fakeLocal
	log      *logBuf
	finished chan string
	stop     func()
}

func testSettings() Settings {
	s := DefaultSettings()
	s.Hostname = "mx.test"
	s.IsLocal = localDomain
	return s
}

// newHarness opens a queue in a new directory; run starts its runner.
func newHarness(t *testing.T, s Settings) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: newFakeClock(), d: &fakeDeliverer{}, local: &fakeLocal{},
		log: &logBuf{}, finished: make(chan string, 1000)}
	h.open(s)
	return h
}

func (h *harness) open(s Settings) {
	h.t.Helper()
	q, err := open(h.dir, s, h.d, h.local, log.New(h.log, "", 0), h.clock)
	if err != nil {
		h.t.Fatal(err)
	}
	q.afterFinish = func(id string) { h.finished <- id }
	h.q = q
	h.t.Cleanup(func() { q.Close() })
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.q.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("Run: %v", err)
			}
		})
	}
	h.t.Cleanup(h.stop)
}

// halt stops the runner and waits for it.
func (h *harness) halt() { h.stop() }

// put queues a message and fails the test if it cannot.
func (h *harness) put(from string, rcpts ...string) string {
	h.t.Helper()
	id, err := h.q.Put(context.Background(), from, rcpts, strings.NewReader(testMsg(from)))
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// wait waits for n attempts to finish and returns their ids.
func (h *harness) wait(n int) []string {
	h.t.Helper()
	var ids []string
	for range n {
		select {
		case id := <-h.finished:
			ids = append(ids, id)
		case <-time.After(10 * time.Second):
			h.t.Fatalf("%d attempts finished, waited for %d; log:\n%s", len(ids), n, h.log)
		}
	}
	return ids
}

// waitID waits for an attempt of id to finish, passing over others.
func (h *harness) waitID(id string) {
	h.t.Helper()
	for {
		select {
		case got := <-h.finished:
			if got == id {
				return
			}
		case <-time.After(10 * time.Second):
			h.t.Fatalf("%s never finished; log:\n%s", id, h.log)
		}
	}
}

// item returns the listing of id, and whether it is queued.
func (h *harness) item(id string) (Item, bool) {
	for _, it := range h.q.List() {
		if it.ID == id {
			return it, true
		}
	}
	return Item{}, false
}

func testMsg(from string) string {
	return "From: " + from + "\r\nSubject: test\r\nMessage-ID: <x@test>\r\n\r\nhello\r\n"
}
