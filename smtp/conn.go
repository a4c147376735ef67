package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// A Conn is an SMTP session to one destination that carries several
// messages, one transaction after another, as Postfix's connection cache
// does: the queue runner sends a busy destination's messages over one
// connection instead of paying a connect, greeting, EHLO and STARTTLS for
// each. A transaction that did not end (MAIL accepted, then every
// recipient refused, or a DATA refused) is followed by RSET before the
// next MAIL (RFC 5321 §4.1.1.5); one that ended with the reply to the
// final dot needs none, since that reply ends it on both sides (RFC 5321
// §4.1.1.4), and a RSET would cost a round trip per message. MAIL and the
// RCPTs go as one group when the server offers PIPELINING (RFC 2920).
//
// A Conn is not safe for concurrent use: one message at a time.
type Conn struct {
	c    *Client
	dest string
	d    DialString
	s    *session // nil once closed or after a failure that ended it
	n    int      // transactions on s
}

// Open connects to dest (a dial string, as Deliver's) and returns a
// session ready for Send: the first host of the route that gets past the
// greeting, EHLO, STARTTLS and AUTH. first is the first message it will
// carry: one that asks for REQUIRETLS gets a session that may carry it
// (see CanCarry). ctx bounds the connecting only.
func (c *Client) Open(ctx context.Context, dest string, first Mail) (*Conn, error) {
	d, err := ParseDialString(dest)
	if err == nil && d.Net != "tcp" {
		err = fmt.Errorf("invalid dial string %q: mail goes over tcp", dest)
	}
	if err != nil {
		return nil, &Error{Phase: "dial", Host: dest, Err: permanent(err)}
	}
	if !validHello(c.Hello) {
		return nil, &Error{Phase: "hello", Host: d.Host, Err: permanent(fmt.Errorf("invalid EHLO name %q", c.Hello))}
	}
	s, err := c.connect(ctx, d, first.RequireTLS)
	if err != nil {
		c.failf("connection to %s failed: %v", dest, err)
		return nil, err
	}
	return &Conn{c: c, dest: dest, d: d, s: s}, nil
}

// Send sends one message over the session, with the results of
// Client.Send; ctx bounds this transaction. If the connection was found
// dead before the DATA command of a message that is not the session's
// first (the server dropped it while it was idle, or after the last
// message), the message is tried once more on a new connection to the
// destination: nothing of it was delivered. After any other failure of
// the connection the message's errors say so and Send opens a new one
// for the next message.
func (cn *Conn) Send(ctx context.Context, m Mail, msg io.Reader) (rcptErrs []error, err error) {
	return cn.c.deliverVia(ctx, cn.dest, m, msg, nil, cn.transact)
}

// SendOutcome is Send that also returns the Outcome, as
// Client.SendOutcome does.
func (cn *Conn) SendOutcome(ctx context.Context, m Mail, msg io.Reader) (rcptErrs []error, o Outcome, err error) {
	rcptErrs, err = cn.c.deliverVia(ctx, cn.dest, m, msg, &o, cn.transact)
	return rcptErrs, o, err
}

func (cn *Conn) transact(ctx context.Context, d DialString, env envelope) ([]error, error) {
	for try := 0; ; try++ {
		if cn.s == nil {
			s, err := cn.c.connect(ctx, d, env.params.RequireTLS)
			if err != nil {
				return nil, err
			}
			cn.s, cn.n = s, 0
		}
		s := cn.s
		s.bind(ctx)
		cn.n++
		errs, err := s.transact(env)
		s.unbind()
		if !s.broken {
			return errs, err
		}
		s.close()
		cn.s = nil
		if try > 0 || !cn.stale(ctx, s, err) {
			return errs, err
		}
		s.note("connection to %s lost before DATA: once more on a new one", s.host)
	}
}

// stale reports whether the transaction that failed with err on s, which
// broke, may be tried again on a new connection: s had carried messages
// before, the failure was the connection's (no reply said no), before
// DATA, and ctx is not over. Before DATA nothing of the message was read
// or delivered.
func (cn *Conn) stale(ctx context.Context, s *session, err error) bool {
	var r *Reply
	return cn.n > 1 && !s.dataSent && ctx.Err() == nil && !errors.As(err, &r)
}

// CanCarry reports whether the session may carry m: a message that asks
// for REQUIRETLS (RFC 8689 §4) needs a session opened for such mail, to
// a host the TLS policy authenticates, over TLS (the server's REQUIRETLS
// is checked at MAIL). A Conn whose connection failed can carry
// anything: Send opens a new one.
func (cn *Conn) CanCarry(m Mail) bool {
	if !m.RequireTLS || cn.s == nil {
		return true
	}
	return cn.s.tls && cn.s.pol != nil && cn.s.pol.requireTLS
}

// Usable reports whether the connection is still open and working as far
// as the Conn knows.
func (cn *Conn) Usable() bool { return cn.s != nil && !cn.s.broken }

// Messages returns how many transactions the current connection has run.
func (cn *Conn) Messages() int { return cn.n }

// Close ends the session with QUIT.
func (cn *Conn) Close() error {
	if cn.s != nil {
		cn.s.close()
		cn.s = nil
	}
	return nil
}
