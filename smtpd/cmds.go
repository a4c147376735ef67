package smtpd

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"smtpfs/smtp"
)

// argKind says whether a command takes an argument.
type argKind uint8

const (
	argNone argKind = iota
	argOpt
	argReq
)

// A cmdSpec is one entry of the command table: the states the command is
// allowed in, its argument, its handler, and whether it is junk: a command
// that moves no mail, of which an untrusted session may send maxJunk. The
// handler sends its own replies; it sets s.quit to end the session.
type cmdSpec struct {
	states state
	arg    argKind
	fn     func(s *session, arg string)
	junk   bool
}

// commands is the command table (RFC 5321 §4.1.1, §4.1.4 for the order;
// stricter than upas, upas.md §9.15: MAIL needs HELO/EHLO, RCPT needs MAIL,
// AUTH and STARTTLS are not allowed inside a transaction). It is filled in
// by init because the handlers refer back to it.
var commands map[string]cmdSpec

func init() {
	commands = map[string]cmdSpec{
		"HELO":     {stAny, argReq, (*session).heloCmd, true},
		"EHLO":     {stAny, argReq, (*session).ehloCmd, true},
		"MAIL":     {stHelo, argReq, (*session).mail, false},
		"RCPT":     {stMail | stRcpt, argReq, (*session).rcpt, false},
		"DATA":     {stRcpt, argNone, (*session).data, false},
		"RSET":     {stAny, argNone, (*session).rset, true},
		"NOOP":     {stAny, argOpt, (*session).noop, true},
		"HELP":     {stAny, argOpt, (*session).help, true},
		"VRFY":     {stAny, argReq, (*session).vrfy, true},
		"EXPN":     {stAny, argReq, (*session).vrfy, true},
		"QUIT":     {stAny, argNone, (*session).quitCmd, false},
		"STARTTLS": {stInit | stHelo, argNone, (*session).starttls, false},
		"AUTH":     {stHelo, argReq, (*session).auth, false},
		"BDAT":     {stAny, argReq, (*session).bdat, false}, // dispatched before the state check (bdat.go)
	}
}

// seqErrors are the replies to a command out of sequence, upas's texts
// where it had them (with enhanced codes that fit a 503).
var seqErrors = []struct {
	verb  string
	in    state
	reply *smtp.Reply
}{
	{"MAIL", stInit, smtp.Replyf(503, "5.5.1", "Start by saying HELO, please.")},
	{"MAIL", stMail | stRcpt, smtp.Replyf(503, "5.5.1", "Sender already specified")},
	{"RCPT", stInit, smtp.Replyf(503, "5.5.1", "Start by saying HELO, please")},
	{"RCPT", stHelo, smtp.Replyf(503, "5.5.1", "Need MAIL before RCPT")},
	{"DATA", stInit | stHelo, smtp.Replyf(503, "5.5.1", "Data without MAIL FROM:")},
	{"DATA", stMail, smtp.Replyf(503, "5.5.1", "Data without RCPT TO:")},
}

var errSequence = smtp.Replyf(503, "5.5.1", "Bad sequence of commands")

func seqError(verb string, in state) *smtp.Reply {
	for _, e := range seqErrors {
		if e.verb == verb && e.in&in != 0 {
			return e.reply
		}
	}
	return errSequence
}

var (
	errDialup = smtp.Replyf(554, "5.7.1", "We don't accept mail from dial-up ports.")
	errRelay  = smtp.Replyf(550, "5.7.1", "we don't relay.  send to your-path@[] for loopback.")
	errLiar   = smtp.Replyf(554, "5.7.0", "Liar!")
)

func (s *session) heloCmd(arg string) { s.hello(arg, false) }
func (s *session) ehloCmd(arg string) { s.hello(arg, true) }

// hello serves HELO and EHLO (RFC 5321 §4.1.1.1): it resets the
// transaction and, for EHLO, lists the extensions.
func (s *session) hello(name string, esmtp bool) {
	if !validHelo(name) {
		s.fail(smtp.Replyf(501, "5.5.4", "bad HELO name"))
		return
	}
	verb := "helo"
	if esmtp {
		verb = "ehlo"
	}
	s.logf("%s from %s as %s", verb, s.remote, name)
	s.resetTxn()
	s.state, s.esmtp, s.helo = stHelo, esmtp, name
	if s.cfg.HeloCheck && !s.trusted {
		if why := s.checkHelo(name); why != "" {
			s.tarpitHelo()
			s.failLog(errLiar, "Hung up on %s; claimed to be %s (%s)", s.remote, name, why)
			s.quit = true
			return
		}
	}
	s.tarpitHelo()
	greet := fmt.Sprintf("%s you are %s", s.cfg.DefaultDomain, name)
	if !esmtp {
		s.reply(smtp.Replyf(250, "", "%s", greet))
		return
	}
	lines := []string{greet, "PIPELINING", fmt.Sprintf("SIZE %d", s.cfg.MaxSize), "8BITMIME", "SMTPUTF8", "CHUNKING", s.limitsKeyword(), "ENHANCEDSTATUSCODES"}
	// DSN (RFC 3461), and REQUIRETLS on a TLS session without a mailer
	// only (RFC 8689 §3), before ENHANCEDSTATUSCODES (dsn.go).
	dsn := []string{"DSN"}
	if s.requireTLSOK() {
		dsn = append(dsn, "REQUIRETLS")
	}
	lines = slices.Insert(lines, len(lines)-1, dsn...)
	if s.cfg.TLSCert != nil && !s.tls {
		lines = append(lines, "STARTTLS")
	}
	switch {
	case s.secrets().Len() == 0: // nobody could authenticate: offering AUTH only invites guessing
	case s.submit() && !s.tls: // submission: AUTH after STARTTLS only
	case s.plaintextOK():
		lines = append(lines, "AUTH CRAM-MD5 PLAIN LOGIN")
	default:
		lines = append(lines, "AUTH CRAM-MD5")
	}
	s.reply(&smtp.Reply{Code: 250, Lines: lines})
}

// validHelo accepts a domain (a final dot allowed) or an address literal
// (RFC 5321 §4.1.1.1). The name goes into Received: and the log.
func validHelo(name string) bool {
	if strings.HasPrefix(name, "[") {
		_, ok := parseLiteral(name)
		return ok && name != "[]"
	}
	return validDomain(strings.TrimSuffix(name, "."))
}

// tarpitHelo is the tarpit before the HELO reply: the normal delay, or the
// long one for the class-A networks upas's man page names (upas.md §2.2,
// where a bug kept it from ever firing); none for trusted clients.
func (s *session) tarpitHelo() {
	if !s.cfg.Tarpit || s.trusted || s.submit() {
		return
	}
	d := s.cfg.TarpitShort
	if spammyNet(s.remote) {
		d = s.cfg.TarpitLong
	}
	s.delay(d)
}

func spammyNet(ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	switch b := ip.As4()[0]; {
	case b == 58, b == 66, b == 71, b >= 76 && b <= 89, b == 190, b == 201, b == 217:
		return true
	}
	return false
}

// reservedTLDs and exampleDomains fail the HELO checks (RFC 2606, RFC 6761).
var (
	reservedTLDs   = []string{"localdomain", "localhost", "local", "example", "invalid", "lan", "test"}
	exampleDomains = []string{"example.com", "example.net", "example.org"}
)

// checkHelo is upas's HELO check (helocheck on, untrusted clients,
// upas.md §2.7.1) and returns why name fails, or "". An address literal
// must be the client's address (upas refused them all); a DNS failure
// passes.
func (s *session) checkHelo(name string) string {
	if s.remote == s.local {
		return ""
	}
	if a, ok := parseLiteral(name); ok {
		if a != s.remote {
			return "not the client's address"
		}
		return ""
	}
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	labels := strings.Split(n, ".")
	switch {
	case n == s.cfg.DefaultDomain || n == s.cfg.Hostname:
		return "our name"
	case len(labels) < 2:
		return "no dot"
	case strings.Trim(n, "0123456789.") == "":
		return "no letter"
	case contains(reservedTLDs, labels[len(labels)-1]):
		return "reserved domain"
	case contains(exampleDomains, strings.Join(labels[len(labels)-2:], ".")):
		return "example domain"
	}
	if s.srv.Resolver != nil {
		ctx, cancel := context.WithTimeout(s.srv.drainCtx, 30*time.Second)
		defer cancel()
		if ok, err := s.srv.Resolver.DomainExists(ctx, n); err == nil && !ok {
			return "not in DNS"
		}
	}
	return ""
}

// plaintextOK reports whether PLAIN and LOGIN may be used: over TLS, or
// with plaintextauth on.
func (s *session) plaintextOK() bool { return s.tls || s.cfg.PlaintextAuth }

// mail serves MAIL FROM (RFC 5321 §4.1.1.2) with the parameters we offer:
// SIZE (RFC 1870), BODY (RFC 6152), AUTH (RFC 4954 §5), and RET, ENVID
// (RFC 3461) and REQUIRETLS (RFC 8689) (dsn.go).
func (s *session) mail(arg string) {
	s.cfg = s.srv.Config() // ctl changes take effect at the next transaction
	s.out.timeout = s.cfg.CmdTimeout
	s.trusted = s.authUser != "" || s.cfg.Trusted(s.remote)
	if !s.countMail() {
		return
	}
	if (s.cfg.RequireAuth || s.submit()) && s.authUser == "" {
		s.lstats().NoAuth.Add(1)
		s.fail(errNeedAuth)
		return
	}
	p, params, err := parsePathArg(arg, "FROM:")
	if err != nil {
		s.fail(err)
		return
	}
	seen := map[string]bool{}
	var size int64
	s.utf8 = false // an earlier MAIL that failed said nothing
	var dp smtp.Params
	for _, pm := range params {
		if seen[pm.key] && pm.key != "SMTPUTF8" { // a flag: Python's send_message says it twice
			s.fail(errArgs)
			return
		}
		seen[pm.key] = true
		if ok, r := s.dsnMailParam(pm, &dp); ok {
			if r != nil {
				s.fail(r)
				return
			}
			continue
		}
		if r := s.mailParam(pm, &size); r != nil {
			s.fail(r)
			return
		}
	}
	if r := s.checkUTF8(p, params); r != nil {
		s.fail(r)
		return
	}
	if r := s.srv.roomFor(s.cfg.MinFree, size); r != nil {
		if !s.junk() { // our trouble, not an error of the client's
			s.reply(r)
		}
		return
	}
	if !p.Null && p.Domain == "" {
		p.Domain = heloDomain(s.helo) // upas: a domainless sender is him!sender
	}
	if r := s.submitSender(p); r != nil {
		s.fail(r)
		return
	}
	s.from, s.state, s.params = p, stMail, dp
	s.checkSPF()
	s.reply(smtp.Replyf(250, "2.0.0", "sender is %s", p.Bang()))
}

// mailParam checks one parameter of MAIL; SIZE's value goes into size.
func (s *session) mailParam(pm param, size *int64) *smtp.Reply {
	switch pm.key {
	case "SIZE":
		n, ok := parseSize(pm.value)
		if !ok {
			return errArgs
		}
		if n > s.cfg.MaxSize {
			return errSize
		}
		*size = n
	case "BODY":
		switch strings.ToUpper(pm.value) {
		case "7BIT":
		case "8BITMIME":
			s.body8 = true
		default:
			return errArgs
		}
	case "AUTH": // the submitter's identity, which we do not use (RFC 4954 §5 lets us ignore it)
	case "SMTPUTF8":
		return s.utf8Param(pm)
	default:
		return errParam
	}
	return nil
}

var errSize = smtp.Replyf(552, "5.3.4", "message size exceeds fixed maximum message size")

// heloDomain returns the HELO name as a domain for a domainless sender.
func heloDomain(helo string) string {
	if strings.HasPrefix(helo, "[") {
		if a, ok := parseLiteral(helo); ok {
			return smtp.FormatLiteral(a)
		}
	}
	return strings.ToLower(strings.TrimSuffix(helo, "."))
}

// rcpt serves RCPT TO (RFC 5321 §4.1.1.3) with DSN's NOTIFY and ORCPT
// (dsn.go).
func (s *session) rcpt(arg string) {
	if len(s.rcpts) >= s.cfg.MaxRcpts {
		if !s.junk() { // RFC 5321 §4.5.3.1.10: not an error
			s.reply(smtp.Replyf(452, "4.5.3", "Too many recipients"))
		}
		return
	}
	p, params, err := parsePathArg(arg, "TO:")
	var dp smtp.RcptParams
	if err == nil {
		dp, err = parseRcptParams(params)
	}
	if err == nil && p.Null {
		err = errPathSyntax
	}
	if err == nil {
		err = s.checkUTF8(p, params)
	}
	if err != nil {
		s.fail(err)
		return
	}
	if r := s.spfRefusal(); r != nil {
		s.fail(r)
		return
	}
	r, ok := s.route(p)
	if !ok || !s.loopbackOK(r) {
		return
	}
	r.dsn = dp
	s.addRcpt(r) // said twice: accepted, delivered once
	s.state = stRcpt
	s.reply(smtp.Replyf(250, "2.0.0", "receiver is %s", r.bang))
}

func (s *session) rset(string) {
	s.resetTxn()
	s.reply(smtp.Replyf(250, "2.0.0", "ok"))
}

func (s *session) noop(string) {
	s.reply(smtp.Replyf(250, "2.0.0", "Nothing to see here. Move along ..."))
}

func (s *session) help(string) {
	s.reply(smtp.Replyf(250, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321"))
}

// vrfy answers VRFY and EXPN without telling who exists (RFC 5321 §3.5.3).
func (s *session) vrfy(string) {
	s.reply(smtp.Replyf(252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery"))
}

func (s *session) quitCmd(string) {
	s.reply(smtp.Replyf(221, "2.0.0", "Successful termination"))
	s.quit = true
}

// starttls serves STARTTLS (RFC 3207). Bytes the client sent after the
// command, before the handshake, would be taken as commands of the TLS
// session (CVE-2011-0411), so their presence closes the session. After the
// handshake the session starts afresh: the client must EHLO again, and
// what it said or proved before (even AUTH) is forgotten (RFC 3207 §4.2).
func (s *session) starttls(string) {
	if s.tls {
		s.fail(errSequence)
		return
	}
	if s.cfg.TLSCert == nil {
		s.fail(smtp.Replyf(454, "4.7.5", "TLS not available"))
		return
	}
	if s.r.Buffered() > 0 {
		s.failLog(smtp.Replyf(554, "5.5.1", "commands pipelined after STARTTLS; goodbye"),
			"[%s/%s] commands pipelined after STARTTLS; hanging up", s.helo, s.remote)
		s.quit = true
		return
	}
	s.reply(smtp.Replyf(220, "2.0.0", "Go ahead make my day"))
	if s.flush() != nil {
		return
	}
	if !s.handshake() {
		return
	}
	s.logf("started TLS with %s/%s", s.helo, s.remote)
	s.resetTxn()
	s.state, s.helo, s.esmtp, s.authUser = stInit, "", false, ""
	s.trusted = s.cfg.Trusted(s.remote)
}
