package smtpd

import (
	"context"
	"io"
	"strings"
	"unicode/utf8"

	"smtpfs/smtp"
)

// DSN (RFC 3461) and REQUIRETLS (RFC 8689) on the way in.
//
// Every client may give RET and ENVID at MAIL and NOTIFY and ORCPT at
// RCPT: they go into the queue's envelope with the recipients that leave
// (the queue obeys them in its own DSNs and passes them to a next hop
// that offers DSN). A success DSN for a recipient delivered here at DATA
// (NOTIFY=SUCCESS) is queued through the queue, as durable as a message,
// but only for a trusted or authenticated client: the sender of anyone
// else is its word alone, and a report to it would be backscatter, as a
// bounce would (the queue takes its remote mail from <> for the same
// reason).
//
// REQUIRETLS is offered, and taken at MAIL, only on a TLS session (after
// STARTTLS or on an implicit-TLS listener, RFC 8689 §3), and not when
// messages go to a mailer (-m), which could send them on in plain text;
// it is recorded
// in the envelope, and the client engine then sends the message on only
// over verified TLS to a next hop that offers REQUIRETLS. Local delivery
// is not affected: the message is already here. The "TLS-Required: No"
// header field (RFC 8689 §5) is not honoured: it asks to relax the TLS
// policy of the next hops, and ours is the operator's to set; the field
// is carried with the message untouched, for the hops after us.

// Bounds of RFC 3461.
const (
	maxEnvID = 100 // §4.4: ENVID, as given (xtext)
	maxORcpt = 500 // §4.2: ORCPT, as given (addr-type;xtext)
)

func dsnErr(format string, args ...any) *smtp.Reply {
	return smtp.Replyf(501, "5.5.4", format, args...)
}

// errRequireTLS refuses REQUIRETLS on a session without TLS: RFC 8689 §3
// offers it only over TLS; 5.7.10 is "encryption needed" (RFC 5248).
var errRequireTLS = smtp.Replyf(530, "5.7.10", "REQUIRETLS needs a TLS session: STARTTLS first")

// errRequireTLSMailer refuses REQUIRETLS, not offered, when messages go
// to a mailer (-m): what it does with them is beyond our promise.
var errRequireTLSMailer = smtp.Replyf(555, "5.5.4", "REQUIRETLS not offered: mail goes to a mailer, which cannot promise TLS")

// requireTLSOK reports whether REQUIRETLS is offered: on a TLS session,
// when we deliver ourselves.
func (s *session) requireTLSOK() bool { return s.tls && s.cfg.Mailer == nil }

// dsnMailParam takes RET, ENVID or REQUIRETLS of MAIL into p, and
// reports whether pm was one of them. Repeats are refused by the caller.
func (s *session) dsnMailParam(pm param, p *smtp.Params) (bool, *smtp.Reply) {
	switch pm.key {
	case "RET": // §4.3
		v := strings.ToUpper(pm.value)
		if v != "FULL" && v != "HDRS" {
			return true, dsnErr("bad RET=%s: want FULL or HDRS", clip(pm.value))
		}
		p.Ret = v
	case "ENVID": // §4.4
		v, r := decodeEnvID(pm.value)
		if r != nil {
			return true, r
		}
		p.EnvID = v
	case "REQUIRETLS": // RFC 8689 §3
		if pm.value != "" {
			return true, dsnErr("REQUIRETLS takes no value")
		}
		if s.cfg.Mailer != nil {
			return true, errRequireTLSMailer
		}
		if !s.tls {
			return true, errRequireTLS
		}
		p.RequireTLS = true
	default:
		return false, nil
	}
	return true, nil
}

// decodeEnvID decodes ENVID's xtext: at most maxEnvID characters,
// printable ASCII once decoded.
func decodeEnvID(x string) (string, *smtp.Reply) {
	if len(x) > maxEnvID {
		return "", dsnErr("ENVID longer than %d characters (RFC 3461 4.4)", maxEnvID)
	}
	v, err := smtp.DecodeXtext(x)
	if err != nil {
		return "", dsnErr("bad ENVID: %v", err)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] >= 0x7f {
			return "", dsnErr("bad ENVID: not printable ASCII once decoded")
		}
	}
	return v, nil
}

// parseRcptParams parses the parameters of RCPT: NOTIFY and ORCPT (RFC
// 3461 §4.1, §4.2), each at most once; anything else is not offered.
func parseRcptParams(ps []param) (smtp.RcptParams, *smtp.Reply) {
	var p smtp.RcptParams
	seen := map[string]bool{}
	for _, pm := range ps {
		if seen[pm.key] {
			return p, dsnErr("%s given twice", pm.key)
		}
		seen[pm.key] = true
		var r *smtp.Reply
		switch pm.key {
		case "NOTIFY":
			p.Notify, r = parseNotify(pm.value)
		case "ORCPT":
			p.ORcpt, r = parseORcpt(pm.value)
		default:
			r = errParam
		}
		if r != nil {
			return p, r
		}
	}
	return p, nil
}

// parseNotify parses NOTIFY: NEVER alone, or a list of SUCCESS, FAILURE
// and DELAY, each once; returned in upper case.
func parseNotify(v string) (string, *smtp.Reply) {
	u := strings.ToUpper(v)
	seen := map[string]bool{}
	for _, w := range strings.Split(u, ",") {
		switch {
		case w != "NEVER" && w != "SUCCESS" && w != "FAILURE" && w != "DELAY":
			return "", dsnErr("bad NOTIFY=%s: want NEVER, or SUCCESS, FAILURE and DELAY", clip(v))
		case seen[w] || w == "NEVER" && u != "NEVER":
			return "", dsnErr("bad NOTIFY=%s: NEVER stands alone, and nothing twice", clip(v))
		}
		seen[w] = true
	}
	return u, nil
}

// parseORcpt parses ORCPT, addr-type ";" xtext, at most maxORcpt
// characters, and returns it with the address decoded: UTF-8 without
// control characters.
func parseORcpt(v string) (string, *smtp.Reply) {
	if len(v) > maxORcpt {
		return "", dsnErr("ORCPT longer than %d characters (RFC 3461 4.2)", maxORcpt)
	}
	t, x, ok := strings.Cut(v, ";")
	if !ok || t == "" || x == "" {
		return "", dsnErr("bad ORCPT: want addr-type;address")
	}
	for i := 0; i < len(t); i++ {
		if !isAtext(t[i]) {
			return "", dsnErr("bad ORCPT: bad addr-type")
		}
	}
	a, err := smtp.DecodeXtext(x)
	if err != nil {
		return "", dsnErr("bad ORCPT: %v", err)
	}
	if !utf8.ValidString(a) {
		return "", dsnErr("bad ORCPT: not UTF-8 once decoded")
	}
	for _, c := range a {
		if c < ' ' || c == 0x7f {
			return "", dsnErr("bad ORCPT: a control character once decoded")
		}
	}
	return t + ";" + a, nil
}

// clip shortens a client's value for a reply.
func clip(v string) string {
	if len(v) > 40 {
		return v[:40] + "..."
	}
	return v
}

// mailFor returns the envelope of the recipients rs as the queue takes
// it, from `from`: the transaction's DSN parameters and REQUIRETLS, and
// each recipient's own.
func (s *session) mailFor(from string, rs []rcpt) smtp.Mail {
	m := smtp.Mail{From: from, Params: s.params}
	m.Rcpt = nil
	for _, r := range rs {
		m.Rcpts = append(m.Rcpts, r.addr)
		m.Rcpt = append(m.Rcpt, r.dsn)
	}
	return m
}

// notifyDelivered queues the success DSN for the local recipients rs
// delivered at DATA that asked NOTIFY=SUCCESS, for a trusted client
// (see above). msg is the message as delivered.
func (s *session) notifyDelivered(ctx context.Context, rs []rcpt, msg func() io.Reader) error {
	if !s.trusted || s.from.Null || s.srv.Queue == nil {
		return nil
	}
	asked := false
	for _, r := range rs {
		asked = asked || strings.Contains(r.dsn.Notify, "SUCCESS")
	}
	if !asked {
		return nil
	}
	id, err := s.srv.Queue.PutDelivered(ctx, s.mailFor(s.from.Addr(), rs), msg())
	if err == nil && id != "" {
		s.logf("[%s/%s] success dsn %s queued for %s", s.helo, s.remote, id, s.from.Bang())
	}
	return err
}
