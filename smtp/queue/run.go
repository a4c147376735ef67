package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"smtpfs/smtp"
)

// maxSessionRcpts is the most recipients one session carries; more are
// split over several. RFC 5321 §4.5.3.1.8: a server must take at least
// 100 per transaction.
const maxSessionRcpts = 100

// An attempt is one try of the due recipients of a message: a job per
// destination (a session each), finished when the last job ends.
type attempt struct {
	e      *entry
	run    context.Context // Run's: done means shutdown
	ctx    context.Context // the attempt's: Delete cancels it
	cancel context.CancelFunc
	jobs   []*job
	left   int // jobs not finished, under q.mu
}

// A job is one session: the recipients of a message at one destination.
type job struct {
	a     *attempt
	dest  string   // dial string; "" for local delivery
	rcpts []*rcpt  // the recipients
	users []string // for local delivery: their users
	errs  []error  // outcome per recipient, set when the job ends
	skip  time.Time
}

// Run delivers the queue until ctx is done, then waits for the sessions
// under way, which see ctx done and end; whatever they had not finished
// stays queued as it was on disk. Only one runner works on a directory
// at a time: Run waits for the lock of the directory if another process
// holds it. Every 30 seconds it looks for records that other processes
// (cmd/smtpd) wrote.
func (q *Queue) Run(ctx context.Context) error {
	if q.writer || q.deliver == nil {
		return errors.New("queue: no runner: opened for writing only or without a deliverer")
	}
	unlock, err := q.runnerLock(ctx)
	if err != nil || unlock == nil {
		return err
	}
	defer unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	var pending []*job
	rescan := q.clock.After(q.rescanEvery)
	for ctx.Err() == nil {
		now := q.clock.Now()
		pending = q.take(ctx, now, pending)
		pending = q.start(now, pending, &wg)
		var timer <-chan time.Time
		if d, ok := q.untilDue(now); ok && len(pending) == 0 {
			timer = q.clock.After(d)
		}
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-timer:
		case <-rescan:
			if _, err := q.rescan(true); err != nil {
				q.log.Printf("rescan: %v", err)
			}
			rescan = q.clock.After(q.rescanEvery)
		}
	}
	q.drop(pending)
	return nil
}

// runnerLock takes the directory's runner lock, waiting while another
// process has it. It returns a nil unlock if ctx ends first.
func (q *Queue) runnerLock(ctx context.Context) (func(), error) {
	for said := false; ; said = true {
		unlock, ok, err := q.st.lockRunner()
		if err != nil || ok {
			return unlock, err
		}
		if !said {
			q.log.Printf("another runner has %s; waiting", q.st.dir)
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-q.clock.After(q.rescanEvery):
		}
	}
}

// untilDue returns how long until the soonest message not under way is due.
func (q *Queue) untilDue(now time.Time) (time.Duration, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.due) == 0 {
		return 0, false
	}
	return max(q.due[0].next.Sub(now), 0), true
}

// take starts attempts of the messages that are due, as long as fewer
// sessions than the limit wait for a slot, and returns the jobs waiting.
func (q *Queue) take(run context.Context, now time.Time, pending []*job) []*job {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.due) > 0 && !q.due[0].next.After(now) && len(pending) < q.set.Deliveries {
		e := heap.Pop(&q.due).(*entry)
		a := &attempt{e: e, run: run}
		a.ctx, a.cancel = context.WithCancel(run)
		a.jobs = q.set.jobs(a, now)
		if len(a.jobs) == 0 { // nothing due after all
			a.cancel()
			e.schedule()
			heap.Push(&q.due, e)
			continue
		}
		a.left = len(a.jobs)
		e.active, e.cancel = true, a.cancel
		pending = append(pending, a.jobs...)
	}
	return pending
}

// jobs groups the due recipients of a.e by destination: one job for the
// local ones, one per destination domain (or one for the smarthost), at
// most maxSessionRcpts each; a recipient that cannot be routed gets a job
// that fails at once.
func (s Settings) jobs(a *attempt, now time.Time) []*job {
	byDest := map[string]*job{}
	var jobs []*job
	for _, r := range a.e.rcpts {
		if r.next.After(now) {
			continue
		}
		dest, user, err := s.route(r.addr)
		if err != nil {
			jobs = append(jobs, &job{a: a, rcpts: []*rcpt{r}, errs: []error{err}})
			continue
		}
		key := "@" + dest
		j := byDest[key]
		if j == nil || len(j.rcpts) >= maxSessionRcpts {
			j = &job{a: a, dest: dest}
			byDest[key] = j
			jobs = append(jobs, j)
		}
		j.rcpts = append(j.rcpts, r)
		if dest == "" {
			j.users = append(j.users, user)
		}
	}
	return jobs
}

// route says where addr goes: dest "" and the user for a local address,
// else the dial string of its destination.
func (s Settings) route(addr string) (dest, user string, err error) {
	if s.IsLocal != nil {
		if u, ok := s.IsLocal(addr); ok {
			return "", u, nil
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return "", "", smtp.Replyf(550, "5.1.3", "invalid address %s: no domain", addr)
	}
	if s.SmartHost != "" {
		return s.SmartHost, "", nil
	}
	dom := strings.TrimSuffix(strings.ToLower(addr[at+1:]), ".")
	if strings.HasPrefix(dom, "[") {
		// RFC 5321 §4.1.3: [1.2.3.4] or [IPv6:2001:db8::1], in the
		// canonical form the client dials without MX.
		lit := smtp.AddressLiteral(dom)
		if lit == "" {
			return "", "", smtp.Replyf(550, "5.1.3", "invalid address %s: bad address literal", addr)
		}
		return lit, "", nil
	}
	return dom, "", nil
}

// dest is route's destination, "" for local or unroutable addresses.
func (s Settings) dest(addr string) string {
	d, _, _ := s.route(addr)
	return d
}

// start starts waiting jobs while there are free session slots. A job
// for a destination that failed lately, or for an unroutable recipient,
// needs no slot: it ends at once.
func (q *Queue) start(now time.Time, pending []*job, wg *sync.WaitGroup) []*job {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(pending) > 0 {
		j := pending[0]
		until, down := q.down[j.dest]
		switch {
		case j.errs != nil:
		case j.dest != "" && down && now.Before(until):
			j.skip = until
		case q.active >= q.set.Deliveries:
			return pending
		default:
			q.active++
			wg.Add(1)
			go func() {
				defer wg.Done()
				q.session(j)
			}()
			pending = pending[1:]
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.jobDone(j)
		}()
		pending = pending[1:]
	}
	return pending
}

// drop gives the messages of jobs that never started back to the heap.
func (q *Queue) drop(pending []*job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, j := range pending {
		a := j.a
		a.left--
		if a.left == 0 {
			a.cancel()
			a.e.active, a.e.cancel = false, nil
			if !a.e.held && !a.e.deleted {
				heap.Push(&q.due, a.e)
			}
		}
	}
}

// session runs a job: one delivery to its destination.
func (q *Queue) session(j *job) {
	defer func() {
		q.mu.Lock()
		q.active--
		q.mu.Unlock()
		q.jobDone(j)
	}()
	addrs := make([]string, len(j.rcpts))
	for i, r := range j.rcpts {
		addrs[i] = r.addr
	}
	var errs []error
	f, err := os.Open(q.st.path(j.a.e.id, ".msg"))
	if err == nil {
		switch {
		case j.dest != "":
			errs, err = q.deliver.Deliver(j.a.ctx, j.dest, j.a.e.from, addrs, f)
		case q.local == nil:
			err = smtp.Replyf(451, "4.3.5", "no local delivery configured")
		default:
			err = q.local.Deliver(j.a.ctx, j.a.e.from, j.users, f)
		}
		f.Close()
	}
	if err == nil && errs != nil && len(errs) != len(addrs) {
		err = fmt.Errorf("deliverer gave %d results for %d recipients", len(errs), len(addrs))
	}
	j.errs = make([]error, len(addrs))
	for i := range j.errs {
		if err != nil {
			j.errs[i] = err
		} else if errs != nil {
			j.errs[i] = errs[i]
		}
	}
	if err != nil && smtp.IsTemporary(err) && j.dest != "" && j.a.run.Err() == nil {
		// Pause the destination for the shortest first backoff (its
		// jitter's low end), so that the recipients deferred here
		// find it open again when they come due.
		q.mu.Lock()
		b, now := q.set.Backoff[0], q.clock.Now()
		q.rest(j.dest, now.Add(b-b/10), now)
		q.mu.Unlock()
	}
}

// rest pauses dest until then, and forgets the pauses that are over, so
// that the map holds only destinations that failed within the first
// backoff step, not every domain that ever failed. q.mu held.
func (q *Queue) rest(dest string, until, now time.Time) {
	for d, t := range q.down {
		if !now.Before(t) {
			delete(q.down, d)
		}
	}
	q.down[dest] = until
}

// jobDone counts a job as ended, and finishes its attempt after the last.
func (q *Queue) jobDone(j *job) {
	q.mu.Lock()
	j.a.left--
	last := j.a.left == 0
	q.mu.Unlock()
	if last {
		q.finish(j.a)
		if q.afterFinish != nil {
			q.afterFinish(j.a.e.id)
		}
	}
	q.poke()
}
