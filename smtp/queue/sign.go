package queue

import (
	"bytes"
	"io"
)

// Signing: the messages the queue makes itself, those written to the 9P
// queue file (Submit) and its delivery status notifications, are signed
// with DKIM before they are stored, when a Signer is set: the queue holds
// them signed, as sent. What Put is given comes signed or not from its
// caller (the server signs what trusted clients send).

// A Signer returns the DKIM-Signature fields to put on top of a message
// (each ending in CRLF), nil when none of our keys signs for its From
// domain. A message it cannot sign is queued unsigned, and the runq log
// says why.
type Signer interface {
	Sign(msg io.Reader) ([]byte, error)
}

// SetSigner sets the Signer of Submit and the DSNs; nil signs nothing.
func (q *Queue) SetSigner(s Signer) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.signer = s
}

// signed returns msg with its signatures on top, if the Signer gives any.
func (q *Queue) signed(msg []byte) io.Reader {
	q.mu.Lock()
	s := q.signer
	q.mu.Unlock()
	if s == nil {
		return bytes.NewReader(msg)
	}
	sigs, err := s.Sign(bytes.NewReader(msg))
	if err != nil {
		q.log.Printf("not DKIM-signed: %v", err)
	}
	if len(sigs) == 0 {
		return bytes.NewReader(msg)
	}
	return io.MultiReader(bytes.NewReader(sigs), bytes.NewReader(msg))
}
