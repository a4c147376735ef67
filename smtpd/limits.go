package smtpd

import (
	"fmt"

	"smtpfs/smtp"
)

// LIMITS (RFC 9422): EHLO says the limits a client would otherwise learn
// by failing, so that it can split its work before it starts:
//
//   - RCPTMAX is maxrcpts: recipients of one transaction; past it RCPT
//     gets 452 4.5.3 and the client sends the rest in another transaction
//     (RFC 9422 §4.2; RFC 5321 §4.5.3.1.10).
//   - MAILMAX is maxmails: transactions of one session, counting every
//     MAIL command that reaches us, accepted or not (RFC 9422 §4.1); the
//     next MAIL gets 421 4.7.0 and the session ends, and the client goes on
//     in a new one. It bounds what one connection may hold on to, as
//     maxconns bounds connections.
//
// RCPTDOMAINMAX is not said: we take recipients of any number of domains.

// limitsKeyword is the LIMITS line of EHLO.
func (s *session) limitsKeyword() string {
	return fmt.Sprintf("LIMITS RCPTMAX=%d MAILMAX=%d", s.cfg.MaxRcpts, s.cfg.MaxMails)
}

// countMail counts a MAIL command against MAILMAX, and ends the session
// (returning false) when it is one too many.
func (s *session) countMail() bool {
	if s.mails >= s.cfg.MaxMails {
		s.logf("[%s/%s] %d transactions in one session (maxmails); closing", s.helo, s.remote, s.mails)
		s.reply(smtp.Replyf(421, "4.7.0", "%s too many transactions in one session (MAILMAX %d); go on in a new one", s.cfg.DefaultDomain, s.cfg.MaxMails))
		s.quit = true
		return false
	}
	s.mails++
	return true
}
