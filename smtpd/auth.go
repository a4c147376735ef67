package smtpd

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"smtpfs/smtp"
)

// maxAuthFails is how many failed AUTH commands a session may make; after
// that AUTH is refused for the rest of it.
const maxAuthFails = 3

var (
	errAuthFailed    = smtp.Replyf(535, "5.7.1", "Authentication failed")
	errAuthCancelled = smtp.Replyf(501, "5.7.0", "Authentication cancelled")
	errBase64        = smtp.Replyf(501, "5.5.4", "Cannot decode base64")
	errEncryption    = smtp.Replyf(538, "5.7.1", "Encryption required for requested authentication mechanism")
	errTooManyAuth   = smtp.Replyf(503, "5.7.0", "too many authentication failures")
	errAuthLocked    = smtp.Replyf(454, "4.7.0", "too many authentication failures, try later")
	errNoAuth        = smtp.Replyf(502, "5.5.1", "AUTH not available") // no users: not offered either
	errCRAMSyntax    = smtp.Replyf(501, "5.5.4", "Poorly formed CRAM-MD5 response")
)

// auth serves AUTH (RFC 4954) with CRAM-MD5 (RFC 2195), and PLAIN (RFC
// 4616) and LOGIN only over TLS or with plaintextauth; none of them when
// lib/secrets has no users (AUTH is not offered then). Failures count
// as errors (and so meet the tarpit); after maxAuthFails the session may
// not try again, and a client that keeps failing across sessions is
// locked out for a while (AuthLimiter). Success makes the session trusted.
//
// The lockout is checked when AUTH starts and again at the verdict: a
// guesser may open many sessions, start AUTH in each and answer them all
// once the challenges are in hand, and the answers judged after the
// lockout began must get 454 too, the right password included.
func (s *session) auth(arg string) {
	limited := !s.cfg.Trusted(s.remote)
	switch {
	case s.secrets().Len() == 0:
		s.fail(errNoAuth)
		return
	case s.authUser != "":
		s.fail(errSequence)
		return
	case s.submit() && !s.tls:
		s.fail(errNeedTLS)
		return
	case s.authFails >= maxAuthFails:
		s.fail(errTooManyAuth)
		return
	case limited && s.authLocked():
		s.fail(errAuthLocked)
		return
	}
	mech, initial, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	s.logf("auth(%s, (protected)) from %s/%s", mech, s.helo, s.remote)
	var user string
	var ok bool
	var r *smtp.Reply
	switch {
	case mech == "CRAM-MD5" && initial == "":
		user, ok, r = s.authCRAM()
	case mech == "CRAM-MD5":
		r = errArgs // RFC 2195: the server speaks first
	case (mech == "PLAIN" || mech == "LOGIN") && !s.plaintextOK():
		r = errEncryption
	case mech == "PLAIN":
		user, ok, r = s.authPlain(initial)
	case mech == "LOGIN":
		user, ok, r = s.authLogin(initial)
	default:
		r = smtp.Replyf(504, "5.5.4", "Unrecognised authentication type %s", mech)
	}
	switch {
	case s.quit:
	case r != nil:
		s.fail(r)
	case limited && s.authLocked():
		s.fail(errAuthLocked)
	case ok:
		s.authUser, s.trusted = user, true
		s.srv.Stats.AuthOK.Add(1)
		s.lstats().AuthOK.Add(1)
		s.logf("authenticated %q (%s) from %s/%s", user, mech, s.helo, s.remote)
		s.reply(smtp.Replyf(235, "2.0.0", "Authentication successful"))
	default:
		s.authFails++
		s.srv.Stats.AuthFailed.Add(1)
		s.lstats().AuthFailed.Add(1)
		s.failLog(errAuthFailed, "authentication failed: %s %q from %s/%s", mech, user, s.helo, s.remote)
		if limited {
			s.authFailed()
		}
	}
}

// authPlain checks authzid NUL authcid NUL password (RFC 4616 §2); the
// authzid must be empty or the authcid.
func (s *session) authPlain(initial string) (string, bool, *smtp.Reply) {
	resp, r := s.authInitial(initial, "")
	if r != nil || s.quit {
		return "", false, r
	}
	f := bytes.Split(resp, []byte{0})
	if len(f) != 3 {
		return "", false, nil
	}
	user := string(f[1])
	if len(f[0]) > 0 && string(f[0]) != user {
		return user, false, nil
	}
	return user, s.secrets().checkPassword(user, string(f[2])), nil
}

// authLogin asks for the user name (unless given at once) and password.
func (s *session) authLogin(initial string) (string, bool, *smtp.Reply) {
	u, r := s.authInitial(initial, "Username:")
	if r != nil || s.quit {
		return "", false, r
	}
	user := string(u)
	pw, r := s.authResponse("Password:")
	if r != nil || s.quit {
		return user, false, r
	}
	return user, s.secrets().checkPassword(user, string(pw)), nil
}

// authCRAM sends a challenge <random.time@hostname> and checks the
// answer "user hex-digest".
func (s *session) authCRAM() (string, bool, *smtp.Reply) {
	var b [8]byte
	rand.Read(b[:])
	challenge := fmt.Sprintf("<%d.%d@%s>", binary.BigEndian.Uint64(b[:])>>1, s.srv.Now().Unix(), s.cfg.Hostname)
	resp, r := s.authResponse(challenge)
	if r != nil || s.quit {
		return "", false, r
	}
	i := bytes.LastIndexByte(resp, ' ')
	if i <= 0 || len(resp)-i-1 != 32 {
		s.authFails++
		return "", false, errCRAMSyntax
	}
	user := string(resp[:i])
	return user, s.secrets().checkCRAM(user, challenge, string(resp[i+1:])), nil
}

// authInitial returns the initial response of AUTH ("=" is an empty one,
// RFC 4954 §4), or asks for one with prompt.
func (s *session) authInitial(initial, prompt string) ([]byte, *smtp.Reply) {
	switch initial {
	case "":
		return s.authResponse(prompt)
	case "=":
		return nil, nil
	case "*":
		return nil, errAuthCancelled
	}
	b, err := base64.StdEncoding.DecodeString(initial)
	if err != nil {
		return nil, errBase64
	}
	return b, nil
}

// authResponse sends 334 with the base64 of prompt and reads the client's
// answer. "*" cancels (RFC 4954 §4). The answer never reaches the
// transcript or the log.
func (s *session) authResponse(prompt string) ([]byte, *smtp.Reply) {
	s.reply(smtp.Replyf(334, "", "%s", base64.StdEncoding.EncodeToString([]byte(prompt))))
	if s.flush() != nil {
		return nil, nil
	}
	s.conn.SetReadDeadline(time.Now().Add(s.cfg.CmdTimeout))
	line, err := s.readLine()
	s.tr.in("(protected)")
	switch {
	case err == errLineLong:
		return nil, errLineLong
	case err != nil:
		s.readFailed(err)
		return nil, nil
	case string(line) == "*":
		return nil, errAuthCancelled
	}
	b, err := base64.StdEncoding.DecodeString(string(line))
	if err != nil {
		return nil, errBase64
	}
	return b, nil
}

func (s *session) secrets() *Secrets {
	if s.srv.Secrets == nil {
		return nil
	}
	return s.srv.Secrets()
}
