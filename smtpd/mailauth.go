package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"

	"smtpfs/smtp"
	"smtpfs/smtp/mailauth"
	"smtpfs/smtpd/conf"
)

// Mail authentication, for clients from outside: neither in ournets nor
// authenticated. Trusted clients are inside our administrative domain;
// none of this applies to them.
//
// At MAIL, with spf tag or enforce, the SPF record of the MAIL FROM domain
// (the HELO name's for <>) is asked whether the client may send its mail
// (RFC 7208). Under enforce a fail refuses every recipient with 550
// 5.7.23 and the domain's explanation (RFC 7372 §3.2; the verdict is given
// at RCPT rather than MAIL, RFC 7208 §2.5 allows either, so that the
// client is told per recipient), and a temperror with 451 4.7.24; every
// other result, and everything under tag, is only recorded.
//
// After DATA, with dmarc tag or enforce, the message's DKIM signatures are
// verified (RFC 6376) and the DMARC policy of its From domain evaluated
// with them and the SPF result (RFC 7489). Under enforce a disposition of
// reject refuses the message with 550 5.7.1; quarantine delivers it with
// an X-Smtpfs-Quarantine: field, which a mail reader or a filter can act
// on; everything else, and everything under tag, is only recorded.
//
// Every message from outside that is accepted gets an
// Authentication-Results field (RFC 8601) naming our host name, in front,
// after our Received: line: what was checked and with what result ("none"
// when nothing was). Fields that claim our host name already are removed
// first (§5), from every message, so that a reader may believe ours; to
// find them all the header is read whole, and a header longer than 1 MiB
// is refused (554 5.6.0), as Exim does.
//
// Each verdict makes one log line (the SPF result and why, each DKIM
// signature, the DMARC disposition) and is counted in AuthStats.

// MailAuth checks the authentication of mail from outside: SPF at MAIL,
// DKIM and DMARC after DATA. *mailauth.Checker is one. Its methods bound
// their own time (RFC 7208 §4.6.4 for SPF) and never fail: a lookup that
// got no answer is a temperror result.
type MailAuth interface {
	CheckSPF(ctx context.Context, ip netip.Addr, helo, mailfrom string) mailauth.SPFResult
	VerifyDKIM(ctx context.Context, msg io.Reader) []mailauth.DKIMResult
	EvalDMARC(ctx context.Context, header []byte, spf mailauth.SPFResult, dkim []mailauth.DKIMResult) mailauth.DMARCResult
}

// Signer signs what trusted clients send out (DKIM): Sign returns the
// DKIM-Signature fields to put on top of a message, each ending in CRLF,
// or nil when none of our keys signs for its From domain.
type Signer interface {
	Sign(msg io.Reader) ([]byte, error)
}

// maxAuthHeader bounds the header of a message: it is read whole to find
// forged Authentication-Results fields, and smtp/mailauth reads as much
// for its checks.
const maxAuthHeader = 1 << 20

var errHeaderLong = smtp.Replyf(554, "5.6.0", "message refused: header longer than 1 MiB")

// maxReplyText bounds what a reply quotes of a check's reason or a
// domain's SPF explanation: a reply line is at most 512 octets (RFC 5321
// §4.5.3.1.5).
const maxReplyText = 300

// checkSPF checks SPF at MAIL for a client from outside, with spf tag or
// enforce, logs and counts the result, and keeps it for RCPT, DMARC and
// the Authentication-Results field.
func (s *session) checkSPF() {
	if s.trusted || s.srv.MailAuth == nil || s.cfg.SPF == conf.PolicyOff {
		return
	}
	r := s.srv.MailAuth.CheckSPF(s.srv.killCtx, s.remote, s.helo, s.from.Addr())
	s.spf = &r
	s.logf("[%s/%s] %s %s", s.helo, s.remote, s.from.Bang(), r)
	s.srv.AuthStats.Add(mailauth.Verdict{SPF: &r})
}

// spfRefusal returns the reply refusing a recipient of a sender that SPF
// failed, under spf enforce, or nil.
func (s *session) spfRefusal() *smtp.Reply {
	if s.spf == nil || s.cfg.SPF != conf.PolicyEnforce {
		return nil
	}
	switch r := s.spf; r.Result {
	case mailauth.Fail:
		lines := []string{fmt.Sprintf("SPF fail: %s does not allow %s to send its mail (%s)", r.Domain, s.remote, replyText(r.Reason))}
		if r.Explanation != "" {
			lines = append(lines, replyText(r.Explanation))
		}
		return &smtp.Reply{Code: 550, Enh: "5.7.23", Lines: lines}
	case mailauth.TempError:
		return smtp.Replyf(451, "4.7.24", "SPF temporary error for %s (%s); try again later", r.Domain, replyText(r.Reason))
	}
	return nil
}

// dkimReaders are the buffered readers a message is verified through.
// smtp/mailauth reads it through a bufio.Reader of 64 KiB, which
// bufio.NewReaderSize does not make anew when it is handed one at least
// as big: a pool of them spares allocating and clearing 64 KiB a message
// (a fifth of the checks' CPU in a profile of BenchmarkMailAuthAccept).
var dkimReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// checkMessage runs the checks after DATA for a message from outside:
// DKIM and DMARC with dmarc tag or enforce. It renders the
// Authentication-Results field and, under enforce, the quarantine field
// for added, and returns the reply refusing the message when its DMARC
// disposition is reject under enforce.
func (s *session) checkMessage(sp *spool, h headerInfo) *smtp.Reply {
	if s.trusted || s.srv.MailAuth == nil {
		return nil
	}
	v := mailauth.Verdict{SPF: s.spf}
	if s.cfg.DMARC != conf.PolicyOff {
		ctx := s.srv.killCtx
		br := dkimReaders.Get().(*bufio.Reader)
		br.Reset(sp.Reader(0))
		v.DKIM = s.srv.MailAuth.VerifyDKIM(ctx, br)
		br.Reset(nil)
		dkimReaders.Put(br)
		var spf mailauth.SPFResult
		if s.spf != nil {
			spf = *s.spf
		}
		d := s.srv.MailAuth.EvalDMARC(ctx, sp.head(h.end), spf, v.DKIM)
		v.DMARC = &d
		for _, r := range v.DKIM {
			s.logf("[%s/%s] %s %s", s.helo, s.remote, s.from.Bang(), r)
		}
		s.logf("[%s/%s] %s %s", s.helo, s.remote, s.from.Bang(), d)
		s.srv.AuthStats.Add(mailauth.Verdict{DKIM: v.DKIM, DMARC: v.DMARC})
	}
	s.authRes = mailauth.AuthResults(s.cfg.Hostname, v)
	if d := v.DMARC; d != nil && s.cfg.DMARC == conf.PolicyEnforce {
		switch d.Disposition {
		case mailauth.Reject:
			return smtp.Replyf(550, "5.7.1", "message refused: the DMARC policy of %s is reject (%s)", d.From, replyText(d.Reason))
		case mailauth.Quarantine:
			s.quarantine = fmt.Sprintf("X-Smtpfs-Quarantine: dmarc (%s p=%s)\r\n", d.From, d.Policy)
			s.logf("[%s/%s] %s quarantined: the DMARC policy of %s is quarantine", s.helo, s.remote, s.from.Bang(), d.From)
		}
	}
	return nil
}

// greyCheck asks the greylist about the transaction: by the sender's
// domain when SPF says the client may send its mail, so that a sender's
// farm of servers retrying from another address passes, else by the
// client's address. A pass through "all" (+all: anyone may send) says
// nothing of the client, and does not count.
func (s *session) greyCheck() bool {
	if r := s.spf; r != nil && r.Result == mailauth.Pass && r.Identity == "mailfrom" && strings.TrimPrefix(r.Mechanism, "+") != "all" {
		if g, ok := s.srv.Greylister.(SenderGreylister); ok {
			return g.CheckSender(s.local, s.remote, r.Domain, s.from.Addr(), s.rcptAddrs())
		}
	}
	return s.srv.Greylister.Check(s.local, s.remote, s.from.Addr(), s.rcptAddrs())
}

// stripAuthResults removes the Authentication-Results fields that claim
// our host name from the header of the message, h.end bytes of sp (RFC
// 8601 §5); message then gives the header without them.
func (s *session) stripAuthResults(sp *spool, h headerInfo) {
	head := sp.head(h.end)
	if !hasField(head, authResultsName) {
		return
	}
	if out := mailauth.StripAuthResults(head, s.cfg.Hostname); len(out) != len(head) {
		s.stripped = out
		s.logf("[%s/%s] %s: removed Authentication-Results fields claiming to be ours (%s)", s.helo, s.remote, s.from.Bang(), s.cfg.Hostname)
	}
}

var authResultsName = []byte("authentication-results")

// hasField reports whether a line of head starts with name, in any case:
// whether the header may have such a field. It allocates nothing, so that
// the common header, without one, costs a scan.
func hasField(head, name []byte) bool {
	for len(head) >= len(name) {
		if bytes.EqualFold(head[:len(name)], name) {
			return true
		}
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			break
		}
		head = head[i+1:]
	}
	return false
}

// signed returns the message to queue: for a trusted client, with the
// DKIM signatures of our keys for its From domain on top (the queue holds
// the signed message). A message that cannot be signed is queued as it is,
// and the log says why.
func (s *session) signed(sp *spool, h headerInfo, id string) io.Reader {
	if !s.trusted || s.srv.Signer == nil {
		return s.message(sp, h, id)
	}
	sigs, err := s.srv.Signer.Sign(s.message(sp, h, id))
	if err != nil {
		s.logf("[%s/%s] %s: not DKIM-signed: %v", s.helo, s.remote, s.from.Bang(), err)
	}
	if len(sigs) == 0 {
		return s.message(sp, h, id)
	}
	return io.MultiReader(bytes.NewReader(sigs), s.message(sp, h, id))
}

// replyText makes text from a check fit in a reply: printable ASCII, at
// most maxReplyText octets.
func replyText(t string) string {
	var b strings.Builder
	for i := 0; i < len(t) && b.Len() < maxReplyText; i++ {
		if c := t[i]; c >= ' ' && c <= '~' {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
