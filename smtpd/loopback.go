package smtpd

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"smtpfs/smtp"
)

// The bounds on what a client neither trusted nor authenticated may send
// to its own address: upas's user@[] (which anyone may use, norelay or
// not), and user@[its-address] when norelay is off. Such mail leaves
// through the queue towards a host the client chose, and a client that
// answers slowly there holds the queue's sessions; so it gets little of
// them:
//
//   - loopbackrcpts recipients per message (10): past them, 452 4.5.3
//     (RFC 5321 §4.5.3.1.10: the client sends the rest later), counted
//     as junk; 0 refuses such mail from untrusted clients with 550 5.7.1;
//   - loopbackrate messages and recipients per window (20 and 100 an
//     hour) per client (clientNet: an IPv4 address or an IPv6 /64): past
//     them, 450 4.7.1, an error of the session. A message counts once
//     it is accepted; sessions of one client in parallel may pass the
//     bound by a message each.
//
// The counts live in the server: smtpfs keeps them across sessions; the
// smtpd program, a process per session, within its session only.
const (
	// loopClients bounds the clients remembered: past it, those whose
	// window is over are forgotten, then any.
	loopClients = 10000
)

// A loopLimiter counts per client what was accepted for its own address.
// Its zero value is ready.
type loopLimiter struct {
	mu sync.Mutex
	m  map[netip.Prefix]*loopRecord
}

type loopRecord struct {
	msgs, rcpts int
	since       time.Time // start of the window
}

// count returns what client sent to itself in the window that holds now.
func (l *loopLimiter) count(client netip.Prefix, now time.Time, window time.Duration) (msgs, rcpts int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[client]
	if r == nil || now.Sub(r.since) >= window {
		return 0, 0
	}
	return r.msgs, r.rcpts
}

// add counts a message of client with rcpts recipients to itself.
func (l *loopLimiter) add(client netip.Prefix, now time.Time, window time.Duration, rcpts int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.m[client]
	if r == nil {
		if l.m == nil {
			l.m = map[netip.Prefix]*loopRecord{}
		}
		l.makeRoom(now, window)
		r = &loopRecord{since: now}
		l.m[client] = r
	}
	if now.Sub(r.since) >= window {
		*r = loopRecord{since: now}
	}
	r.msgs++
	r.rcpts += rcpts
}

// makeRoom keeps the map under loopClients: when it is full, the clients
// whose window is over go, then, down to nine tenths, any (which lets
// them send again early: a crowd of clients costs little each).
func (l *loopLimiter) makeRoom(now time.Time, window time.Duration) {
	if len(l.m) < loopClients {
		return
	}
	for k, r := range l.m {
		if now.Sub(r.since) >= window {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) <= loopClients*9/10 {
			return
		}
		delete(l.m, k)
	}
}

// toClient reports whether addr's domain is the literal of the client's
// own address.
func (s *session) toClient(addr string) bool {
	dom := addr[strings.LastIndexByte(addr, '@')+1:]
	a, ok := parseLiteral(dom)
	return ok && a.IsValid() && a == s.remote
}

var errLoopbackRcpts = smtp.Replyf(452, "4.5.3", "Too many recipients at [] in one message; send the rest later")

// loopbackOK applies the bounds above to a recipient r accepted by route:
// it answers and returns false when r is over them, and counts r towards
// the message's own otherwise.
func (s *session) loopbackOK(r rcpt) bool {
	if s.trusted || r.box != "" || !s.toClient(r.addr) || s.rcptSeen[strings.ToLower(r.addr)] {
		return true
	}
	switch {
	case s.cfg.LoopbackRcpts == 0:
		s.failLog(smtp.Replyf(550, "5.7.1", "we don't take mail for [] from %s", clientName(s.remote)),
			"[%s/%s] refused %s: loopbackrcpts 0", s.helo, s.remote, r.bang)
		return false
	case s.loopRcpts >= s.cfg.LoopbackRcpts:
		if !s.junk() { // RFC 5321 §4.5.3.1.10: not an error
			s.reply(errLoopbackRcpts)
		}
		return false
	}
	msgs, rcpts := s.srv.loops.count(clientNet(s.remote), s.srv.Now(), s.cfg.LoopbackRateWindow)
	if s.loopRcpts == 0 && msgs >= s.cfg.LoopbackRateMsgs || rcpts+s.loopRcpts >= s.cfg.LoopbackRateRcpts {
		s.failLog(smtp.Replyf(450, "4.7.1", "Too much mail for [] from %s; try again later", clientName(s.remote)),
			"[%s/%s] refused %s: %d messages and %d recipients for [] within %v (loopbackrate)",
			s.helo, s.remote, r.bang, msgs, rcpts, s.cfg.LoopbackRateWindow)
		return false
	}
	s.loopRcpts++
	return true
}

// loopbackSent counts the message just accepted towards its client's
// window, if it went to the client's own address.
func (s *session) loopbackSent() {
	if s.loopRcpts > 0 && !s.trusted {
		s.srv.loops.add(clientNet(s.remote), s.srv.Now(), s.cfg.LoopbackRateWindow, s.loopRcpts)
	}
}
