package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
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
	// notTried: the job ended without a session because its message
	// was held while it waited; its recipients stay as they were.
	notTried bool
	dsn      bool // the next hop offered DSN (smtp.Outcome): it reports success itself
}

// The runner's fairness. A job waits in its destination's line until a
// session slot is free both in all (Settings.Deliveries) and at its
// destination (Settings.DestConcurrency); the lines take turns, one job
// each, so the jobs of other destinations pass a destination that is
// full, and a slow one holds its share of the slots, never all of them.
// Due messages are taken from the heap while fewer jobs than Deliveries
// could start at once; jobs waiting at a full destination do not count,
// so the messages queued behind them are taken too. A job needs no slot
// when it fails at once (an unroutable recipient), when its destination
// rests, or when its message was held or deleted while it waited. Every
// session is bounded as a whole by Settings.DeliveryTimeout.
//
// A message whose jobs go to several destinations finishes when the last
// ends: one waiting long at a busy destination keeps the others'
// outcomes out of the envelope until then (a crash meanwhile delivers
// them twice, never loses them).

// A dest is the runner's bookkeeping for one destination: its sessions
// under way and its jobs waiting for one, oldest first. A session that
// carried several messages would take them from waiting.
type dest struct {
	name    string // dial string; "" for local delivery
	active  int    // sessions under way
	idle    int    // sessions kept open for the next job (Queue.idle)
	waiting []*job
	served  bool // a session started in this round of start
}

// Session reuse. With an Opener, a session that has delivered a job
// takes the next one waiting at its destination, as long as it has
// carried fewer than SessionMsgs, its connection works, the destination
// does not rest, and no other destination waits for a slot that all
// sessions hold (Deliveries): the slot is then given back, so that
// reuse never takes turns from others. A session with nothing more to
// carry is kept open for SessionIdle, holding no slot (parked), and the
// next job to its destination starts on it; a session opened while
// sessions are parked and every slot is taken closes the oldest parked
// one. So the connections open at once stay within DestConcurrency per
// destination (a parked session is taken before a new one is opened)
// and Deliveries in all. Parked sessions are closed when Run ends. Each
// message's delivery is bounded by DeliveryTimeout on its own.

// A parked session waits, idle, for the next job to its destination.
type parked struct {
	d     *dest
	cn    *smtp.Conn
	gone  chan struct{} // closed when taken or evicted
	taken bool          // a job has it: not to be closed
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
	rescan := q.clock.After(q.rescanEvery)
	for ctx.Err() == nil {
		now := q.clock.Now()
		q.take(ctx, now, &wg)
		blocked := q.start(now, &wg)
		var timer <-chan time.Time
		if d, ok := q.untilDue(now); ok && !blocked {
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
	q.drop(&wg)
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
// jobs than Deliveries could start at once, and puts their jobs in the
// lines of their destinations (or ends them, if they need no session).
func (q *Queue) take(run context.Context, now time.Time, wg *sync.WaitGroup) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var ended []*job
	for len(q.due) > 0 && !q.due[0].next.After(now) && q.ready() < q.set.Deliveries {
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
		for _, j := range a.jobs {
			if j.errs != nil || q.resting(j, now) {
				ended = append(ended, j)
				continue
			}
			d := q.line(j.dest)
			d.waiting = append(d.waiting, j)
		}
	}
	q.end(ended, wg)
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
	// An SMTPUTF8 address may name its domain in U-labels (RFC 6531
	// §3.2); the MX lookup and the bookkeeping by destination use the
	// A-label. The address itself is sent as it was written.
	a, err := smtp.ALabel(dom)
	if err != nil {
		return "", "", smtp.Replyf(550, "5.1.2", "invalid address %s: %v", addr, err)
	}
	return a, "", nil
}

// dest is route's destination, "" for local or unroutable addresses.
func (s Settings) dest(addr string) string {
	d, _, _ := s.route(addr)
	return d
}

// line returns the bookkeeping of destination name, making it, and
// putting it last in the turn if it has no job waiting. q.mu held.
func (q *Queue) line(name string) *dest {
	d := q.dests[name]
	if d == nil {
		d = &dest{name: name}
		q.dests[name] = d
	}
	if len(d.waiting) == 0 {
		q.lines = append(q.lines, d)
	}
	return d
}

// room returns how many more sessions d may have at once: local delivery
// is bounded by Deliveries alone. q.mu held.
func (q *Queue) room(d *dest) int {
	if d.name == "" {
		return q.set.Deliveries - d.active
	}
	return q.set.DestConcurrency - d.active
}

// ready returns how many waiting jobs could start if there were slots
// enough in all. q.mu held.
func (q *Queue) ready() int {
	n := 0
	for _, d := range q.lines {
		n += min(len(d.waiting), max(q.room(d), 0))
	}
	return n
}

// resting reports whether j's destination failed as a whole lately, and
// if so marks j to be tried again when its rest is over. q.mu held.
func (q *Queue) resting(j *job, now time.Time) bool {
	until, down := q.down[j.dest]
	if j.dest == "" || !down || !now.Before(until) {
		return false
	}
	j.skip = until
	return true
}

// start starts waiting jobs while there are free session slots, the
// lines taking turns, one job each, those served last time last. A job whose message was deleted or
// held while it waited, or whose destination rests now, ends without a
// session. start reports whether jobs that could start are left waiting
// for a slot in all: a session's end will wake the runner.
func (q *Queue) start(now time.Time, wg *sync.WaitGroup) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	var ended []*job
	var served []*dest
	for turn := true; turn && q.active < q.set.Deliveries; {
		turn = false
		for _, d := range q.lines {
			j := q.next(d, now, &ended)
			if j == nil {
				continue
			}
			q.launch(d, j, wg)
			if !d.served {
				d.served = true
				served = append(served, d)
			}
			if turn = true; q.active >= q.set.Deliveries {
				break
			}
		}
	}
	// The lines served go last, in the order served, and those emptied
	// leave.
	q.lines = slices.DeleteFunc(q.lines, func(d *dest) bool { return d.served })
	q.lines = append(q.lines, served...)
	q.lines = slices.DeleteFunc(q.lines, func(d *dest) bool {
		d.served = false
		if len(d.waiting) > 0 {
			return false
		}
		d.waiting = nil
		q.forget(d)
		return true
	})
	q.end(ended, wg)
	return q.ready() > 0
}

// next takes the job of line d to start now, if any: nil if d is full or
// empty. The jobs that need no session on the way are added to ended.
// q.mu held.
func (q *Queue) next(d *dest, now time.Time, ended *[]*job) *job {
	for len(d.waiting) > 0 {
		if q.resting(d.waiting[0], now) {
			for _, j := range d.waiting[1:] {
				j.skip = d.waiting[0].skip
			}
			*ended = append(*ended, d.waiting...)
			clear(d.waiting)
			d.waiting = d.waiting[:0]
			return nil
		}
		if q.room(d) <= 0 {
			return nil
		}
		j := d.waiting[0]
		d.waiting[0] = nil
		d.waiting = d.waiting[1:]
		switch {
		case j.a.ctx.Err() != nil: // deleted, or shutting down
			j.errs = fillErr(len(j.rcpts), j.a.ctx.Err())
		case j.a.e.held:
			j.notTried = true
		default:
			return j
		}
		*ended = append(*ended, j)
	}
	return nil
}

func fillErr(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// launch starts a session for j, on a parked session to its destination
// if there is one. q.mu held.
func (q *Queue) launch(d *dest, j *job, wg *sync.WaitGroup) {
	cn := q.unpark(d)
	if cn == nil && len(q.idle) > 0 && q.active+len(q.idle) >= q.set.Deliveries {
		q.evict(q.idle[0])
	}
	q.active++
	d.active++
	wg.Add(1)
	go func() {
		defer wg.Done()
		q.session(d, j, cn, wg)
	}()
}

// park keeps cn open for the next job to d, for SessionIdle at most, or
// until Run ends. q.mu held.
func (q *Queue) park(d *dest, cn *smtp.Conn, run context.Context, wg *sync.WaitGroup) {
	p := &parked{d: d, cn: cn, gone: make(chan struct{})}
	q.idle = append(q.idle, p)
	d.idle++
	timer := q.clock.After(q.set.SessionIdle)
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-timer:
		case <-run.Done():
		case <-p.gone:
		}
		q.mu.Lock()
		q.unlink(p)
		taken := p.taken
		q.forget(d)
		q.mu.Unlock()
		if !taken {
			cn.Close()
		}
	}()
}

// unpark takes the session parked last for d, if any. q.mu held.
func (q *Queue) unpark(d *dest) *smtp.Conn {
	for i := len(q.idle) - 1; i >= 0; i-- {
		if p := q.idle[i]; p.d == d {
			p.taken = true
			q.unlink(p)
			close(p.gone)
			return p.cn
		}
	}
	return nil
}

// evict closes parked session p (its goroutine does). q.mu held.
func (q *Queue) evict(p *parked) {
	if q.unlink(p) {
		close(p.gone)
	}
}

// unlink removes p from the parked sessions, reporting whether it was
// there. q.mu held.
func (q *Queue) unlink(p *parked) bool {
	i := slices.Index(q.idle, p)
	if i < 0 {
		return false
	}
	q.idle = slices.Delete(q.idle, i, i+1)
	p.d.idle--
	return true
}

// forget drops the bookkeeping of d when nothing is under way, parked or
// waiting there. q.mu held.
func (q *Queue) forget(d *dest) {
	if d.active == 0 && d.idle == 0 && len(d.waiting) == 0 && q.dests[d.name] == d {
		delete(q.dests, d.name)
	}
}

// end finishes jobs that needed no session, one after another in a
// goroutine of their own: a bounce may have to be queued. q.mu held.
func (q *Queue) end(jobs []*job, wg *sync.WaitGroup) {
	if len(jobs) == 0 {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, j := range jobs {
			q.jobDone(j)
		}
	}()
}

// drop ends the jobs that never started as abandoned: their recipients
// stay as they were.
func (q *Queue) drop(wg *sync.WaitGroup) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var ended []*job
	for _, d := range q.lines {
		for _, j := range d.waiting {
			j.errs = fillErr(len(j.rcpts), context.Canceled)
			ended = append(ended, j)
		}
		d.waiting = nil
		q.forget(d)
	}
	q.lines = nil
	q.end(ended, wg)
}

// session runs job j at destination d, on cn if it is not nil, then the
// jobs that follow it on the same session (follow). A session that ends
// closes its connection before it gives its slot back, so that the
// connections open to d never outnumber DestConcurrency.
func (q *Queue) session(d *dest, j *job, cn *smtp.Conn, wg *sync.WaitGroup) {
	for j != nil {
		cn = q.deliverJob(j, cn)
		next, parked := q.follow(d, j.a.run, cn, wg)
		if next == nil && !parked {
			if cn != nil {
				cn.Close()
			}
			q.mu.Lock()
			q.active--
			d.active--
			q.forget(d)
			q.mu.Unlock()
		}
		q.jobDone(j)
		j = next
	}
}

// follow gives the session at d that has just delivered a job over cn
// its next job; or, when there is none to take, parks cn, giving the
// session's slot back, if it may be kept. q.mu held.
func (q *Queue) follow(d *dest, run context.Context, cn *smtp.Conn, wg *sync.WaitGroup) (next *job, parked bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	until, down := q.down[d.name]
	open := cn != nil && cn.Usable() && cn.Messages() < q.set.SessionMsgs && run.Err() == nil &&
		(!down || !q.clock.Now().Before(until))
	if !open {
		return nil, false
	}
	if j := q.carry(d, cn); j != nil {
		return j, false
	}
	if q.active-1+len(q.idle) >= q.set.Deliveries {
		return nil, false
	}
	q.active--
	d.active--
	q.park(d, cn, run, wg)
	return nil, true
}

// carry takes the job waiting at d that cn should carry next: among the
// oldest few, the first whose message is neither held nor deleted and
// that cn can carry (smtp.Conn.CanCarry). It takes none when other
// destinations wait for a slot and every slot is taken. q.mu held.
func (q *Queue) carry(d *dest, cn *smtp.Conn) *job {
	if q.active >= q.set.Deliveries && q.ready() > min(len(d.waiting), max(q.room(d), 0)) {
		return nil
	}
	for i, j := range d.waiting[:min(len(d.waiting), 16)] {
		if j.a.ctx.Err() != nil || j.a.e.held || !cn.CanCarry(j.mail()) {
			continue
		}
		d.waiting = slices.Delete(d.waiting, i, i+1)
		if len(d.waiting) == 0 {
			q.lines = slices.DeleteFunc(q.lines, func(x *dest) bool { return x == d })
		}
		return j
	}
	return nil
}

// mail is the envelope of j's message as it leaves: its recipients,
// and the message's and their parameters.
func (j *job) mail() smtp.Mail {
	addrs := make([]string, len(j.rcpts))
	mail := smtp.Mail{From: j.a.e.from, Params: j.a.e.params}
	mail.Rcpt = make([]smtp.RcptParams, len(j.rcpts))
	for i, r := range j.rcpts {
		addrs[i], mail.Rcpt[i] = r.addr, r.dsn
	}
	mail.Rcpts = addrs
	return mail
}

// deliverJob makes one delivery of j: to its remote destination over cn
// (with an Opener: a new session if cn is nil or cannot carry the
// message), or through the Deliverer, or locally. Each remote delivery
// is bounded on its own by DeliveryTimeout. It returns the session to
// carry the next job, nil if none.
func (q *Queue) deliverJob(j *job, cn *smtp.Conn) *smtp.Conn {
	m := j.mail()
	var errs []error
	f, err := os.Open(q.st.path(j.a.e.id, ".msg"))
	if err == nil {
		switch {
		case j.dest != "":
			q.mu.Lock()
			limit := q.set.DeliveryTimeout
			q.mu.Unlock()
			ctx, stop := q.bound(j.a.ctx, limit)
			opener, reuse := q.deliver.(Opener)
			if cn != nil && !cn.CanCarry(m) {
				cn.Close()
				cn = nil
			}
			switch {
			case !reuse:
				errs, j.dsn, err = q.send(ctx, j.dest, m, f)
			case cn == nil:
				if cn, err = opener.Open(ctx, j.dest, m); err == nil {
					errs, j.dsn, err = sendOn(ctx, cn, m, f)
				}
			default:
				errs, j.dsn, err = sendOn(ctx, cn, m, f)
			}
			err = q.cut(ctx, j, err)
			stop()
		case q.local == nil:
			err = smtp.Replyf(451, "4.3.5", "no local delivery configured")
		default:
			err = q.local.Deliver(j.a.ctx, j.a.e.from, j.users, f)
		}
		f.Close()
	}
	if err == nil && errs != nil && len(errs) != len(m.Rcpts) {
		err = fmt.Errorf("deliverer gave %d results for %d recipients", len(errs), len(m.Rcpts))
	}
	j.errs = make([]error, len(m.Rcpts))
	for i := range j.errs {
		if err != nil {
			j.errs[i] = err
		} else if errs != nil {
			j.errs[i] = errs[i]
		}
	}
	if err != nil && smtp.IsTemporary(err) && j.dest != "" && j.a.ctx.Err() == nil {
		// Pause the destination for the shortest first backoff (its
		// jitter's low end), so that the recipients deferred here
		// find it open again when they come due.
		q.mu.Lock()
		b, now := q.set.Backoff[0], q.clock.Now()
		q.rest(j.dest, now.Add(b-b/10), now)
		q.mu.Unlock()
	}
	return cn
}

// A cutError is the failure of a session that outlived deliverytimeout:
// temporary, as any failure that is not a 5xx.
type cutError struct{ limit time.Duration }

func (e *cutError) Error() string {
	return fmt.Sprintf("session cut after %v (deliverytimeout)", e.limit)
}

// bound returns a context for one session: parent's, ended after limit
// on the queue's clock with a *cutError as its cause. Call stop when the
// session is over.
func (q *Queue) bound(parent context.Context, limit time.Duration) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	over, timer := make(chan struct{}), q.clock.After(limit)
	go func() {
		select {
		case <-timer:
			cancel(&cutError{limit})
		case <-over:
		}
	}()
	return ctx, func() {
		close(over)
		cancel(nil)
	}
}

// cut returns the failure err of j's session, made to say that the
// session was cut if it was (the client engine names the cause itself;
// a failure from elsewhere, DNS say, gets it in front), and logs the cut.
func (q *Queue) cut(ctx context.Context, j *job, err error) error {
	var c *cutError
	if err == nil || j.a.ctx.Err() != nil || !errors.As(context.Cause(ctx), &c) {
		return err
	}
	q.log.Printf("cut %s at %s after %v (deliverytimeout)", j.a.e.id, j.dest, c.limit)
	if errors.As(err, new(*cutError)) {
		return err
	}
	return fmt.Errorf("%v: %v", c, err)
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
