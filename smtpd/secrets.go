package smtpd

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"smtpfs/internal/regfile"
)

// Secrets are the AUTH users of lib/secrets: one "user secret" line each,
// '#' comments and blank lines skipped. A secret is the password itself,
// which every mechanism can check, or a bcrypt hash ($2a$, $2b$, $2y$),
// which only PLAIN and LOGIN can (CRAM-MD5 needs the password).
type Secrets struct {
	m map[string]string

	once    sync.Once
	dearest int                         // the dearest bcrypt cost of the file; 0 if it has no hash
	compare func(hash, pw []byte) error // bcrypt.CompareHashAndPassword; tests count the calls
}

// maxSecretsFile bounds lib/secrets: a few hundred thousand users.
const maxSecretsFile = 16 << 20

// LoadSecrets reads a secrets file. A missing file means no users. A file
// that its group or others may read is refused, as is a malformed line.
func LoadSecrets(file string) (*Secrets, error) {
	s := &Secrets{m: map[string]string{}}
	f, _, err := regfile.Open(file)
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
		if err := checkHash(w[1]); err != nil {
			return nil, fmt.Errorf("invalid %s line %d: %v", file, n, err)
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

// maxBcryptCost bounds the cost of a bcrypt secret: every PLAIN or LOGIN
// check costs as much as the dearest of the file (see checkPassword), and
// cost 14 is a second or so of a core.
const maxBcryptCost = 14

// checkHash refuses a secret that looks like a bcrypt hash but is not
// one bcrypt can check (it would fail at once, faster than any other
// user, and no password would ever match), or one dearer than
// maxBcryptCost.
func checkHash(secret string) error {
	if !isBcrypt(secret) {
		return nil
	}
	cost, err := bcrypt.Cost([]byte(secret))
	switch {
	case err != nil || len(secret) != 60:
		return fmt.Errorf("malformed bcrypt hash (want $2b$NN$ and 53 characters)")
	case cost > maxBcryptCost:
		return fmt.Errorf("bcrypt cost %d is over %d: every AUTH would take as long; hash it again with a lower cost", cost, maxBcryptCost)
	}
	return nil
}

// dummy is compared against when the user is unknown, so that an unknown
// user takes as long as a wrong password.
const dummy = "0123456789abcdef0123456789abcdef"

// dummyHash returns a bcrypt hash of the given cost that no password
// matches (its salt and digest are fixed filler): comparing against it
// costs what comparing against a real hash of that cost does.
func dummyHash(cost int) []byte {
	return fmt.Appendf(nil, "$2a$%02d$%s", cost, strings.Repeat("x", 53))
}

// checkPassword reports whether password is user's. Its work does not
// tell who exists, nor the cost of their hash: when the file holds bcrypt
// hashes, every check does the work of one comparison at the dearest cost
// D of the file. An unknown user, or one with a plain password, is
// compared against a dummy hash of cost D. A user whose hash has a lower
// cost c is compared against it and then against dummies of costs c,
// c+1, ..., D-1: 2^c + 2^c + 2^(c+1) + ... + 2^(D-1) = 2^D rounds, what
// one comparison of cost D costs (to within the fixed cost of a
// comparison, a few rounds each). Plain secrets are compared in constant
// time, through their SHA-256, whatever their lengths.
func (s *Secrets) checkPassword(user, password string) bool {
	secret, ok := s.lookup(user)
	pw := []byte(password)
	dearest := s.dearestCost()
	if cost, err := bcrypt.Cost([]byte(secret)); ok && isBcrypt(secret) && err == nil {
		match := s.bcrypt([]byte(secret), pw) == nil
		for c := cost; c < dearest; c++ {
			s.bcrypt(dummyHash(c), pw)
		}
		return match
	}
	if dearest > 0 {
		s.bcrypt(dummyHash(dearest), pw)
	}
	plain := ok && !isBcrypt(secret) // not a hash bcrypt could check either
	if !plain {
		secret = dummy
	}
	a, b := sha256.Sum256([]byte(secret)), sha256.Sum256(pw)
	eq := subtle.ConstantTimeCompare(a[:], b[:]) == 1
	return plain && eq
}

func (s *Secrets) bcrypt(hash, pw []byte) error {
	if s.compare != nil {
		return s.compare(hash, pw)
	}
	return bcrypt.CompareHashAndPassword(hash, pw)
}

// dearestCost returns the dearest bcrypt cost of the file, 0 if it has no
// hash.
func (s *Secrets) dearestCost() int {
	if s == nil {
		return 0
	}
	s.once.Do(func() {
		for _, v := range s.m {
			if c, err := bcrypt.Cost([]byte(v)); err == nil && isBcrypt(v) {
				s.dearest = max(s.dearest, c)
			}
		}
	})
	return s.dearest
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
