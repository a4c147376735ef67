package smtpd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
// LOGIN check costs one bcrypt comparison at the dearest cost of the file,
// whether the user is unknown, has a plain password or a hash: else the
// time a wrong answer takes tells who exists.
func TestPasswordCost(t *testing.T) {
	h4, _ := bcrypt.GenerateFromPassword([]byte("four"), 4)
	h6, _ := bcrypt.GenerateFromPassword([]byte("six"), 6)
	var costs []int
	s := &Secrets{m: map[string]string{"four": string(h4), "six": string(h6), "plain": "pw"}}
	s.compare = func(hash, pw []byte) error {
		c, _ := bcrypt.Cost(hash)
		costs = append(costs, c)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	for _, tc := range []struct {
		user, pw string
		ok       bool
		cost     int
	}{
		{"nobody", "x", false, 6},
		{"plain", "pw", true, 6},
		{"plain", "wrong", false, 6},
		{"six", "six", true, 6},
		{"four", "wrong", false, 4},
	} {
		costs = nil
		if ok := s.checkPassword(tc.user, tc.pw); ok != tc.ok || len(costs) != 1 || costs[0] != tc.cost {
			t.Errorf("%s/%s: ok %v, bcrypt costs %v; want %v, [%d]", tc.user, tc.pw, ok, costs, tc.ok, tc.cost)
		}
	}
	// Without hashes in the file, nobody pays for bcrypt.
	s = &Secrets{m: map[string]string{"plain": "pw"}}
	s.compare = func(hash, pw []byte) error { t.Errorf("bcrypt without a hash in the file"); return nil }
	if s.checkPassword("nobody", "pw") || !s.checkPassword("plain", "pw") {
		t.Errorf("plain secrets")
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
