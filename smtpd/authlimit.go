package smtpd

import (
	"net/netip"
	"sync"
	"time"
)

// The AUTH failure limit across sessions: a client (clientNet: an IPv4
// address or an IPv6 /64) that fails authFailMax times within
// authFailWindow may not try again for authLockout, whatever its
// sessions. With the three tries a session allows (maxAuthFails), that
// leaves a guesser about a thousand tries a day from each address, not
// as many as it can open sessions. Clients in ournets are not limited.
const (
	authFailMax    = 10
	authFailWindow = 10 * time.Minute
	authLockout    = 15 * time.Minute
	// authClients bounds the clients remembered: past it, those whose
	// window and lockout are over are forgotten, then any.
	authClients = 10000
)

// An authLimiter counts failed AUTH per client. Its zero value is ready.
type authLimiter struct {
	mu sync.Mutex
	m  map[netip.Prefix]*authRecord
}

type authRecord struct {
	n     int       // failures since since
	since time.Time // start of the window
	until time.Time // locked out until then
}

// locked reports whether client may not try AUTH at now.
func (l *authLimiter) locked(client netip.Prefix, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[client]
	return r != nil && now.Before(r.until)
}

// failed counts a failure of client at now, and reports whether it
// locked the client out.
func (l *authLimiter) failed(client netip.Prefix, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[client]
	if r == nil {
		if l.m == nil {
			l.m = map[netip.Prefix]*authRecord{}
		}
		l.makeRoom(now)
		r = &authRecord{since: now}
		l.m[client] = r
	}
	if now.Sub(r.since) > authFailWindow {
		r.n, r.since = 0, now
	}
	if r.n++; r.n < authFailMax {
		return false
	}
	r.n, r.since, r.until = 0, now, now.Add(authLockout)
	return true
}

// makeRoom keeps the map under authClients. When it is full, it forgets
// the clients whose window and lockout are over, then, down to nine tenths
// of authClients (so that the next full sweep is far off: a crowd of
// failing clients costs little each), clients not locked out, and only if
// that is not enough, any.
func (l *authLimiter) makeRoom(now time.Time) {
	if len(l.m) < authClients {
		return
	}
	for k, r := range l.m {
		if now.Sub(r.since) > authFailWindow && !now.Before(r.until) {
			delete(l.m, k)
		}
	}
	for _, spare := range []func(*authRecord) bool{
		func(r *authRecord) bool { return !now.Before(r.until) },
		func(*authRecord) bool { return true },
	} {
		for k, r := range l.m {
			if len(l.m) <= authClients*9/10 {
				return
			}
			if spare(r) {
				delete(l.m, k)
			}
		}
	}
}
