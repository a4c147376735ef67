package authfail

import (
	"net/netip"
	"sync"
	"time"
)

// memClients bounds the clients a Memory remembers: past it, those whose
// window and lockout are over are forgotten, then any.
const memClients = 10000

// A Memory counts failures in the memory of one process. Its zero value
// is ready. It never fails.
type Memory struct {
	mu sync.Mutex
	m  map[netip.Prefix]*record
}

// Locked reports whether client may not try AUTH at now.
func (l *Memory) Locked(client netip.Prefix, now time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[client]
	return r != nil && r.locked(now), nil
}

// Failed counts a failure of client at now, and reports whether it
// locked the client out.
func (l *Memory) Failed(client netip.Prefix, now time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[client]
	if r == nil {
		if l.m == nil {
			l.m = map[netip.Prefix]*record{}
		}
		l.makeRoom(now)
		r = &record{since: now}
		l.m[client] = r
	}
	return r.fail(now), nil
}

// makeRoom keeps the map under memClients. When it is full, it forgets
// the clients whose window and lockout are over, then, down to nine tenths
// of memClients (so that the next full sweep is far off: a crowd of
// failing clients costs little each), clients not locked out, and only if
// that is not enough, any.
func (l *Memory) makeRoom(now time.Time) {
	if len(l.m) < memClients {
		return
	}
	for k, r := range l.m {
		if r.stale(now) {
			delete(l.m, k)
		}
	}
	for _, spare := range []func(*record) bool{
		func(r *record) bool { return !r.locked(now) },
		func(*record) bool { return true },
	} {
		for k, r := range l.m {
			if len(l.m) <= memClients*9/10 {
				return
			}
			if spare(r) {
				delete(l.m, k)
			}
		}
	}
}
