package smtpd

import (
	"net/netip"
	"time"

	"smtpfs/smtpd/authfail"
)

// An AuthLimiter counts failed AUTH per client (clientNet) across
// sessions, and locks a client out after too many (package authfail: 10
// within 10 minutes lock it out for 15). The server asks Locked when AUTH
// starts and again when the answer is judged, and calls Failed for each
// failure. A limiter that fails (its store cannot be read or written)
// returns an error; the server logs it and goes on as if the client had no
// failures: the three tries of a session and the tarpit still hold, and
// nobody is locked out of AUTH by a broken disk.
type AuthLimiter interface {
	Locked(client netip.Prefix, now time.Time) (bool, error)
	Failed(client netip.Prefix, now time.Time) (locked bool, err error)
}

// authLocked reports whether the session's client is locked out of AUTH.
func (s *session) authLocked() bool {
	locked, err := s.srv.auths.Locked(clientNet(s.remote), s.srv.Now())
	if err != nil {
		s.logf("AUTH failures of %s: %v", clientName(s.remote), err)
	}
	return locked && err == nil
}

// authFailed counts a failure of the session's client.
func (s *session) authFailed() {
	locked, err := s.srv.auths.Failed(clientNet(s.remote), s.srv.Now())
	switch {
	case err != nil:
		s.logf("AUTH failures of %s: %v", clientName(s.remote), err)
	case locked:
		s.logf("AUTH from %s refused for %v after %d failures", clientName(s.remote), authfail.Lockout, authfail.Max)
	}
}
