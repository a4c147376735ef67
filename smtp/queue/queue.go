package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"smtpfs/smtp"
)

// A Deliverer sends a message to recipients at one destination: the SMTP
// client engine (package smtp) in production. dest is a dial string: the
// recipients' domain (the engine looks up its MX), the smarthost, or
// "[ip]" for an address literal. err != nil: the attempt failed for every
// recipient; else rcptErrs[i] != nil: recipient i failed (nil or shorter
// rcptErrs: the others were accepted). Errors say whether they are
// temporary as smtp.IsTemporary reads them; an error that names the
// server that answered with a method RemoteMTA() string gets that name in
// the DSN. Send must be safe for concurrent use, and return soon after
// ctx is done.
type Deliverer interface {
	Send(ctx context.Context, dest string, m smtp.Mail, msg io.Reader) (rcptErrs []error, err error)
}

// An Opener is a Deliverer that can also open a session to a destination
// that carries several messages one after another: the client engine,
// *smtp.Client. With one, the runner sends the messages waiting for a
// destination over the session that just delivered one there
// (Settings.SessionMsgs, SessionIdle); with a plain Deliverer, each job
// is a session of its own. The Conn is used by one goroutine at a time.
type Opener interface {
	Open(ctx context.Context, dest string, first smtp.Mail) (*smtp.Conn, error)
}

// Local delivers to local users (the server engine's Maildir delivery):
// recipients for which Settings.IsLocal says ok, among them bounces to
// local senders. from is the envelope sender ("" for <>), for the
// Return-Path. An error applies to every user; smtp.IsTemporary says
// whether to retry.
type Local interface {
	Deliver(ctx context.Context, from string, users []string, msg io.Reader) error
}

// A Queue is the outbound queue in one directory: the messages on disk,
// an index of them in memory, and (in the process that calls Run) the
// runner that delivers them. Its methods are safe for concurrent use.
type Queue struct {
	st      *store
	log     *log.Logger
	clock   clock
	deliver Deliverer
	local   Local
	writer  bool // opened with OpenWriter

	// test hooks
	rescanEvery time.Duration
	afterFinish func(id string)

	mu      sync.Mutex
	set     Settings
	msgs    map[string]*entry
	gen     atomic.Uint64        // changes with the set of ids in msgs (Generation)
	due     dueHeap              // entries neither held nor active, soonest first
	putting map[string]bool      // ids being written by Put: not for rescans to load
	down    map[string]time.Time // destinations that just failed as a whole: no session before
	dests   map[string]*dest     // destinations with sessions under way or jobs waiting
	lines   []*dest              // those with jobs waiting, in turn order
	active  int                  // delivery sessions under way
	idle    []*parked            // sessions kept open for their destination's next message, oldest first
	n       Stats
	closed  bool
	wake    chan struct{}
	signer  Signer // of Submit and DSNs (sign.go); nil: none

	lowLogged atomic.Int64 // when CheckSpace last logged a refusal, Unix ns
}

// An entry is a queued message in memory: its envelope and the runner's
// bookkeeping. The envelope fields change only under Queue.mu; the file
// is written under wmu (taken before mu), so that writes of one envelope
// happen in the order of the changes.
type entry struct {
	id string
	envelope
	next    time.Time // the soonest next of its recipients
	active  bool      // an attempt is under way
	deleted bool
	cancel  context.CancelFunc // of the attempt under way
	hidx    int                // index in Queue.due, -1 when not there
	wmu     sync.Mutex
}

// Stats are the queue's counters, for the 9P stats file. The first group
// counts events since Open; the second describes the queue now.
type Stats struct {
	Queued    int64 // messages queued: Put, Submit, DSNs, and records other processes wrote
	Delivered int64 // recipients delivered
	Deferred  int64 // recipient attempts that failed temporarily
	Bounced   int64 // recipients given up: permanent failure, or lifetime over
	DSNs      int64 // delivery status notifications queued (failures and delay warnings)
	Deleted   int64 // messages deleted by the operator
	Damaged   int64 // records found damaged and moved to bad/

	Length int // messages in the queue
	Rcpts  int // recipients still to deliver
	Held   int // messages held
	Active int // delivery sessions under way
}

// Open opens the queue in dir, creating the directory if need be, and
// recovers it: files that writers killed mid-write left behind are
// removed, never loaded; every whole record is loaded and is due at its
// recorded time (a message whose delivery a crash interrupted is tried
// again: delivered twice at worst, never lost); damaged records are moved
// to dir/bad/ and logged. d delivers remote mail and local local mail
// (nil if nothing is local); logger gets one line per event (nil: none).
func Open(dir string, s Settings, d Deliverer, local Local, logger *log.Logger) (*Queue, error) {
	return open(dir, s, d, local, logger, realClock{})
}

// OpenWriter opens the queue in dir for Put and Submit only, without
// loading or recovering it: for a process such as cmd/smtpd that queues
// messages in a directory whose runner is another process. List shows
// nothing and Run refuses.
func OpenWriter(dir string, s Settings, logger *log.Logger) (*Queue, error) {
	return openWriter(dir, s, logger, realClock{})
}

func openWriter(dir string, s Settings, logger *log.Logger, c clock) (*Queue, error) {
	st, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	q := newQueue(st, s, nil, nil, logger, c)
	q.writer = true
	return q, nil
}

func newQueue(st *store, s Settings, d Deliverer, local Local, logger *log.Logger, c clock) *Queue {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return &Queue{st: st, log: logger, clock: c, deliver: d, local: local, set: s.normal(),
		rescanEvery: 30 * time.Second,
		msgs:        map[string]*entry{}, putting: map[string]bool{}, down: map[string]time.Time{}, dests: map[string]*dest{},
		wake: make(chan struct{}, 1)}
}

func open(dir string, s Settings, d Deliverer, local Local, logger *log.Logger, c clock) (*Queue, error) {
	st, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	q := newQueue(st, s, d, local, logger, c)
	n, err := q.rescan(false)
	if err != nil {
		st.close()
		return nil, err
	}
	q.log.Printf("loaded %d messages from %s", n, dir)
	return q, nil
}

// Close releases the directory. Call it after Run has returned; Put fails
// afterwards.
func (q *Queue) Close() error {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	return q.st.close()
}

// rescan loads the records on disk that the index lacks: all of them at
// Open, and later those that another process sharing the directory
// wrote. It first removes what dead writers left. found says whether to
// log and count the new records as queued.
func (q *Queue) rescan(found bool) (int, error) {
	ids, removed, err := q.st.scan()
	for _, r := range removed {
		q.log.Printf("removed %s: half-written", r)
	}
	if err != nil {
		return 0, fmt.Errorf("queue: %v", err)
	}
	n := 0
	for _, id := range ids {
		q.mu.Lock()
		known := q.msgs[id] != nil || q.putting[id]
		q.mu.Unlock()
		if known {
			continue
		}
		env, err := q.st.load(id)
		if err != nil {
			if !isNotExist(err) {
				q.st.moveBad(id)
				q.log.Printf("damaged %s: %v; moved to bad/", id, err)
				q.mu.Lock()
				q.n.Damaged++
				q.mu.Unlock()
			}
			continue
		}
		e := &entry{id: id, envelope: *env, hidx: -1}
		// Once e is in the index, the runner may change its recipients.
		line := fmt.Sprintf("found %s from %s to %s size %d", id, showAddr(e.from), addrs(e.rcpts), e.size)
		q.mu.Lock()
		added := q.msgs[id] == nil // a rescan at the same time may have it
		if added {
			q.insert(e)
			n++
			if found {
				q.n.Queued++
			}
		}
		q.mu.Unlock()
		if added && found {
			q.log.Print(line)
		}
	}
	return n, nil
}

// insert adds e to the index and, unless held, to the due heap. q.mu held.
func (q *Queue) insert(e *entry) {
	q.msgs[e.id] = e
	q.gen.Add(1)
	e.schedule()
	if !e.held {
		heap.Push(&q.due, e)
	}
}

// schedule sets e.next from its recipients.
func (e *entry) schedule() {
	e.next = time.Time{}
	for i, r := range e.rcpts {
		if i == 0 || r.next.Before(e.next) {
			e.next = r.next
		}
	}
}

// Put stores a message durably for delivery to rcpts and returns its id,
// only once the message is on disk and fsynced (shared with concurrent
// Puts: group commit). from is "" for the null sender, else local@domain;
// rcpts are local@domain, or local@[ip] for an address literal. msg is
// the message as it will be sent: CRLF line ends, no dot-stuffing. While
// the file system has less than Settings.MinFree free, Put refuses with
// ErrInsufficientStorage.
func (q *Queue) Put(ctx context.Context, from string, rcpts []string, msg io.Reader) (string, error) {
	return q.put(ctx, smtp.Mail{From: from, Rcpts: rcpts}, msg, true)
}

// PutMail is Put with the whole envelope: m's Params (DSN, REQUIRETLS,
// SMTPUTF8) are kept with the message, handed to the next hop and obeyed
// by the DSNs the queue sends. A recipient given twice keeps the
// parameters of its first mention.
func (q *Queue) PutMail(ctx context.Context, m smtp.Mail, msg io.Reader) (string, error) {
	return q.put(ctx, m, msg, true)
}

// put is PutMail; a DSN (roomCheck false) is not held to MinFree.
func (q *Queue) put(ctx context.Context, m smtp.Mail, msg io.Reader, roomCheck bool) (string, error) {
	from := m.From
	rcpts, dsns, err := checkEnvelope(m)
	if err != nil {
		return "", err
	}
	if roomCheck {
		if err := q.CheckSpace(); err != nil {
			return "", err
		}
	}
	now := q.clock.Now()
	id := newID(now)
	e := &entry{id: id, envelope: envelope{from: from, arrived: now, params: m.Params}, hidx: -1}
	e.params.Rcpt = nil
	for i, a := range rcpts {
		e.rcpts = append(e.rcpts, &rcpt{addr: a, next: now, dsn: dsns[i]})
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return "", errors.New("queue: closed")
	}
	q.putting[id] = true
	q.mu.Unlock()
	_, err = q.st.create(ctx, id, msg, func(n int64) []byte {
		e.size = n
		return e.marshal()
	})
	// The log line is made before e is in the index: from then on the
	// runner may be changing its recipients.
	line := fmt.Sprintf("queued %s from %s to %s size %d", id, showAddr(from), addrs(e.rcpts), e.size)
	q.mu.Lock()
	delete(q.putting, id)
	if err == nil {
		q.n.Queued++
		if !q.writer {
			q.insert(e)
		}
	}
	q.mu.Unlock()
	if err != nil {
		return "", err
	}
	q.log.Print(line)
	q.poke()
	return id, nil
}

// checkEnvelope checks the addresses and parameters given to PutMail and
// returns the recipients without repeats, each with its parameters.
func checkEnvelope(m smtp.Mail) ([]string, []smtp.RcptParams, error) {
	from, rcpts := m.From, m.Rcpts
	if from != "" {
		if err := checkAddr(from); err != nil {
			return nil, nil, err
		}
	}
	if len(rcpts) == 0 {
		return nil, nil, errors.New("invalid envelope: no recipients")
	}
	if len(rcpts) > MaxRcpts {
		return nil, nil, fmt.Errorf("too long: more than %d recipients", MaxRcpts)
	}
	if err := CheckRet(m.Ret); err != nil {
		return nil, nil, err
	}
	if err := CheckEnvID(m.EnvID); err != nil {
		return nil, nil, err
	}
	seen := make(map[string]bool, len(rcpts))
	var out []string
	var dsns []smtp.RcptParams
	for i, r := range rcpts {
		if err := checkAddr(r); err != nil {
			return nil, nil, err
		}
		var p smtp.RcptParams
		if i < len(m.Rcpt) {
			p = m.Rcpt[i]
			if err := CheckRcptParams(p); err != nil {
				return nil, nil, err
			}
		}
		if k := addrKey(r); !seen[k] {
			seen[k] = true
			out = append(out, r)
			dsns = append(dsns, p)
		}
	}
	return out, dsns, nil
}

// addrKey is the address with its domain in lower case: local parts may
// be case-sensitive (RFC 5321 §2.4), domains are not.
func addrKey(a string) string {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return a[:i] + strings.ToLower(a[i:])
	}
	return a
}

// poke wakes the runner.
func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// List returns a snapshot of the queue, sorted by arrival.
func (q *Queue) List() []Item {
	q.mu.Lock()
	items := make([]Item, 0, len(q.msgs))
	for _, e := range q.msgs {
		if len(e.rcpts) > 0 { // else on its way out
			items = append(items, e.item())
		}
	}
	q.mu.Unlock()
	slices.SortFunc(items, func(a, b Item) int {
		if c := a.Arrived.Compare(b.Arrived); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return items
}

// Generation returns a number that changes whenever a message joins or
// leaves the queue, so that a caller may keep what it built from List
// while the set of ids stays the same.
func (q *Queue) Generation() uint64 { return q.gen.Load() }

func (e *entry) item() Item {
	it := Item{ID: e.id, From: e.from, Size: e.size, Arrived: e.arrived, Held: e.held, Active: e.active,
		Rcpts: make([]string, len(e.rcpts))}
	for i, r := range e.rcpts {
		it.Rcpts[i] = r.addr
		it.Tries = max(it.Tries, r.tries)
		if it.LastErr == "" {
			it.LastErr = r.err
		}
	}
	if !e.held {
		it.Next = e.next
	}
	return it
}

// Stats returns the counters.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.n
	s.Active = q.active
	for _, e := range q.msgs {
		if len(e.rcpts) == 0 {
			continue // on its way out
		}
		s.Length++
		s.Rcpts += len(e.rcpts)
		if e.held {
			s.Held++
		}
	}
	return s
}

// SetSettings changes the settings; attempts under way keep the old ones.
func (q *Queue) SetSettings(s Settings) {
	q.mu.Lock()
	q.set = s.normal()
	q.mu.Unlock()
	q.poke()
}

// Kick loads the records that other processes (cmd/smtpd) wrote since
// the runner's last look at the directory, makes every message that is
// not held due now, and forgets which destinations failed lately: runq
// run by hand.
func (q *Queue) Kick() {
	if !q.writer {
		if _, err := q.rescan(true); err != nil {
			q.log.Printf("rescan: %v", err)
		}
	}
	now := q.clock.Now()
	q.mu.Lock()
	for _, e := range q.msgs {
		if !e.held && !e.active {
			e.dueAt(now)
		}
	}
	heap.Init(&q.due)
	clear(q.down)
	q.mu.Unlock()
	q.log.Printf("kick")
	q.poke()
}

// dueAt brings every recipient of e forward to now. q.mu held; the
// caller fixes the heap.
func (e *entry) dueAt(now time.Time) {
	for _, r := range e.rcpts {
		if r.next.After(now) {
			r.next = now
		}
	}
	e.schedule()
}

// lookup returns the entries of ids, or an error naming the first that is
// not in the queue. "all" stands for every message. q.mu held.
func (q *Queue) lookup(ids []string) ([]*entry, error) {
	var es []*entry
	for _, id := range ids {
		if id == "all" {
			for _, e := range q.msgs {
				es = append(es, e)
			}
			continue
		}
		e := q.msgs[id]
		if e == nil {
			return nil, fmt.Errorf("not found: %s", id)
		}
		es = append(es, e)
	}
	return es, nil
}

// each runs f on the entries of ids, with e.wmu held, all or none: an
// unknown id fails the call before anything changes.
func (q *Queue) each(ids []string, f func(e *entry) error) error {
	q.mu.Lock()
	es, err := q.lookup(ids)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range es {
		e.wmu.Lock()
		if err := f(e); err != nil {
			errs = append(errs, err)
		}
		e.wmu.Unlock()
	}
	return errors.Join(errs...)
}

// control applies f to the entries of ids as each does. f runs with q.mu
// held too and returns whether the envelope must be written again. Each
// entry is logged as "verb id".
func (q *Queue) control(verb string, ids []string, f func(e *entry, now time.Time) bool) error {
	defer q.poke()
	return q.each(ids, func(e *entry) error {
		q.mu.Lock()
		var snap *envelope
		if !e.deleted && f(e, q.clock.Now()) {
			snap = e.envelope.clone()
		}
		q.mu.Unlock()
		q.log.Printf("%s %s", verb, e.id)
		if snap == nil {
			return nil
		}
		if err := q.st.writeEnv(e.id, snap.marshal()); err != nil {
			return fmt.Errorf("queue: %s %s: %v", verb, e.id, err)
		}
		return nil
	})
}

// Hold stops attempts of the messages until they are released; an attempt
// under way goes on. Held messages do not expire while held.
func (q *Queue) Hold(ids ...string) error {
	return q.control("held", ids, func(e *entry, _ time.Time) bool {
		if e.held {
			return false
		}
		e.held = true
		q.due.remove(e)
		return true
	})
}

// Release undoes Hold: the messages are due at once.
func (q *Queue) Release(ids ...string) error {
	return q.control("released", ids, func(e *entry, now time.Time) bool {
		if !e.held {
			return false
		}
		e.held = false
		if !e.active {
			e.dueAt(now)
			heap.Push(&q.due, e)
		}
		return true
	})
}

// Retry makes the messages due now, held ones too (they are released),
// and forgets that their destinations failed lately. A message being
// tried now is left to that attempt.
func (q *Queue) Retry(ids ...string) error {
	return q.control("retry", ids, func(e *entry, now time.Time) bool {
		wasHeld := e.held
		e.held = false
		for _, r := range e.rcpts {
			delete(q.down, q.set.dest(r.addr))
		}
		if !e.active {
			e.dueAt(now)
			q.due.remove(e)
			heap.Push(&q.due, e)
		}
		return wasHeld
	})
}

// Delete removes the messages without a bounce (postsuper -d). An attempt
// under way is cancelled.
func (q *Queue) Delete(ids ...string) error {
	return q.each(ids, func(e *entry) error {
		q.mu.Lock()
		gone := e.deleted
		e.deleted = true
		q.due.remove(e)
		cancel := e.cancel
		q.mu.Unlock()
		if gone {
			return nil
		}
		if cancel != nil {
			cancel()
		}
		err := q.st.remove(e.id)
		q.mu.Lock()
		delete(q.msgs, e.id)
		q.gen.Add(1)
		q.n.Deleted++
		q.mu.Unlock()
		q.log.Printf("deleted %s", e.id)
		if err != nil {
			return fmt.Errorf("queue: delete %s: %v", e.id, err)
		}
		return nil
	})
}

// OpenMessage opens the data of the queued message id, as it will be
// sent, for reading (the 9P queue.d files). An id not in the queue is
// "not found: id".
func (q *Queue) OpenMessage(id string) (*os.File, error) {
	q.mu.Lock()
	_, err := q.lookup([]string{id})
	q.mu.Unlock()
	if err != nil || id == "all" {
		return nil, fmt.Errorf("not found: %s", id)
	}
	f, err := os.Open(q.st.path(id, ".msg"))
	if isNotExist(err) {
		return nil, fmt.Errorf("not found: %s", id)
	}
	return f, err
}

// showAddr shows an envelope address in the log: <> for the null sender.
func showAddr(a string) string {
	if a == "" {
		return "<>"
	}
	return a
}

func addrs(rs []*rcpt) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.addr
	}
	return strings.Join(s, ",")
}

// dueHeap orders the entries waiting for an attempt by their next time.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.hidx = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.hidx = -1
	return e
}

// remove takes e out of the heap if it is there.
func (h *dueHeap) remove(e *entry) {
	if e.hidx >= 0 {
		heap.Remove(h, e.hidx)
	}
}
