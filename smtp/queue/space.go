package queue

import (
	"errors"
	"time"

	"smtpfs/smtp"
)

// ErrInsufficientStorage is what Put, Submit and CheckSpace return while
// the queue's file system has less free space than Settings.MinFree: a
// temporary failure, RFC 5321 §4.2.2's 452 with RFC 3463's 4.3.1 (mail
// system full), which the SMTP server can send as it is and the client
// retries later. Nothing of the message is written.
var ErrInsufficientStorage = smtp.Replyf(452, "4.3.1", "insufficient system storage")

// errNoStatfs: this system does not tell the free space.
var errNoStatfs = errors.New("free space unknown on this system")

// lowLogEvery is how often a refusal for want of room is logged: a
// server refusing every message must not fill what is left with lines.
const lowLogEvery = time.Minute

// CheckSpace returns ErrInsufficientStorage while the queue's file system
// has less free space than Settings.MinFree, else nil; nil too when the
// free space cannot be told (a write that fails for want of room still
// fails). Put and Submit call it first; the 9P queue file calls it as soon
// as a message's header is complete, so that the write a shell sees fails.
// DSNs are not held to it: one is small, and the DSN of a failed message
// lets the message go.
func (q *Queue) CheckSpace() error {
	q.mu.Lock()
	minFree := q.set.MinFree
	q.mu.Unlock()
	if minFree <= 0 {
		return nil
	}
	free, err := q.st.free()
	if err != nil || free >= minFree {
		return nil
	}
	now := q.clock.Now().UnixNano()
	if last := q.lowLogged.Load(); now-last >= int64(lowLogEvery) && q.lowLogged.CompareAndSwap(last, now) {
		q.log.Printf("refused a message: %d bytes free on the queue's file system, minfree %d", free, minFree)
	}
	return ErrInsufficientStorage
}
