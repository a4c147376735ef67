package smtpd

import "sync/atomic"

// Stats counts what the server did. Every field is safe to read and add to
// from any goroutine; Values gives them all, named, for the 9P stats file.
type Stats struct {
	Connections atomic.Int64 // sessions started
	Sessions    atomic.Int64 // sessions now open
	Refused     atomic.Int64 // connections dropped: evil, connection limits, shutdown
	Accepted    atomic.Int64 // messages answered 250 after DATA
	Rejected    atomic.Int64 // messages refused at or after DATA
	Greylisted  atomic.Int64 // messages refused by the greylist
	Blocked     atomic.Int64 // messages refused by a lib/blocked verdict
	RelayDenied atomic.Int64 // recipients refused as relaying
	Maildir     atomic.Int64 // messages put in local Maildirs (one per recipient)
	Queued      atomic.Int64 // messages handed to the outbound queue
	Bytes       atomic.Int64 // bytes of accepted messages
	AuthOK      atomic.Int64 // successful AUTH
	AuthFailed  atomic.Int64 // failed AUTH
	TLS         atomic.Int64 // sessions that started TLS
	Errors      atomic.Int64 // commands refused (counted towards maxerrors)
	Timeouts    atomic.Int64 // sessions closed by a timeout
	Abandoned   atomic.Int64 // sessions that ended inside a transaction: the client went, or timed out, before its message was answered
	Panics      atomic.Int64 // sessions ended by a panic (a bug: see the log)
}

// A Stat is one named counter.
type Stat struct {
	Name  string
	Value int64
}

// Values returns every counter, in a fixed order.
func (s *Stats) Values() []Stat {
	return []Stat{
		{"connections", s.Connections.Load()},
		{"sessions", s.Sessions.Load()},
		{"refused", s.Refused.Load()},
		{"accepted", s.Accepted.Load()},
		{"rejected", s.Rejected.Load()},
		{"greylisted", s.Greylisted.Load()},
		{"blocked", s.Blocked.Load()},
		{"relaydenied", s.RelayDenied.Load()},
		{"maildir", s.Maildir.Load()},
		{"queued", s.Queued.Load()},
		{"bytes", s.Bytes.Load()},
		{"authok", s.AuthOK.Load()},
		{"authfailed", s.AuthFailed.Load()},
		{"tls", s.TLS.Load()},
		{"errors", s.Errors.Load()},
		{"timeouts", s.Timeouts.Load()},
		{"abandoned", s.Abandoned.Load()},
		{"panics", s.Panics.Load()},
	}
}
