package smtpd

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// Secrets are the AUTH users of lib/secrets: one "user secret" line each,
// '#' comments and blank lines skipped. A secret is the password itself,
// which every mechanism can check, or a bcrypt hash ($2a$, $2b$, $2y$),
// which only PLAIN and LOGIN can (CRAM-MD5 needs the password).
type Secrets struct {
	m map[string]string

	once    sync.Once
	dummyH  []byte                      // a bcrypt hash at the dearest cost of the file; nil if it has none
	compare func(hash, pw []byte) error // bcrypt.CompareHashAndPassword; tests count the calls
}

// maxSecretsFile bounds lib/secrets: a few hundred thousand users.
const maxSecretsFile = 16 << 20

// LoadSecrets reads a secrets file. A missing file means no users. A file
// that its group or others may read is refused, as is a malformed line.
func LoadSecrets(file string) (*Secrets, error) {
	s := &Secrets{m: map[string]string{}}
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0077 != 0 {
		return nil, fmt.Errorf("permission denied: %s is readable by group or others (mode %v); chmod 600 it", file, fi.Mode().Perm())
	}
	if fi.Size() > maxSecretsFile {
		return nil, fmt.Errorf("%s: too long", file)
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		w := strings.Fields(line)
		if len(w) == 0 {
			continue
		}
		if len(w) != 2 {
			return nil, fmt.Errorf("invalid %s line %d: want \"user secret\"", file, n)
		}
		s.m[w[0]] = w[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return s, nil
}

// Len returns the number of users.
func (s *Secrets) Len() int {
	if s == nil {
		return 0
	}
	return len(s.m)
}

func isBcrypt(secret string) bool {
	return strings.HasPrefix(secret, "$2a$") || strings.HasPrefix(secret, "$2b$") || strings.HasPrefix(secret, "$2y$")
}

// dummy is compared against when the user is unknown, so that an unknown
// user takes as long as a wrong password.
const dummy = "0123456789abcdef0123456789abcdef"

// checkPassword reports whether password is user's. It costs the same for
// every user, known or not: when the file holds bcrypt hashes, a user with
// a plain password or none is checked against a dummy hash of the
// dearest cost too (bcrypt takes tens of milliseconds, a plain comparison
// nothing: the difference would tell who exists); plain secrets are
// compared in constant time.
func (s *Secrets) checkPassword(user, password string) bool {
	secret, ok := s.lookup(user)
	if ok && isBcrypt(secret) {
		return s.bcrypt([]byte(secret), []byte(password)) == nil
	}
	if h := s.dummyHash(); h != nil {
		s.bcrypt(h, []byte(password))
	}
	if !ok {
		secret = dummy
	}
	eq := subtle.ConstantTimeCompare([]byte(secret), []byte(password)) == 1
	return ok && eq
}

func (s *Secrets) bcrypt(hash, pw []byte) error {
	if s.compare != nil {
		return s.compare(hash, pw)
	}
	return bcrypt.CompareHashAndPassword(hash, pw)
}

// dummyHash returns a bcrypt hash as dear as the dearest of the file, made
// at its first use, or nil if the file has no hash.
func (s *Secrets) dummyHash() []byte {
	if s == nil {
		return nil
	}
	s.once.Do(func() {
		cost := 0
		for _, v := range s.m {
			if c, err := bcrypt.Cost([]byte(v)); err == nil && isBcrypt(v) {
				cost = max(cost, c)
			}
		}
		if cost > 0 {
			s.dummyH, _ = bcrypt.GenerateFromPassword([]byte(dummy), cost)
		}
	})
	return s.dummyH
}

// checkCRAM reports whether digest (hex) is the HMAC-MD5 of challenge
// keyed with user's password (RFC 2195), in constant time. A bcrypt secret
// cannot answer it.
func (s *Secrets) checkCRAM(user, challenge, digest string) bool {
	secret, ok := s.lookup(user)
	if !ok || isBcrypt(secret) {
		ok, secret = false, dummy
	}
	mac := hmac.New(md5.New, []byte(secret))
	mac.Write([]byte(challenge))
	want := []byte(hex.EncodeToString(mac.Sum(nil)))
	eq := subtle.ConstantTimeCompare(want, bytes.ToLower([]byte(digest))) == 1
	return ok && eq
}

func (s *Secrets) lookup(user string) (string, bool) {
	if s == nil {
		return "", false
	}
	secret, ok := s.m[user]
	return secret, ok
}
