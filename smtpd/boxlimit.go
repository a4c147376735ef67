package smtpd

import (
	"net/netip"
	"sync"
	"time"
)

// The new-box limit across sessions (mkbox on). One message may make at
// most maxNewBoxes boxes; besides, a client neither trusted nor
// authenticated (clientNet: an IPv4 address or an IPv6 /64) may make at
// most mkboxperhour in an hour, counted from its first, whatever its
// sessions and messages. Past it a new user gets a temporary refusal,
// errBoxRate, not upas's "user unknown": the user may be real, and the
// client's next try an hour on makes the box, where a 550 would bounce
// the mail for good. Boxes are counted at RCPT, so that concurrent
// sessions cannot pass the limit together, and given back when the
// transaction ends without a delivery (RSET, a greylisted or refused
// message): a delivery makes its boxes first, so once it starts they
// count. postmaster's box is never refused (RFC 5321 §4.5.1).
//
// boxClients bounds the clients remembered. When the table is full, the
// clients whose hour is over are forgotten; if it is still full, a client
// not in it may make no box until one is: the limit holds, and so at
// most boxClients*mkboxperhour boxes are made an hour by strangers.
const (
	boxWindow  = time.Hour
	boxClients = 10000
)

// A boxLimiter counts the boxes each client made in its hour. Its zero
// value is ready.
type boxLimiter struct {
	mu    sync.Mutex
	m     map[netip.Prefix]*boxRecord
	swept time.Time // no room until then (makeRoom)
}

type boxRecord struct {
	n     int       // boxes since since
	since time.Time // start of the client's hour
}

// take counts one box for client at now, unless it has made limit in its
// hour or the table has no room for it, and returns the start of the hour
// it counted in, for give.
func (l *boxLimiter) take(client netip.Prefix, now time.Time, limit int) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[client]
	if r == nil {
		if l.m == nil {
			l.m = map[netip.Prefix]*boxRecord{}
		}
		if !l.makeRoom(now) {
			return time.Time{}, false
		}
		r = &boxRecord{since: now}
		l.m[client] = r
	}
	if now.Sub(r.since) >= boxWindow || now.Before(r.since) {
		r.n, r.since = 0, now
	}
	if r.n >= limit {
		return time.Time{}, false
	}
	r.n++
	return r.since, true
}

// give takes back n boxes that client's transaction counted in the hour
// starting at since and did not make. Boxes of an hour that is over are
// gone with it.
func (l *boxLimiter) give(client netip.Prefix, since time.Time, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.m[client]; r != nil && r.since.Equal(since) {
		r.n = max(r.n-n, 0)
	}
}

// makeRoom makes room for one more client when the table is full, by
// forgetting those whose hour is over, and reports whether there is room.
// A sweep that finds none notes when the first hour ends, and the table
// is not swept again before: a crowd of newcomers costs a map lookup
// each, not a sweep each.
func (l *boxLimiter) makeRoom(now time.Time) bool {
	if len(l.m) < boxClients {
		return true
	}
	if now.Before(l.swept) {
		return false
	}
	l.swept = now.Add(boxWindow)
	for k, r := range l.m {
		if end := r.since.Add(boxWindow); !now.Before(end) || now.Before(r.since) {
			delete(l.m, k)
		} else if end.Before(l.swept) {
			l.swept = end
		}
	}
	return len(l.m) < boxClients
}
