package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"smtpfs/smtp"
)

var (
	errBareEOLReply  = smtp.Replyf(554, "5.6.0", "message refused: bare CR or LF; lines must end in CRLF (RFC 5321 2.3.8)")
	errLongLineReply = smtp.Replyf(554, "5.6.0", "message refused: line longer than 1000 octets (RFC 5321 4.5.3.1.6)")
	errLoop          = smtp.Replyf(554, "5.4.6", "message refused: more than 100 Received: lines, a mail loop")
	errGreylisted    = &smtp.Reply{Code: 451, Enh: "4.7.1", Lines: []string{"please try again soon from the same IP."}} // upas's text after the code RFC 2034 asks for
)

// data serves DATA (RFC 5321 §4.1.1.4): the checks for untrusted clients,
// 354, the message, then the reply, which is 250 only once the message is
// safe. The transaction ends whatever the outcome.
func (s *session) data(string) {
	if s.chunks != nil { // RFC 3030 §3: not in a BDAT transaction
		s.fail(errSequence)
		return
	}
	defer s.resetTxn()
	v := Accept
	if !s.trusted {
		var ok bool
		if v, ok = s.screen(); !ok {
			return
		}
	}
	s.reply(smtp.Replyf(354, "", "Input message; end with <CRLF>.<CRLF>"))
	if s.flush() != nil {
		return
	}
	sp := newSpool(filepath.Join(s.srv.Root, "tmp"), &s.srv.mem)
	defer sp.Close()
	s.in.perRead = s.cfg.DataTimeout
	_, err := readData(s.r, sp, s.cfg.MaxSize, 2*s.cfg.MaxSize+1<<20)
	s.in.perRead = 0
	s.conn.SetReadDeadline(time.Time{})
	s.received(sp, v, err)
}

// received finishes a message read by DATA or BDAT, whose reading ended
// in err, with the verdict v of screen: the checks of the message, then
// the delivery and its reply.
func (s *session) received(sp *spool, v Verdict, err error) {
	if err == nil {
		err = sp.finish()
	}
	h := scanHeader(sp.head(maxHeaderScan))
	if !h.ended && sp.Size() > maxHeaderScan { // a long header: read it whole (mailauth.go)
		h = scanHeaderMax(sp.head(maxAuthHeader), maxAuthHeader)
	}
	s.utf8Msg = s.needsUTF8(sp, h)
	s.transcribe(sp, h)
	if r := s.dataFailed(err, sp); r != nil {
		s.srv.Stats.Rejected.Add(1)
		if !s.broken {
			s.fail(r)
		}
		return
	}
	if v == Block || v == Delay {
		s.blocked(v, sp, h)
		return
	}
	if r := s.checkSubmission(h); r != nil {
		s.srv.Stats.Rejected.Add(1)
		s.fail(r)
		return
	}
	if h.received > maxReceived {
		s.srv.Stats.Rejected.Add(1)
		s.fail(errLoop)
		return
	}
	if !h.ended && sp.Size() > maxAuthHeader {
		s.srv.Stats.Rejected.Add(1)
		s.fail(errHeaderLong)
		return
	}
	s.stripAuthResults(sp, h)
	if r := s.checkMessage(sp, h); r != nil {
		s.srv.Stats.Rejected.Add(1)
		s.fail(r)
		return
	}
	if r := s.srv.roomFor(s.cfg.MinFree, sp.Size()); r != nil {
		s.srv.Stats.Rejected.Add(1)
		s.reply(r)
		return
	}
	s.deliver(sp, h)
}

// dataFailed maps an error of readData to its reply; an error that leaves
// the protocol out of step also ends the session.
func (s *session) dataFailed(err error, sp *spool) *smtp.Reply {
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case err == errTooBig:
		return errSize
	case err == errBareEOL:
		return errBareEOLReply
	case err == errLongLine:
		return errLongLineReply
	case err == errWayTooBig:
		s.quit = true
		return errSize
	case errors.As(err, &ne) && ne.Timeout():
		s.srv.Stats.Timeouts.Add(1)
		s.quit, s.abandoned = true, true
		return smtp.Replyf(421, "4.4.2", "%s timeout", s.cfg.DefaultDomain)
	case sp.err != nil && err == sp.err:
		s.logf("[%s/%s] spooling message: %v", s.helo, s.remote, err)
		return smtp.Replyf(451, "4.3.0", "local error spooling the message; try again later")
	}
	s.logf("[%s/%s] %s: connection lost in DATA: %v", s.helo, s.remote, s.from.Bang(), err)
	s.broken, s.quit, s.abandoned = true, true, true
	return errSequence // not sent: there is nobody to tell
}

// screen runs the checks at DATA for an untrusted client (upas.md
// §2.7.4, §2.12.1): the sender domain, the lib/blocked verdict, the
// greylist. It answers when it refuses and returns ok false; Block and
// Delay come back with ok true: the message is read, then refused.
func (s *session) screen() (Verdict, bool) {
	if r := s.checkSender(); r != nil {
		s.srv.Stats.Rejected.Add(1)
		s.failLog(r, "[%s/%s] %s -> %s sendercheck: %s", s.helo, s.remote, s.from.Bang(), s.rcptList(), strings.Join(r.Lines, " "))
		return Accept, false
	}
	v := Accept
	if s.srv.Classifier != nil {
		sender := ""
		if !s.from.Null {
			sender = strings.ToLower(s.from.Bang())
		}
		v = s.srv.Classifier.Classify(s.remote, sender)
	}
	who := fmt.Sprintf("%s (%s/%s) (%s)", s.from.Bang(), s.helo, s.remote, s.rcptList())
	if v != Accept && s.optedOut() {
		s.logf("Not filtered %s: every recipient has nospamfiltering", who)
		v = Accept
	}
	switch v {
	case Block, Delay:
		s.srv.Stats.Blocked.Add(1)
		s.logf("Blocked %s", who) // the refusal after the message counts as the error
		return v, true
	case Deny:
		s.srv.Stats.Blocked.Add(1)
		s.failLog(&smtp.Reply{Code: 554, Enh: "5.7.1", Lines: []string{
			fmt.Sprintf("We don't accept mail from %s.", s.from.Bang()),
			fmt.Sprintf("Contact postmaster@%s for more information.", s.cfg.DefaultDomain)}}, "Denied %s", who)
		return v, false
	case Dial:
		s.srv.Stats.Blocked.Add(1)
		s.dialup = true
		s.failLog(errDialup, "Dialup %s", who)
		return v, false
	}
	if s.cfg.Greylist && s.srv.Greylister != nil {
		if !s.greyCheck() {
			s.srv.Stats.Greylisted.Add(1)
			s.reply(errGreylisted)
			s.quit = true
			return v, false
		}
	}
	return v, true
}

// optedOut reports whether every recipient is a local user who opted out
// of lib/blocked with a file box/<user>/nospamfiltering (upas.md §2.9):
// then the verdict is waived, and the greylist still applies.
func (s *session) optedOut() bool {
	for _, r := range s.rcpts {
		if r.box == "" {
			return false
		}
		if _, err := os.Stat(filepath.Join(s.srv.Maildir.Dir, r.box, "nospamfiltering")); err != nil {
			return false
		}
	}
	return len(s.rcpts) > 0
}

// checkSender is the sender domain check (verifysenderdom, -r): the
// domain of a sender must have an MX, A or AAAA record. An address literal
// and the null sender pass.
func (s *session) checkSender() *smtp.Reply {
	d := s.from.Domain
	if !s.cfg.VerifySenderDom || s.srv.Resolver == nil || s.from.Null || strings.HasPrefix(d, "[") {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.srv.drainCtx, 30*time.Second)
	defer cancel()
	ok, err := s.srv.Resolver.DomainExists(ctx, d)
	switch {
	case err != nil:
		return smtp.Replyf(450, "4.7.0", "Sender domain %s could not be checked: try again later", d)
	case !ok:
		return smtp.Replyf(554, "5.7.1", "Sender domain must exist: %s", s.from.Bang())
	}
	return nil
}

// blocked finishes a message refused by a Block or Delay verdict: saved
// under queue.dump with saveblockedmsg, then 554 or 450.
func (s *session) blocked(v Verdict, sp *spool, h headerInfo) {
	s.srv.Stats.Rejected.Add(1)
	if s.cfg.SaveBlockedMsg {
		name, err := s.srv.dump(s.message(sp, h, newID()))
		if err != nil {
			s.logf("saving blocked message: %v", err)
		} else {
			s.logf("[%s/%s] blocked message saved as %s", s.helo, s.remote, name)
		}
	}
	if v == Delay {
		s.fail(smtp.Replyf(450, "4.3.0", "There will be a delay in delivery of this message."))
		return
	}
	s.fail(smtp.Replyf(554, "5.7.1", "we believe this is spam."))
}

// deliver hands the message on: to the mailer, or to the Maildirs of the
// local recipients and the queue for the remote ones. It answers 250 only
// when that has succeeded.
func (s *session) deliver(sp *spool, h headerInfo) {
	id := newID()
	var qid string
	var err error
	if s.cfg.Mailer != nil {
		err = s.runMailer(s.message(sp, h, id))
	} else {
		qid, err = s.store(sp, h, id)
	}
	if err != nil {
		s.srv.Stats.Rejected.Add(1)
		var r *smtp.Reply
		if !errors.As(err, &r) {
			s.logf("[%s/%s] %s: delivery failed: %v", s.helo, s.remote, s.from.Bang(), err)
			r = smtp.Replyf(451, "4.3.0", "local error delivering the message; try again later")
		}
		s.fail(r)
		return
	}
	s.srv.Stats.Accepted.Add(1)
	s.lstats().Accepted.Add(1)
	s.srv.Stats.Bytes.Add(sp.Size())
	s.loopbackSent()
	q := ""
	if qid != "" {
		q = " queued " + qid
	}
	s.logf("[%s/%s] %s sent %d bytes to %s id %s%s", s.helo, s.remote, s.from.Bang(), sp.Size(), s.rcptList(), id, q)
	s.reply(smtp.Replyf(250, "2.5.0", "sent"))
}

// store puts the message in the Maildirs of the local recipients, then in
// the queue for the remote ones (from <> for an untrusted client). If the queue fails after the Maildirs
// took it, the client's retry delivers it locally a second time: a
// duplicate, never a loss.
func (s *session) store(sp *spool, h headerInfo, id string) (string, error) {
	var local []string
	var localR, remote []rcpt
	for _, r := range s.rcpts {
		if r.box != "" {
			local, localR = append(local, r.addr), append(localR, r)
		} else {
			remote = append(remote, r)
		}
	}
	ctx, cancel := context.WithTimeout(s.srv.killCtx, s.cfg.DataTimeout)
	defer cancel()
	if len(local) > 0 {
		s.boxesHeld = 0 // Deliver makes the boxes first: they count
		if err := s.srv.Maildir.Deliver(ctx, s.from.Addr(), local, s.message(sp, h, id)); err != nil {
			return "", err
		}
		s.srv.Stats.Maildir.Add(int64(len(local)))
		if err := s.notifyDelivered(ctx, localR, func() io.Reader { return s.message(sp, h, id) }); err != nil {
			return "", err
		}
	}
	if len(remote) == 0 {
		return "", nil
	}
	if s.srv.Queue == nil { // checked at RCPT; the server's fields may not change
		return "", smtp.Replyf(451, "4.3.0", "no queue for remote mail; try again later")
	}
	// A client neither trusted nor authenticated can only reach the queue
	// through upas's user@[] loopback (or with norelay off), and its sender
	// is its word alone: forged, a bounce would carry the client's text to
	// a victim (backscatter). Queued from <>, the message is never bounced
	// nor warned about (RFC 5321 §4.5.5).
	from := s.from.Addr()
	if !s.trusted {
		from = ""
	}
	m := s.mailFor(from, remote)
	m.Params.SMTPUTF8 = s.utf8Msg // RFC 6531 §3.4: utf8.go
	qid, err := s.srv.Queue.PutMail(ctx, m, s.signed(sp, h, id))
	if err != nil {
		return "", err
	}
	s.srv.Stats.Queued.Add(1)
	if !s.trusted && !s.from.Null {
		s.logf("[%s/%s] %s queued from <> for an untrusted client: sender %s", s.helo, s.remote, qid, s.from.Bang())
	}
	return qid, nil
}

// message returns the message as it is delivered: the header lines we
// add, then the message, with an empty line put in where a header ended
// without one. CRLF line ends, no dot-stuffing.
func (s *session) message(sp *spool, h headerInfo, id string) io.Reader {
	pre := bytes.NewReader(s.added(h, id))
	if h.blank && s.stripped == nil {
		return io.MultiReader(pre, sp.Reader(0))
	}
	var head io.Reader = io.NewSectionReader(sp, 0, int64(h.end))
	if s.stripped != nil { // without forged Authentication-Results fields
		head = bytes.NewReader(s.stripped)
	}
	if h.blank {
		return io.MultiReader(pre, head, sp.Reader(int64(h.end)))
	}
	return io.MultiReader(pre, head, strings.NewReader("\r\n"), sp.Reader(int64(h.end)))
}

// added returns the header lines we put in front of a message: our
// Received: line; our Authentication-Results: field and a quarantine
// field (mailauth.go); upas's X-warning: lines for a client that may not relay
// (upas.md §2.11.3); From: and To: when the message has none (upas.md
// §2.12.2, with RFC 5322 addresses).
func (s *session) added(h headerInfo, id string) []byte {
	var b bytes.Buffer
	with := "SMTP"
	if s.esmtp {
		with = "ESMTP"
		if s.tls {
			with += "S"
		}
		if s.authUser != "" {
			with += "A"
		}
	}
	if s.utf8Msg { // RFC 6531 §3.7.3: UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA, for a message that uses it
		with = "UTF8" + strings.TrimPrefix(with, "E")
	}
	fmt.Fprintf(&b, "Received: from %s by %s with %s id %s", s.receivedFrom(), s.cfg.Hostname, with, id)
	if len(s.rcpts) == 1 {
		fmt.Fprintf(&b, " for <%s>", s.rcpts[0].addr)
	}
	fmt.Fprintf(&b, "; %s\r\n", s.srv.Now().Format(time.RFC1123Z))
	b.WriteString(s.authRes) // mailauth.go: for a message from outside
	b.WriteString(s.quarantine)
	if s.cfg.NoRelay && !s.trusted {
		for _, w := range s.warnings(h) {
			fmt.Fprintf(&b, "X-warning: %s\r\n", w)
		}
	}
	if !h.originator {
		from := s.from.Addr()
		if s.from.Null {
			from = "MAILER-DAEMON@" + heloDomain(s.helo)
		}
		fmt.Fprintf(&b, "From: %s\r\n", from)
	}
	if !h.destination {
		b.WriteString("To: " + strings.Join(s.rcptAddrs(), ",\r\n\t") + "\r\n")
	}
	b.Write(s.submitHeaders(h, id))
	return b.Bytes()
}

// warnings returns upas's masquerade warnings: a sender or header address
// in one of our domains from a client that may not relay.
func (s *session) warnings(h headerInfo) []string {
	var w []string
	if !s.from.Null && s.ours(s.from.Domain) {
		w = append(w, "suspect envelope domain")
	}
	for _, v := range h.sender {
		d, ok := addrDomain(v, s.helo)
		if !ok || !s.ours(strings.ToLower(d)) {
			return w // a list exploder: its From: is not suspect
		}
		w = append(w, "suspect Sender: domain")
	}
	for _, v := range h.from {
		if d, ok := addrDomain(v, s.helo); ok && s.ours(strings.ToLower(d)) {
			w = append(w, "suspect From: domain")
		}
	}
	return w
}

func (s *session) rcptAddrs() []string {
	var l []string
	for _, r := range s.rcpts {
		l = append(l, r.addr)
	}
	return l
}

func (s *session) rcptList() string {
	var l []string
	for _, r := range s.rcpts {
		l = append(l, r.bang)
	}
	return strings.Join(l, ", ")
}

// transcribe records a message in the debug transcript: its header, not
// its body.
func (s *session) transcribe(sp *spool, h headerInfo) {
	if s.tr == nil {
		return
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(string(sp.head(h.end)), "\r\n"), "\r\n") {
		s.tr.in(l)
	}
	s.tr.in(fmt.Sprintf("(%d bytes of body elided)", sp.Size()-int64(h.end)))
	s.tr.in(".")
}
