package queue

import (
	"container/heap"
	"errors"
	"slices"
	"time"

	"smtpfs/smtp"
)

// The policy, once the sessions of an attempt have ended, recipient by
// recipient:
//
//   - accepted: delivered, dropped from the envelope;
//   - not tried because its destination failed as a whole a moment ago
//     (runq's rule: do not hammer a host that is down): due again when
//     the destination's pause ends, tries unchanged;
//   - failed because the attempt was abandoned (shutdown, Delete):
//     unchanged, as if not tried;
//   - failed permanently (5xx, or an address that cannot be routed):
//     bounced, dropped;
//   - failed temporarily: tries+1 and due again after the backoff for
//     that many tries, but never later than the end of its lifetime; if
//     the lifetime is over, bounced (RFC 5321 §4.5.4.1: give up after 4-5
//     days).
//
// Bounces go to the sender as one RFC 3464 DSN per attempt, queued before
// the envelope drops the recipients, so that a crash in between sends the
// DSN twice rather than never; if the DSN cannot be queued the recipients
// stay, to be bounced on a later attempt. Nothing goes back to the null
// sender <> (RFC 5321 §4.5.5: a DSN is never answered with a DSN). The
// first time recipients are deferred after settings.DelayWarn, the sender
// also gets one DSN with Action: delayed. Each DSN reports only the
// recipients whose NOTIFY asks for it (dsn.go); recipients delivered
// with NOTIFY=SUCCESS get one success DSN per attempt, queued after the
// fact: if that fails, it is logged, and the delivery stands.
func (q *Queue) finish(a *attempt) {
	e, now := a.e, q.clock.Now()
	defer a.cancel()
	q.mu.Lock()
	set := q.set
	q.mu.Unlock()
	var done, failed, delayed []report
	changed := false
	next := map[*rcpt]time.Time{}
	for _, j := range a.jobs {
		for i, r := range j.rcpts {
			if j.notTried {
				continue // held while it waited: as it was
			}
			if !j.skip.IsZero() {
				next[r] = j.skip
				continue
			}
			switch err := j.errs[i]; {
			case err != nil && a.ctx.Err() != nil:
				continue // abandoned
			case err == nil:
				done = append(done, report{r: r, action: j.success()})
				q.log.Printf("sent %s to %s via %s", e.id, r.addr, via(j.dest))
			case !smtp.IsTemporary(err):
				failed = append(failed, report{r: r, err: err, action: "failed"})
				q.log.Printf("bounced %s to %s: %s", e.id, r.addr, errText(err))
			case now.Sub(e.arrived) >= set.Lifetime:
				failed = append(failed, report{r: r, err: err, expired: true, action: "failed"})
				q.log.Printf("bounced %s to %s: expired after %v: %s", e.id, r.addr, set.Lifetime, errText(err))
			default:
				delayed = append(delayed, report{r: r, err: err, action: "delayed"})
				next[r] = minTime(now.Add(set.retryAfter(r.tries+1)), e.arrived.Add(set.Lifetime))
				q.log.Printf("deferred %s to %s: %s", e.id, r.addr, errText(err))
			}
			changed = true
		}
	}
	failed = q.bounce(e, set, now, failed, &delayed, next)
	warned := q.warn(e, set, now, delayed)
	q.succeeded(e, set, now, done)

	e.wmu.Lock()
	defer e.wmu.Unlock()
	q.mu.Lock()
	e.active, e.cancel = false, nil
	q.n.Delivered += int64(len(done))
	q.n.Bounced += int64(len(failed))
	q.n.Deferred += int64(len(delayed))
	if e.deleted {
		q.mu.Unlock()
		return
	}
	for _, d := range delayed {
		d.r.tries++
		d.r.err = errText(d.err)
	}
	for r, t := range next {
		r.next = t
	}
	gone := map[*rcpt]bool{}
	for _, d := range slices.Concat(done, failed) {
		gone[d.r] = true
	}
	e.rcpts = slices.DeleteFunc(e.rcpts, func(r *rcpt) bool { return gone[r] })
	e.warned = e.warned || warned
	e.schedule()
	snap, empty := e.envelope.clone(), len(e.rcpts) == 0
	q.mu.Unlock()

	var err error
	switch {
	case empty:
		if err = q.st.remove(e.id); err == nil {
			q.log.Printf("done %s", e.id)
		}
	case changed || warned:
		err = q.st.writeEnv(e.id, snap.marshal())
	}
	if err != nil {
		q.log.Printf("error %s: %v", e.id, err)
	}
	q.mu.Lock()
	if empty {
		delete(q.msgs, e.id)
		q.gen.Add(1)
	} else if !e.held {
		heap.Push(&q.due, e)
	}
	q.mu.Unlock()
}

// bounce queues the DSN for the failed recipients and returns those that
// are bounced. If the DSN cannot be queued, they are deferred instead.
func (q *Queue) bounce(e *entry, set Settings, now time.Time, failed []report, delayed *[]report, next map[*rcpt]time.Time) []report {
	if len(failed) == 0 {
		return nil
	}
	if e.from == "" {
		q.log.Printf("no dsn for %s: the sender is <>", e.id)
		return failed
	}
	tell := notified(failed)
	if len(tell) == 0 {
		q.log.Printf("no dsn for %s: NOTIFY does not ask for failures", e.id)
		return failed
	}
	if err := q.sendDSN(e, set, now, "failed", tell); err != nil {
		q.log.Printf("error %s: queueing the dsn: %v; will try again", e.id, err)
		for _, f := range failed {
			*delayed = append(*delayed, f)
			next[f.r] = now.Add(set.retryAfter(f.r.tries + 1))
		}
		return nil
	}
	return failed
}

// warn sends the delay warning, once per message, and reports whether it
// did.
func (q *Queue) warn(e *entry, set Settings, now time.Time, delayed []report) bool {
	if len(delayed) == 0 || e.warned || e.from == "" || set.DelayWarn == 0 || now.Sub(e.arrived) < set.DelayWarn {
		return false
	}
	tell := notified(delayed)
	if len(tell) == 0 {
		return false // nobody asked: a later deferral may have someone who does
	}
	if err := q.sendDSN(e, set, now, "delayed", tell); err != nil {
		q.log.Printf("error %s: queueing the delay warning: %v", e.id, err)
		return false
	}
	return true
}

// succeeded sends the success DSN for the recipients delivered that
// asked NOTIFY=SUCCESS.
func (q *Queue) succeeded(e *entry, set Settings, now time.Time, done []report) {
	tell := notified(done)
	if len(tell) == 0 || e.from == "" {
		return
	}
	if err := q.sendDSN(e, set, now, "success", tell); err != nil {
		q.log.Printf("error %s: queueing the success dsn: %v; not retried: the message was delivered", e.id, err)
	}
}

// success is the Action of a success DSN for a recipient j delivered:
// delivered for a local one, relayed for one whose next hop did not
// offer DSN, "" (none: the next hop reports) for one whose did.
func (j *job) success() string {
	switch {
	case j.dest == "":
		return "delivered"
	case !j.dsn:
		return "relayed"
	}
	return ""
}

// errText is an error as the envelope, the log and the DSN show it: the
// SMTP reply when there is one, cleaned.
func errText(err error) string {
	var r *smtp.Reply
	if errors.As(err, &r) {
		return clean(r.Error())
	}
	return clean(err.Error())
}

func via(dest string) string {
	if dest == "" {
		return "local"
	}
	return dest
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
