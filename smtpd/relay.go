package smtpd

import (
	"net/netip"
	"strings"

	"smtpfs/smtp"
)

// route decides where a recipient goes, or refuses it (replying, and
// returning false). The rules, for every client:
//
//   - user@[] and []!user (upas's loopback, also x![]!user): back to the
//     client's own address, user@[client-ip], through the queue;
//   - a domain of ours (or none, or a literal of the address the client
//     called): the local part may be a bang path; leading hops that are
//     ours are dropped (localhost!bob is bob); if a foreign hop is left,
//     the mail routes on to user@last-host (upas's native relaying), else
//     the local part must name a local box;
//   - any other domain, or a literal of another address: remote.
//
// A remote recipient needs a client that may relay (trusted, or norelay
// off); anyone else gets upas's "we don't relay". A local part with '%'
// or '@' in it (the percent hack, or quoting that hides an address) is
// refused the same way, or as an unknown user for a client that may
// relay: we do not route on it.
func (s *session) route(p mailPath) (rcpt, bool) {
	elems := strings.Split(p.Local, "!")
	if p.Domain == "[]" {
		return s.loopback(p, p.Local)
	}
	if len(elems) > 1 && elems[0] == "[]" {
		return s.loopback(p, strings.Join(elems[1:], "!"))
	}
	if len(elems) > 2 && elems[1] == "[]" {
		return s.loopback(p, strings.Join(elems[2:], "!"))
	}
	if !s.ours(p.Domain) {
		return s.relay(p, p.Addr(), p.Bang())
	}
	for len(elems) > 1 && validHop(elems[0]) && s.ours(strings.ToLower(elems[0])) {
		elems = elems[1:]
	}
	if n := len(elems); n > 1 {
		host, user := strings.ToLower(elems[n-2]), elems[n-1]
		if !validHop(host) || !isDotString(user) {
			return s.refuse(p, errPathSyntax)
		}
		return s.relay(p, user+"@"+host, p.Bang())
	}
	local := elems[0]
	if strings.ContainsAny(local, "%@") {
		if s.mayRelay() {
			return s.refuse(p, unknownUser(p))
		}
		return s.relay(p, "", p.Bang()) // refused as a relay attempt
	}
	box, err := BoxName(local)
	if err != nil {
		return s.refuse(p, errMailboxName(p.Addr()))
	}
	newBox := s.cfg.Mailer == nil && !s.takes(box) && !s.srv.Maildir.HasBox(box)
	switch {
	case newBox && !s.cfg.MkBox && box != "postmaster":
		return s.refuse(p, unknownUser(p)) // RFC 5321 §4.5.1: postmaster always
	case newBox && s.newBoxes >= maxNewBoxes:
		if !s.junk() { // not an error: the client sends the rest later
			s.reply(errNewBoxes)
		}
		return rcpt{}, false
	case newBox && !s.takeBox(box):
		if !s.junk() { // as for errNewBoxes
			s.reply(errBoxRate(p, s.remote))
		}
		return rcpt{}, false
	}
	dom := p.Domain
	if dom == "" {
		dom = s.cfg.DefaultDomain
	}
	addr := mailPath{Local: local, Domain: dom, UDomain: p.UDomain}.Addr()
	return rcpt{addr: addr, bang: p.Bang(), box: box, newBox: newBox}, true
}

// maxNewBoxes is how many boxes one message may make (mkbox on): more
// unknown users get errNewBoxes, and come again in another transaction.
// Without it a message to maxrcpts made-up users would make as many boxes.
const maxNewBoxes = 10

var errNewBoxes = smtp.Replyf(452, "4.5.3", "Too many new mailboxes for one message; send the rest later")

// errBoxRate refuses a new box to a client over mkboxperhour (boxLimiter),
// for now: 450, mailbox unavailable, temporarily blocked for policy
// reasons (RFC 5321 §4.2.3), X.7.1 (RFC 3463: not authorized).
func errBoxRate(p mailPath, client netip.Addr) *smtp.Reply {
	return smtp.Replyf(450, "4.7.1", "<%s> ... too many new mailboxes from %s this hour; try again later", p.Addr(), clientName(client))
}

// takeBox counts a box the transaction will make against the client's
// hourly allowance (boxLimiter), and reports whether it may: always for
// a trusted or authenticated client, and for postmaster.
func (s *session) takeBox(box string) bool {
	if s.trusted || box == "postmaster" {
		return true
	}
	since, ok := s.srv.boxes.take(clientNet(s.remote), s.srv.Now(), s.cfg.MkBoxPerHour)
	if ok {
		s.boxesHeld, s.boxesSince = s.boxesHeld+1, since
	}
	return ok
}

// giveBoxes gives back the boxes the transaction counted and did not
// make.
func (s *session) giveBoxes() {
	if s.boxesHeld > 0 {
		s.srv.boxes.give(clientNet(s.remote), s.boxesSince, s.boxesHeld)
		s.boxesHeld = 0
	}
}

// takes reports whether a recipient of the transaction goes to box.
func (s *session) takes(box string) bool { return s.rcptBoxes[box] }

// addRcpt adds r to the transaction unless its address is there already.
func (s *session) addRcpt(r rcpt) {
	key := strings.ToLower(r.addr)
	if s.rcptSeen[key] {
		return
	}
	if s.rcptSeen == nil {
		s.rcptSeen, s.rcptBoxes = map[string]bool{}, map[string]bool{}
	}
	s.rcptSeen[key] = true
	if r.box != "" {
		s.rcptBoxes[r.box] = true
	}
	if r.newBox {
		s.newBoxes++
	}
	s.rcpts = append(s.rcpts, r)
}

// validHop reports whether a bang path element is a host: a domain or an
// address literal.
func validHop(h string) bool {
	if strings.HasPrefix(h, "[") {
		_, ok := parseLiteral(h)
		return ok
	}
	return validDomain(h)
}

func unknownUser(p mailPath) *smtp.Reply {
	return smtp.Replyf(550, "5.1.1", "<%s> ... user unknown", p.Addr())
}

// errMailboxName refuses a local recipient whose local part BoxName
// refuses (RFC 3463 X.1.3: bad destination mailbox address syntax).
func errMailboxName(addr string) *smtp.Reply {
	return smtp.Replyf(550, "5.1.3", "<%s> ... not a valid mailbox name", addr)
}

func (s *session) refuse(p mailPath, r *smtp.Reply) (rcpt, bool) {
	s.fail(r)
	return rcpt{}, false
}

// mayRelay reports whether the client may send to remote recipients.
func (s *session) mayRelay() bool { return s.trusted || !s.cfg.NoRelay }

// remote accepts a remote recipient addr if the client may relay and the
// mail can go out.
func (s *session) relay(p mailPath, addr, bang string) (rcpt, bool) {
	if !s.mayRelay() || addr == "" {
		s.srv.Stats.RelayDenied.Add(1)
		s.failLog(errRelay, "Bad Forward %s (%s/%s) (%s)", s.from.Bang(), s.helo, s.remote, p.Bang())
		return rcpt{}, false
	}
	return s.outbound(addr, bang)
}

// loopback accepts user@[] as user@[client-ip] (upas.md §2.10).
func (s *session) loopback(p mailPath, user string) (rcpt, bool) {
	if !isDotString(user) || strings.ContainsAny(user, "!%@") {
		return s.refuse(p, errPathSyntax)
	}
	lit := smtp.FormatLiteral(s.remote)
	return s.outbound(user+"@"+lit, lit+"!"+user)
}

// outbound accepts a recipient that leaves through the queue or the
// mailer; without either, it is refused for now, not lost.
func (s *session) outbound(addr, bang string) (rcpt, bool) {
	if s.cfg.Mailer == nil && s.srv.Queue == nil {
		s.fail(smtp.Replyf(451, "4.3.0", "<%s> cannot be queued now; try again later", addr))
		return rcpt{}, false
	}
	return rcpt{addr: addr, bang: bang}, true
}
