package smtp

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// secret is what the transcript shows for AUTH payloads.
const secret = "********"

// auth authenticates (RFC 4954) when the client has credentials and the
// server offers AUTH; without AUTH on offer the session goes on as it is,
// as upas's does. A password goes over plaintext only with
// AuthWithoutTLS. A refusal is the server's reply, so a 535 is permanent
// (upas retried refused passwords for two days).
func (s *session) auth() error {
	if s.c.Auth == nil {
		return nil
	}
	offer, ok := s.ext["AUTH"]
	if !ok {
		s.note("the server does not offer AUTH; going on without it")
		return nil
	}
	if !s.tls && !s.c.AuthWithoutTLS {
		return s.fail("auth", permanent(errors.New("refusing to send a password without TLS (-i allows it)")))
	}
	mechs := strings.Fields(strings.ToUpper(offer))
	for _, m := range s.preference() {
		for _, o := range mechs {
			if o == m.name {
				return m.run(s, s.c.Auth)
			}
		}
	}
	return s.fail("auth", permanent(errors.New("no supported AUTH mechanism in "+offer)))
}

type mechanism struct {
	name string
	run  func(*session, *Auth) error
}

// preference orders the mechanisms: over TLS the plain ones, which need no
// more of the server than the password; in the clear CRAM-MD5 first,
// which does not send the password.
func (s *session) preference() []mechanism {
	plain := mechanism{"PLAIN", (*session).authPlain}
	login := mechanism{"LOGIN", (*session).authLogin}
	cram := mechanism{"CRAM-MD5", (*session).authCRAM}
	if s.tls {
		return []mechanism{plain, login, cram}
	}
	return []mechanism{cram, plain, login}
}

// authPlain: RFC 4616, with the initial response.
func (s *session) authPlain(a *Auth) error {
	resp := b64("\x00" + a.User + "\x00" + a.Password)
	if err := s.send("AUTH PLAIN "+secret, "AUTH PLAIN "+resp); err != nil {
		return s.fail("auth", err)
	}
	_, err := s.expect("auth", s.t.Command, 2)
	return err
}

// authLogin: the LOGIN mechanism (draft-murchison-sasl-login): user name and
// password, each after a 334.
func (s *session) authLogin(a *Auth) error {
	if _, err := s.cmd("auth", s.t.Command, 3, "AUTH LOGIN"); err != nil {
		return err
	}
	if err := s.send(secret, b64(a.User)); err != nil {
		return s.fail("auth", err)
	}
	if _, err := s.expect("auth", s.t.Command, 3); err != nil {
		return err
	}
	if err := s.send(secret, b64(a.Password)); err != nil {
		return s.fail("auth", err)
	}
	_, err := s.expect("auth", s.t.Command, 2)
	return err
}

// authCRAM: RFC 2195, the user and the HMAC-MD5 of the challenge.
func (s *session) authCRAM(a *Auth) error {
	r, err := s.cmd("auth", s.t.Command, 3, "AUTH CRAM-MD5")
	if err != nil {
		return err
	}
	chal, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Lines[0]))
	if err != nil {
		s.send("", "*") // RFC 4954 §4: cancel the exchange
		s.expect("auth", s.t.Command, 5)
		return s.fail("auth", &ProtocolError{"bad CRAM-MD5 challenge"})
	}
	h := hmac.New(md5.New, []byte(a.Password))
	h.Write(chal)
	if err := s.send(secret, b64(a.User+" "+hex.EncodeToString(h.Sum(nil)))); err != nil {
		return s.fail("auth", err)
	}
	_, err = s.expect("auth", s.t.Command, 2)
	return err
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
