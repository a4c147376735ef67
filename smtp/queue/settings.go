package queue

import (
	"math/rand/v2"
	"time"
)

// Settings are the runner's knobs, the lead maps them from smtpd.conf
// (verbs backoff, lifetime, delaywarn, deliveries, destconcurrency,
// deliverytimeout, sessionmsgs, sessionidle, smarthost, hostname).
// SetSettings changes them while the queue runs. Zero values take the
// defaults of DefaultSettings.
type Settings struct {
	Backoff    []time.Duration // delays between attempts of a recipient; the last repeats
	Lifetime   time.Duration   // bounce what is still undelivered this long after arrival
	DelayWarn  time.Duration   // tell the sender once when a message is still queued after this; 0: never
	Deliveries int             // delivery sessions at once, in all
	SmartHost  string          // dial string all outbound mail goes to; "" for MX lookups
	Hostname   string          // our name: Reporting-MTA, Message-ID, MAILER-DAEMON@
	Domain     string          // our mail domain: bare names written to the queue file are its users; "" for Hostname
	MinFree    int64           // bytes to keep free on the queue's file system: Put and Submit refuse below; 0: no limit

	// DestConcurrency bounds the sessions at once to one destination (an
	// MX domain, an address literal, or the smarthost); local deliveries
	// are bounded by Deliveries alone.
	DestConcurrency int
	// DeliveryTimeout bounds one message's outbound delivery, from the
	// dial (or, on a session that carried messages before, from its MAIL)
	// to the last reply; a delivery cut by it is a temporary failure.
	DeliveryTimeout time.Duration

	// SessionMsgs bounds the messages one outbound session carries (1:
	// a session per message); SessionIdle how long a session is kept
	// open, idle, for the next message to its destination. They apply
	// when the Deliverer is also an Opener.
	SessionMsgs int
	SessionIdle time.Duration

	// IsLocal reports whether addr is a local user's and gives the user
	// (for the Local deliverer). Nil means no address is local.
	IsLocal func(addr string) (user string, ok bool)
}

// DefaultSettings returns the built-in schedule: attempts after 5, 15 and
// 30 minutes, then 1, 2 and every 4 hours (Postfix starts at 5 minutes and
// caps near 1 hour; upas's runq retries every 15 minutes, then hourly),
// bounce after 5 days (RFC 5321 §4.5.4.1 asks for at least 4-5 days),
// warn after 4 hours (OpenSMTPD's warn-interval), 20 sessions at once.
//
// At most 10 of them go to one destination: however slow a destination
// is (or an untrusted client made its own address one, with user@[]), it
// never holds more than half the sessions, and a smarthost, the one
// destination of all mail, still gets 10 at once. (Postfix allows 20 of
// its 100 delivery processes per destination.) A whole session may take
// 15 minutes: RFC 5321 §4.5.3.2 bounds each wait, the longest being 10
// minutes for the reply to the final dot, which a conforming server may
// take; the rest leaves room for the dialogue and for a 32 MiB message
// (maxsize) on a link of 1 Mbit/s (about 4.5 minutes). A session that
// holds a slot longer is cut and retried later, when the destination's
// rest is over.
//
// A session carries up to 100 messages to its destination, and is kept
// open 2 seconds after its last one for the next. Postfix keeps an idle
// session as long (smtp_connection_cache_time_limit) and bounds a reused
// one in time (smtp_connection_reuse_time_limit, 300 s) rather than in
// messages; a count is simpler to reason about here, and at the rates a
// session reaches on a LAN 100 messages take well under a second, so a
// busy destination's mail still moves to new connections now and then:
// an MX host that came back, or a server that degrades over a long
// session, gets its share.
func DefaultSettings() Settings {
	return Settings{
		Backoff: []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
			time.Hour, 2 * time.Hour, 4 * time.Hour},
		Lifetime:   5 * 24 * time.Hour,
		DelayWarn:  4 * time.Hour,
		Deliveries: 20,
		Hostname:   "localhost",

		DestConcurrency: 10,
		DeliveryTimeout: 15 * time.Minute,
		SessionMsgs:     100,
		SessionIdle:     2 * time.Second,
	}
}

// normal returns s with its zero fields set to the defaults. It copies the
// Backoff slice, so that the caller may reuse its own.
func (s Settings) normal() Settings {
	d := DefaultSettings()
	if len(s.Backoff) == 0 {
		s.Backoff = d.Backoff
	}
	s.Backoff = append([]time.Duration(nil), s.Backoff...)
	for i, b := range s.Backoff {
		s.Backoff[i] = max(b, time.Second)
	}
	if s.Lifetime <= 0 {
		s.Lifetime = d.Lifetime
	}
	if s.DelayWarn < 0 {
		s.DelayWarn = 0
	}
	if s.Deliveries < 1 {
		s.Deliveries = d.Deliveries
	}
	if s.DestConcurrency < 1 {
		s.DestConcurrency = d.DestConcurrency
	}
	if s.DeliveryTimeout <= 0 {
		s.DeliveryTimeout = d.DeliveryTimeout
	}
	if s.SessionMsgs < 1 {
		s.SessionMsgs = d.SessionMsgs
	}
	if s.SessionIdle <= 0 {
		s.SessionIdle = d.SessionIdle
	}
	if s.Hostname == "" {
		s.Hostname = d.Hostname
	}
	if s.Domain == "" {
		s.Domain = s.Hostname
	}
	s.MinFree = max(s.MinFree, 0)
	return s
}

// retryAfter returns the delay before the next attempt of a recipient that
// has failed tries times: the schedule's entry for it, the last one
// repeating, spread by ±10% so that messages deferred together (after a
// restart, or an outage of a big destination) do not come back together.
func (s Settings) retryAfter(tries int) time.Duration {
	i := min(max(tries, 1), len(s.Backoff)) - 1
	d := s.Backoff[i]
	return d - d/10 + rand.N(d/5+1)
}
