package smtp

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"smtpfs/internal/errquote"
	"smtpfs/smtp/tlspolicy"
)

// A Client delivers messages over SMTP: upas smtp's engine, used by the
// smtp command and by the queue. Its fields are its configuration; set them
// before the first Deliver and do not change them afterwards. A Client is
// safe for concurrent use. The zero value delivers through the DNS server of
// /etc/resolv.conf to port 25, in plaintext, without AUTH.
type Client struct {
	Hello string // name in EHLO/HELO; "" means "localhost"
	Port  string // port of MX hosts and implicit MX; "" means 25
	DNS   DNS    // nil means NewResolver("")

	Gateway string   // dial string tried when nothing else could be (-g)
	Busted  []string // MX host names never to try (-b)

	StartTLS    TLSMode        // whether to use STARTTLS (-s)
	ImplicitTLS bool           // TLS from the first byte, as on port 465 (-t)
	Insecure    bool           // accept any certificate (-o)
	Pins        *Pins          // certificates accepted by thumbprint, lib/tls/smtp
	RootCAs     *x509.CertPool // CAs to verify against; nil means the system's

	Policy      *tlspolicy.Engine // TLS policy of MX destinations, instead of the four above (policy.go); nil for none
	PolicyStats *PolicyStats      // its decisions counted; nil for none

	Auth           *Auth // credentials for AUTH, nil for none (-a)
	AuthWithoutTLS bool  // send them over a plaintext connection too (-i)

	Provoke  bool     // send NOOP to provoke a greeting (-A)
	Timeouts Timeouts // zero fields take the RFC 5321 §4.5.3.2 values

	Transcript io.Writer   // the conversation, AUTH masked, body elided (-d); nil for none
	Log        *log.Logger // successes and TLS notes (log/smtp); nil for none
	FailLog    *log.Logger // failures (log/smtp.fail); nil means Log

	// shuffle orders MX hosts of equal preference; nil means rand.Shuffle.
	shuffle func(n int, swap func(i, j int))

	once   sync.Once
	defDNS *Resolver
}

// dns returns the DNS to ask.
func (c *Client) dns() DNS {
	if c.DNS != nil {
		return c.DNS
	}
	c.once.Do(func() { c.defDNS = NewResolver("") })
	return c.defDNS
}

// port returns the port of MX hosts.
func (c *Client) port() string { return cmp.Or(c.Port, "25") }

// shuffler returns the function that orders equal MX preferences.
func (c *Client) shuffler() func(n int, swap func(i, j int)) {
	if c.shuffle != nil {
		return c.shuffle
	}
	return rand.Shuffle
}

// TLSMode says when a Client uses STARTTLS (RFC 3207).
type TLSMode int

const (
	// NoTLS never starts TLS.
	NoTLS TLSMode = iota
	// TryTLS starts TLS when the server offers it and goes on in plaintext
	// when it does not (upas smtp -s). Once STARTTLS is offered and asked
	// for, a refusal or a failed handshake ends the attempt: there is no
	// fallback to plaintext.
	TryTLS
	// RequireTLS fails, temporarily, when the server does not offer STARTTLS.
	RequireTLS
)

// Auth holds the credentials for SMTP AUTH (RFC 4954).
type Auth struct {
	User     string
	Password string
}

// Timeouts bound each wait of the conversation. RFC 5321 §4.5.3.2 gives the
// defaults.
type Timeouts struct {
	Connect   time.Duration // each TCP connection: 30 s
	Greeting  time.Duration // the 220 greeting: 5 min
	Command   time.Duration // EHLO, STARTTLS and the handshake, AUTH, MAIL, RCPT, QUIT: 5 min
	DataInit  time.Duration // the 354 to DATA: 2 min
	DataBlock time.Duration // each write of the message: 3 min
	DataDone  time.Duration // the reply to the final dot: 10 min
}

// DefaultTimeouts are the timeouts of RFC 5321 §4.5.3.2.
var DefaultTimeouts = Timeouts{
	Connect:   30 * time.Second,
	Greeting:  5 * time.Minute,
	Command:   5 * time.Minute,
	DataInit:  2 * time.Minute,
	DataBlock: 3 * time.Minute,
	DataDone:  10 * time.Minute,
}

func (t Timeouts) orDefault() Timeouts {
	d := DefaultTimeouts
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.Connect, &d.Connect}, {&t.Greeting, &d.Greeting}, {&t.Command, &d.Command},
		{&t.DataInit, &d.DataInit}, {&t.DataBlock, &d.DataBlock}, {&t.DataDone, &d.DataDone},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// An Error is a failed delivery attempt or a refused recipient: the phase
// that failed ("dns", "dial", "tls", "greeting", "hello", "starttls", "auth",
// "mailfrom", "rcptto", "data"; "tls" is also the TLS policy refusing a
// destination before anything is dialled, policy.go), the host (an MX name;
// the destination for "dns" and such a refusal) and address dialled, and the cause: a *Reply when the server said
// so. Temporary tells the queue whether to try again.
type Error struct {
	Phase string
	Host  string
	Addr  string // ip:port, "" if nothing was dialled
	Err   error
}

func (e *Error) Error() string {
	var de *DNSError
	if e.Phase == "dns" && errors.As(e.Err, &de) && de.Name == e.Host && de.Error() == e.Err.Error() {
		return errquote.Escape(de.Error()) // it names the phase and the host itself
	}
	where := e.Host
	if e.Addr != "" {
		where += " (" + e.Addr + ")"
	}
	// The cause may quote the peer (a certificate's names): escaped, as
	// replies are, since the text goes to terminals and the queue file.
	return where + " " + e.Phase + ": " + errquote.Escape(e.Err.Error())
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// RemoteMTA returns the server that gave the failure, for the Remote-MTA
// field of a DSN (RFC 3464 §2.3.5): the host, when it answered with a
// reply; "" when the failure is ours or the network's.
func (e *Error) RemoteMTA() string {
	var r *Reply
	if e.Addr == "" || !errors.As(e.Err, &r) {
		return ""
	}
	return e.Host
}

// Temporary reports whether the failure is worth another try later: a 4xx
// reply, a network or protocol failure, a DNS failure. A 5xx reply, a domain
// that does not exist or takes no mail (null MX), and a certificate that
// cannot be verified are permanent.
func (e *Error) Temporary() bool { return temporary(e.Err) }

// temporary walks err's chain to the first error that knows its class; an
// error that does not say (a refused or reset connection, a timeout) is
// temporary. The net package's own Temporary says false for a refused
// connection, which for mail means "try later", so it is not asked.
func temporary(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		switch e := err.(type) {
		case *Reply:
			return !e.Permanent()
		case permError:
			return false
		case retryError:
			return true
		case *DNSError:
			return e.Temporary()
		}
	}
	return true
}

// permError marks an error as permanent.
type permError struct{ error }

func (e permError) Unwrap() error { return e.error }

// Temporary reports false.
func (e permError) Temporary() bool { return false }

// retryError marks a permanent failure at one host as temporary for the
// attempt, because another host failed in a way that may pass.
type retryError struct{ error }

func (e retryError) Unwrap() error { return e.error }

// Temporary reports true.
func (e retryError) Temporary() bool { return true }

func permanent(err error) error { return permError{err} }

// Deliver sends msg from `from` to rcpts, all for one destination, over one
// SMTP session. dest is a dial string: a bare domain (MX lookup, implicit
// MX, null MX), an address literal ([192.0.2.1], dialled directly), or one
// with a port (dialled directly, e.g. a smarthost). from is "" for the null
// sender, else local@domain; rcpts are local@domain. msg is a whole RFC 5322
// message (LF or CRLF line ends), sent as it is but for line ends and
// dot-stuffing: header conversion is Convert's job.
//
// err != nil: the whole attempt failed for every recipient (dns, dial,
// greeting, TLS, MAIL, DATA ...), and then every rcptErrs[i] is set too,
// to the recipient's own refusal or to err. err == nil: rcptErrs[i] != nil
// says recipient i was refused (at RCPT, or before, for an address we
// would not send); the others have the message. Every error is an *Error
// whose Temporary method says whether to retry. MX hosts are tried in
// turn until one takes the transaction; after MAIL FROM the answer is
// final.
func (c *Client) Deliver(ctx context.Context, dest, from string, rcpts []string, msg io.Reader) (rcptErrs []error, err error) {
	return c.deliver(ctx, dest, Mail{From: from, Rcpts: rcpts}, msg)
}

// A Mail is one message's envelope as it leaves: the reverse path, the
// recipients and what the message asks of the next hop beyond them.
type Mail struct {
	From  string   // "" for the null sender
	Rcpts []string // local@domain
	Params
}

// Params are what a message asks of the next hop besides its addresses:
// the DSN parameters (RFC 3461), REQUIRETLS (RFC 8689) and SMTPUTF8 (RFC
// 6531). The zero value asks nothing.
type Params struct {
	Ret        string       // RET: "FULL", "HDRS" or "" if not given (RFC 3461 §4.3)
	EnvID      string       // ENVID, decoded from its xtext (RFC 3461 §4.4)
	RequireTLS bool         // REQUIRETLS (RFC 8689 §4)
	SMTPUTF8   bool         // the message needs SMTPUTF8 (RFC 6531 §3.4): UTF-8 in its header or addresses
	Rcpt       []RcptParams // per recipient, in the order of Mail.Rcpts; nil or shorter: none
}

// RcptParams are one recipient's DSN parameters (RFC 3461 §4.1, §4.2).
type RcptParams struct {
	Notify string // "NEVER", or a comma list of SUCCESS, FAILURE, DELAY; "" if not given
	ORcpt  string // ORCPT as "addr-type;address", decoded from its xtext; "" if not given
}

// Send is Deliver with the whole envelope: the Mail's parameters go to a
// server that offers what they need.
func (c *Client) Send(ctx context.Context, dest string, m Mail, msg io.Reader) (rcptErrs []error, err error) {
	return c.deliver(ctx, dest, m, msg)
}

// An Outcome is what a delivery learned about the next hop beyond the
// recipients' results.
type Outcome struct {
	// DSN: the server that took the message offered DSN (RFC 3461), so
	// it got the DSN parameters and will report success itself; a
	// sender that was asked NOTIFY=SUCCESS reports "relayed" otherwise
	// (RFC 3461 §5.2.2).
	DSN bool
}

// SendOutcome is Send that also returns the Outcome of the session that
// took the message (the zero Outcome if none did).
func (c *Client) SendOutcome(ctx context.Context, dest string, m Mail, msg io.Reader) (rcptErrs []error, o Outcome, err error) {
	rcptErrs, err = c.deliverVia(ctx, dest, m, msg, &o, c.attempt)
	return rcptErrs, o, err
}

// Ping is Deliver without a message: it asks the server whether it takes
// each recipient (RCPT) and quits before DATA (upas smtp -p).
func (c *Client) Ping(ctx context.Context, dest, from string, rcpts []string) (rcptErrs []error, err error) {
	return c.deliver(ctx, dest, Mail{From: from, Rcpts: rcpts}, nil)
}

func (c *Client) deliver(ctx context.Context, dest string, m Mail, msg io.Reader) ([]error, error) {
	return c.deliverVia(ctx, dest, m, msg, nil, c.attempt)
}

// deliverVia checks and sends one message as deliver does, the
// transaction run by via: on a session of its own (attempt) or on a
// Conn's; it fills in out, if not nil.
func (c *Client) deliverVia(ctx context.Context, dest string, m Mail, msg io.Reader, out *Outcome,
	via func(context.Context, DialString, envelope) ([]error, error)) ([]error, error) {
	from, rcpts := m.From, m.Rcpts
	rcptErrs := make([]error, len(rcpts))
	d, err := ParseDialString(dest)
	if err == nil && d.Net != "tcp" {
		err = fmt.Errorf("invalid dial string %q: mail goes over tcp", dest)
	}
	if err != nil {
		return fill(rcptErrs, &Error{Phase: "dial", Host: dest, Err: permanent(err)})
	}
	if !validHello(c.Hello) {
		return fill(rcptErrs, &Error{Phase: "hello", Host: d.Host, Err: permanent(fmt.Errorf("invalid EHLO name %q", c.Hello))})
	}
	if err := checkPath(from, true); err != nil {
		return fill(rcptErrs, &Error{Phase: "mailfrom", Host: d.Host, Err: permanent(err)})
	}
	var good []int // indexes of the recipients we send
	for i, r := range rcpts {
		if err := checkPath(r, false); err != nil {
			rcptErrs[i] = &Error{Phase: "rcptto", Host: d.Host, Err: permanent(err)}
			c.failf("%s to %q at %s failed: %v", envelope{msg: msg}.what(), r, dest, rcptErrs[i])
			continue
		}
		good = append(good, i)
	}
	if len(good) == 0 {
		if len(rcpts) == 0 {
			return nil, &Error{Phase: "rcptto", Host: d.Host, Err: permanent(errors.New("no recipients"))}
		}
		return rcptErrs, nil
	}
	env := envelope{from: from, size: messageSize(msg), msg: msg, params: m.Params, out: out}
	env.params.Rcpt = nil
	for _, i := range good {
		env.rcpts = append(env.rcpts, rcpts[i])
		if i < len(m.Rcpt) {
			env.params.Rcpt = append(env.params.Rcpt, m.Rcpt[i])
		} else {
			env.params.Rcpt = append(env.params.Rcpt, RcptParams{})
		}
	}
	sub, err := via(ctx, d, env)
	for j, i := range good {
		if sub != nil {
			rcptErrs[i] = sub[j]
		}
	}
	if err != nil {
		c.failf("%s to %s at %s failed: %v", env.what(), strings.Join(env.rcpts, ","), dest, err)
		return fill(rcptErrs, err)
	}
	return rcptErrs, nil
}

// validHello reports whether name may follow EHLO: a domain or an address
// literal (RFC 5321 §4.1.1.1), at least nothing that would end the line.
func validHello(name string) bool {
	if len(name) > maxDomain {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] >= 0x7f {
			return false
		}
	}
	return true
}

// fill sets every unset entry of errs to err.
func fill(errs []error, err error) ([]error, error) {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs, err
}

// An envelope is what one attempt sends.
type envelope struct {
	from   string
	rcpts  []string
	size   int64     // the message's size if known, else -1
	msg    io.Reader // nil for a ping
	params Params    // Rcpt parallel to rcpts
	out    *Outcome  // filled in by the session that takes the message; nil: not wanted
}

// what names the attempt in the logs, as upas does.
func (env envelope) what() string {
	if env.msg == nil {
		return "ping"
	}
	return "delivery"
}

// attempt runs one transaction on a session of its own (connect): that
// session's result is the answer. When no session could be had, the
// answer is the failure of the host that got furthest; it is permanent only if every host failed for good (a
// host that could not be reached may take the message later).
func (c *Client) attempt(ctx context.Context, d DialString, env envelope) ([]error, error) {
	s, err := c.connect(ctx, d, env.params.RequireTLS)
	if err != nil {
		return nil, err
	}
	s.bind(ctx)
	defer s.close()
	return s.transact(env)
}

// connect tries the hosts of the route in turn, each address of each,
// until a session gets past the greeting, EHLO and TLS, and returns it.
// requireTLS: the session is for REQUIRETLS mail, and the TLS policy
// allows only hosts that may carry it (RFC 8689 §4.2.1).
func (c *Client) connect(ctx context.Context, d DialString, requireTLS bool) (*session, error) {
	hops, err := c.route(ctx, d)
	if err != nil {
		return nil, &Error{Phase: "dns", Host: d.Host, Err: err}
	}
	if hops, err = c.applyPolicy(ctx, d, hops, requireTLS); err != nil {
		return nil, err
	}
	var best *Error
	retry := false
	note := func(e *Error) {
		if best == nil || phaseRank[e.Phase] >= phaseRank[best.Phase] {
			best = e
		}
		retry = retry || e.Temporary()
	}
	tried := 0
loop:
	for _, h := range hops {
		addrs, err := c.addrs(ctx, h)
		if err != nil {
			note(&Error{Phase: "dns", Host: h.name, Err: err})
			continue
		}
		for _, a := range addrs {
			if tried == maxAddrs || ctx.Err() != nil {
				break loop
			}
			tried++
			s, err := c.open(ctx, h, a)
			var e *Error
			if err == nil || !errors.As(err, &e) || !e.nextHost() {
				return s, err
			}
			note(e)
		}
	}
	if best == nil {
		// Cancelled before the first try.
		return nil, &Error{Phase: "dial", Host: d.Host, Err: cmp.Or(context.Cause(ctx), errors.New("no host to try"))}
	}
	if retry && !best.Temporary() {
		b := *best
		b.Err = retryError{b.Err}
		best = &b
	}
	return nil, best
}

// phaseRank orders the phases before the transaction by how far they got.
// A session that fails in one of them leaves the message to the next host
// (RFC 5321 §5.1: a host that cannot be reached or refuses service is
// skipped); after them, its answer is final.
var phaseRank = map[string]int{"dns": 0, "dial": 1, "tls": 2, "greeting": 3, "hello": 4, "starttls": 5}

// nextHost reports whether a failure leaves the message for the next host.
func (e *Error) nextHost() bool {
	_, ok := phaseRank[e.Phase]
	return ok
}

// failf logs a failure to FailLog, or Log.
func (c *Client) failf(format string, args ...any) {
	if l := cmp.Or(c.FailLog, c.Log); l != nil {
		l.Printf(format, args...)
	}
}

// logf logs to Log.
func (c *Client) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log.Printf(format, args...)
	}
}
