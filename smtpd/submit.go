package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strings"
	"sync/atomic"
	"time"

	"smtpfs/smtp"
	"smtpfs/smtpd/conf"
)

// Listener roles (conf.Role). A port 25 listener (smtp) keeps the rules
// of the package doc. A submission listener (RFC 6409) is for our own
// users, and its policy is theirs:
//
//   - AUTH is offered and accepted only over TLS (after STARTTLS, or from
//     the first byte on a submissions listener, RFC 8314 §3.3), whatever
//     plaintextauth says; MAIL, and so everything after it, needs AUTH
//     (530 5.7.0, RFC 6409 §4.3; RFC 4954 §6).
//   - The envelope sender, every From: address and the Sender: address
//     must be the authenticated user's (sendas; conf.MaySendAs): 550
//     5.7.1 at MAIL, 550 5.7.1 after the message for a header. The null
//     sender is refused too: a user does not send bounces.
//   - The message is completed (RFC 6409 §8.2, §8.3): Date: and
//     Message-ID: go in when missing, as From: and To: already do. The
//     Received: line names the client's HELO name but not its address
//     (submitterip on puts it back): a user's home address is nobody's
//     business (RFC 6409 §4.1 leaves it to the site).
//   - An authenticated client is trusted (package doc): no greylist, no
//     lib/blocked, no sender domain check, no tarpit; a submission
//     listener does not tarpit HELO either, for nobody before AUTH.
//
// The counters of a listener (Listener.Stats) add to the Server's.

// A Listener is the policy value of one listening socket: its role, which
// may change while it serves (a reload), and its own counters. Name is
// what the stats file calls it (listener.<Name>.connections).
type Listener struct {
	Name  string
	role  atomic.Uint32
	Stats ListenerStats
}

// NewListener returns a Listener of role r.
func NewListener(name string, r conf.Role) *Listener {
	l := &Listener{Name: name}
	l.SetRole(r)
	return l
}

// SetRole changes the role for the sessions that start after it.
func (l *Listener) SetRole(r conf.Role) { l.role.Store(uint32(r)) }

// Role returns the listener's role; a nil Listener is an smtp one.
func (l *Listener) Role() conf.Role {
	if l == nil {
		return conf.RoleSMTP
	}
	return conf.Role(l.role.Load())
}

// ListenerStats are the counters of one listener.
type ListenerStats struct {
	Connections atomic.Int64 // sessions started
	Sessions    atomic.Int64 // sessions now open
	Accepted    atomic.Int64 // messages answered 250
	AuthOK      atomic.Int64 // successful AUTH
	AuthFailed  atomic.Int64 // failed AUTH
	NotYours    atomic.Int64 // senders and From: refused as not the user's (sendas)
	NoAuth      atomic.Int64 // MAIL refused for want of AUTH
}

// Values returns the counters, named.
func (s *ListenerStats) Values() []Stat {
	return []Stat{
		{"connections", s.Connections.Load()},
		{"sessions", s.Sessions.Load()},
		{"accepted", s.Accepted.Load()},
		{"authok", s.AuthOK.Load()},
		{"authfailed", s.AuthFailed.Load()},
		{"notyours", s.NotYours.Load()},
		{"noauth", s.NoAuth.Load()},
	}
}

// ServeListener is Serve with a listener policy: the sessions of l get
// p's role and count in p's counters.
func (s *Server) ServeListener(l net.Listener, p *Listener) error {
	return s.serve(l, p)
}

// lstats returns the counters of the session's listener; a session of no
// Listener counts in a throwaway set.
func (s *session) lstats() *ListenerStats {
	if s.lis == nil {
		return &ListenerStats{}
	}
	return &s.lis.Stats
}

// submit reports whether the session is a submission one.
func (s *session) submit() bool { return s.role.Submit() }

var (
	errNeedAuth = smtp.Replyf(530, "5.7.0", "Authentication required")
	errNeedTLS  = smtp.Replyf(530, "5.7.0", "Must issue a STARTTLS command first")
)

// submitSender checks MAIL's sender on a submission session.
func (s *session) submitSender(p mailPath) *smtp.Reply {
	if !s.submit() {
		return nil
	}
	if p.Null || !s.cfg.MaySendAs(s.authUser, p.Addr()) {
		s.lstats().NotYours.Add(1)
		return smtp.Replyf(550, "5.7.1", "%s may not send as <%s>", s.authUser, p.Addr())
	}
	return nil
}

// checkSubmission checks the header of a submitted message: each From:
// address and the Sender: address must be the user's. A header we cannot
// parse is refused: we cannot tell whose it is.
func (s *session) checkSubmission(h headerInfo) *smtp.Reply {
	if !s.submit() {
		return nil
	}
	for _, v := range append(append([]string(nil), h.from...), h.sender...) {
		l, err := mail.ParseAddressList(v)
		if err != nil || len(l) == 0 {
			return smtp.Replyf(550, "5.6.0", "cannot read the addresses of From: or Sender: %q", truncate(strings.TrimSpace(v), 80))
		}
		for _, a := range l {
			if !s.cfg.MaySendAs(s.authUser, a.Address) {
				s.lstats().NotYours.Add(1)
				return smtp.Replyf(550, "5.7.1", "%s may not send as <%s> (From: or Sender:)", s.authUser, a.Address)
			}
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// receivedFrom is the from clause of our Received: line: the HELO name
// and the client's address, but only the name for a submission unless
// submitterip is on.
func (s *session) receivedFrom() string {
	if s.submit() && !s.cfg.SubmitterIP {
		return s.helo
	}
	return fmt.Sprintf("%s ([%s])", s.helo, s.remote)
}

// submitHeaders returns the header fields a submission server adds when
// they are missing (RFC 6409 §8.2, §8.3): Date: and Message-ID:.
func (s *session) submitHeaders(h headerInfo, id string) []byte {
	if !s.submit() {
		return nil
	}
	var b strings.Builder
	if !h.date {
		fmt.Fprintf(&b, "Date: %s\r\n", s.srv.Now().Format(time.RFC1123Z))
	}
	if !h.messageID {
		fmt.Fprintf(&b, "Message-ID: <%s.%d@%s>\r\n", id, s.srv.Now().Unix(), s.cfg.Hostname)
	}
	return []byte(b.String())
}

// handshake runs the TLS handshake of STARTTLS or of a submissions
// listener, and makes the session go on over TLS. It reports false when
// it failed; the session is over then.
func (s *session) handshake() bool {
	tc := tlsServer(s.conn, s.cfg)
	tc.SetDeadline(time.Now().Add(s.cfg.CmdTimeout))
	if err := tc.HandshakeContext(s.srv.killCtx); err != nil {
		s.logf("TLS start-up failed with %s/%s: %v", s.helo, s.remote, err)
		s.broken, s.quit = true, true
		return false
	}
	tc.SetDeadline(time.Time{})
	s.mu.Lock()
	s.conn = tc
	s.mu.Unlock()
	s.in.c, s.out.c = tc, tc
	s.r.Reset(s.in)
	s.w.Reset(s.out)
	s.srv.Stats.TLS.Add(1)
	s.tls = true
	return true
}

var errNoCert = errors.New("submissions listener without tlscert")

// implicitTLS starts TLS at once on a submissions listener (RFC 8314
// §3.3); without a certificate there is nothing to offer, and the
// connection is closed unanswered.
func (s *session) implicitTLS() bool {
	if s.cfg.TLSCert == nil {
		s.logf("%s from %s: %v; closing", s.role, s.remote, errNoCert)
		s.quit = true
		return false
	}
	if !s.handshake() {
		return false
	}
	s.logf("implicit TLS with %s", s.remote)
	return true
}

// tlsServer wraps c in a TLS server of the configured certificate.
func tlsServer(c net.Conn, cfg *conf.Config) *tls.Conn {
	return tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*cfg.TLSCert}})
}
