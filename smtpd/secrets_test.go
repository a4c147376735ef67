package smtpd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secrets")
	s, err := LoadSecrets(file)
	if err != nil || s.Len() != 0 {
		t.Fatalf("missing file: %v, %d users", err, s.Len())
	}
	os.WriteFile(file, []byte("# users\nglenda s3cret\n\n  bob   pw  # trailing comment\n"), 0600)
	s, err = LoadSecrets(file)
	if err != nil || s.Len() != 2 || !s.checkPassword("bob", "pw") || !s.checkPassword("glenda", "s3cret") || s.checkPassword("glenda", "pw") {
		t.Fatalf("LoadSecrets: %v, %+v", err, s)
	}
	for _, mode := range []os.FileMode{0640, 0604, 0644} {
		os.Chmod(file, mode)
		if _, err := LoadSecrets(file); err == nil || !strings.HasPrefix(err.Error(), "permission denied") {
			t.Errorf("mode %v: %v", mode, err)
		}
	}
	os.Chmod(file, 0600)
	os.WriteFile(file, []byte("glenda\n"), 0600)
	if _, err := LoadSecrets(file); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad line: %v", err)
	}
	var none *Secrets
	if none.checkPassword("glenda", "") || none.checkCRAM("glenda", "<x>", "") {
		t.Errorf("nil secrets let someone in")
	}
}

// TestPasswordCost: when lib/secrets holds bcrypt hashes, every PLAIN or
// LOGIN check does the work of one bcrypt comparison at the dearest cost
// of the file (2^cost rounds), whether the user is unknown, has a plain
// password or a hash of that cost or a cheaper one: else the time a wrong
// answer takes tells who exists.
func TestPasswordCost(t *testing.T) {
	h4, _ := bcrypt.GenerateFromPassword([]byte("four"), 4)
	h6, _ := bcrypt.GenerateFromPassword([]byte("six"), 6)
	var rounds int
	s := &Secrets{m: map[string]string{"four": string(h4), "six": string(h6), "plain": "pw"}}
	s.compare = func(hash, pw []byte) error {
		c, err := bcrypt.Cost(hash)
		if err != nil {
			t.Errorf("compared against %q: %v", hash, err)
		}
		rounds += 1 << c
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"nobody", "x", false},
		{"nobody", dummy, false},
		{"plain", "pw", true},
		{"plain", "wrong", false},
		{"six", "six", true},
		{"six", "wrong", false},
		{"four", "four", true},
		{"four", "wrong", false},
	} {
		rounds = 0
		if ok := s.checkPassword(tc.user, tc.pw); ok != tc.ok || rounds != 1<<6 {
			t.Errorf("%s/%s: ok %v, %d bcrypt rounds; want %v, %d", tc.user, tc.pw, ok, rounds, tc.ok, 1<<6)
		}
	}
	// Without hashes in the file, nobody pays for bcrypt.
	s = &Secrets{m: map[string]string{"plain": "pw"}}
	s.compare = func(hash, pw []byte) error { t.Errorf("bcrypt without a hash in the file"); return nil }
	if s.checkPassword("nobody", "pw") || s.checkPassword("nobody", dummy) || !s.checkPassword("plain", "pw") {
		t.Errorf("plain secrets")
	}
}

// TestDummyHash: the dummy hashes are hashes bcrypt checks, at their cost,
// and no password matches them.
func TestDummyHash(t *testing.T) {
	for c := bcrypt.MinCost; c <= 6; c++ {
		h := dummyHash(c)
		if cost, err := bcrypt.Cost(h); err != nil || cost != c || len(h) != 60 {
			t.Errorf("dummyHash(%d) = %q: cost %d, %v", c, h, cost, err)
		}
		for _, pw := range []string{"", dummy, "xxxxxxxx"} {
			if err := bcrypt.CompareHashAndPassword(h, []byte(pw)); err != bcrypt.ErrMismatchedHashAndPassword {
				t.Errorf("dummyHash(%d) against %q: %v", c, pw, err)
			}
		}
	}
}

// TestPasswordTime measures what TestPasswordCost counts: a wrong password
// of a user with a cheap hash, and of nobody, take about as long as one of
// a user with a dear hash. The tries are interleaved, and the median of
// their ratios must be within a factor of 2, where without padding the
// cheap one is 16 times faster.
func TestPasswordTime(t *testing.T) {
	if testing.Short() {
		t.Skip("bcrypt timing")
	}
	h4, _ := bcrypt.GenerateFromPassword([]byte("four"), 4)
	h8, _ := bcrypt.GenerateFromPassword([]byte("eight"), 8)
	s := &Secrets{m: map[string]string{"four": string(h4), "eight": string(h8)}}
	took := func(user string) float64 {
		start := time.Now()
		s.checkPassword(user, "wrong")
		return float64(time.Since(start))
	}
	ratios := map[string][]float64{}
	for range 5 {
		eight := took("eight")
		for _, user := range []string{"four", "nobody"} {
			ratios[user] = append(ratios[user], took(user)/eight)
		}
	}
	for user, r := range ratios {
		slices.Sort(r)
		if m := r[len(r)/2]; m < 0.5 || m > 2 {
			t.Errorf("a wrong password for %s took %.2f times as long as for a user with a hash of cost 8 (%.2f)", user, m, r)
		}
	}
}

// TestLoadSecretsHashes: a bcrypt secret that bcrypt cannot check, or
// too dear, is refused at load with the line it is on.
func TestLoadSecretsHashes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secrets")
	h4, _ := bcrypt.GenerateFromPassword([]byte("four"), 4)
	good := "four " + string(h4) + "\n"
	for _, tc := range []struct{ text, err string }{
		{good, ""},
		{good + "bad $2a$04$short\n", "invalid " + file + " line 2: malformed bcrypt hash"},
		{good + "bad " + string(h4) + "x\n", "line 2: malformed bcrypt hash"},
		{"bad $2y$99$" + strings.Repeat("x", 53) + "\n", "line 1: malformed bcrypt hash"},
		{"dear $2b$15$" + strings.Repeat("x", 53) + "\n", "line 1: bcrypt cost 15 is over 14"},
	} {
		os.WriteFile(file, []byte(tc.text), 0600)
		_, err := LoadSecrets(file)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.err)
		}
	}
}

// BenchmarkCheckPassword shows the cost of a PLAIN check for each kind of
// user, with a hash at bcrypt's default cost in the file: all alike.
func BenchmarkCheckPassword(b *testing.B) {
	h, _ := bcrypt.GenerateFromPassword([]byte("hashed"), bcrypt.DefaultCost)
	s := &Secrets{m: map[string]string{"hashed": string(h), "plain": "pw"}}
	for _, user := range []string{"hashed", "plain", "unknown"} {
		b.Run(user, func(b *testing.B) {
			for b.Loop() {
				s.checkPassword(user, "wrong")
			}
		})
	}
}

// lib/secrets replaced by a FIFO is refused at once, not waited on.
func TestLoadSecretsFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secrets")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := LoadSecrets(p); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("LoadSecrets of a FIFO: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("LoadSecrets hung on a FIFO")
	}
}
