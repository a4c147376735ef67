// Package authfail counts failed AUTH per client across sessions, for the
// SMTP server's lockout: a client that fails Max times within Window may
// not try again for Lockout. A client is a netip.Prefix (the server's
// choice: an IPv4 address or an IPv6 /64).
//
// Memory keeps the counts of one process. File keeps them in one file of
// the mail root, so that the smtpd program, run once per session by
// inetd, and smtpfs on the same root add up to one count. Both answer
// the server's AuthLimiter interface; a Redis store would be a third.
//
// Success does not clear a client's count: a guesser who has one account
// of its own could otherwise log in with it between guesses at another's
// and never be locked out.
package authfail

import "time"

// The policy. With the three tries a session allows, it leaves a guesser
// about a thousand tries a day from each client, not as many as it can
// open sessions.
const (
	Max     = 10               // failures that lock a client out
	Window  = 10 * time.Minute // within which they must fall, from the first
	Lockout = 15 * time.Minute // how long the client may not try
)

// A record is the count of one client.
type record struct {
	n     int       // failures since since
	since time.Time // start of the window
	until time.Time // locked out until then
}

// locked reports whether r locks its client out at now.
func (r *record) locked(now time.Time) bool { return now.Before(r.until) }

// stale reports whether r says nothing any more at now: its window and its
// lockout are over.
func (r *record) stale(now time.Time) bool {
	return now.Sub(r.since) > Window && !r.locked(now)
}

// fail counts a failure at now, and reports whether it locked the client
// out: the window starts again once over, and the Max-th failure within it
// starts a lockout and a new window.
func (r *record) fail(now time.Time) bool {
	if now.Sub(r.since) > Window {
		r.n, r.since = 0, now
	}
	if r.n++; r.n < Max {
		return false
	}
	r.n, r.since, r.until = 0, now, now.Add(Lockout)
	return true
}
