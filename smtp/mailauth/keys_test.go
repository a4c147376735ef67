// RSA keys of fewer than 1024 bits are made here, to see them refused.
//
//go:debug rsa1024min=0
package mailauth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testKeys.dir != "" {
		os.RemoveAll(testKeys.dir)
	}
	os.Exit(code)
}

func mkdirTemp() (string, error) { return os.MkdirTemp("", "mailauth-keys-") }

func TestNewKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lib", "dkim")
	ks, err := OpenKeyStore(dir)
	if err != nil {
		t.Fatalf("a missing lib/dkim: %v", err)
	}
	k, err := ks.NewKey("example.org", "s1", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "example.org", "s1.key")
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0600 {
		t.Fatalf("key file %v, %v; want mode 0600", fi, err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "example.org")); fi.Mode().Perm() != 0700 {
		t.Errorf("domain directory mode %v, want 0700", fi.Mode().Perm())
	}
	if _, err := ks.NewKey("example.org", "s1", "rsa"); err == nil || !strings.Contains(err.Error(), "never replaced") {
		t.Errorf("a second key for a selector: %v, want refused", err)
	}
	again, err := OpenKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := again.keysOf("example.org")
	if len(got) != 1 || !got[0].Signer.Public().(ed25519.PublicKey).Equal(k.Signer.Public()) {
		t.Errorf("reopened store has %v, want the key made", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "example.org"))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the key alone (no temporary file left)", len(entries))
	}
	for _, bad := range [][3]string{{"Example.org", "s", "rsa"}, {"../etc", "s", "rsa"}, {"example.org", "a/b", "rsa"}, {"example.org", "s2", "dsa"}, {"com", "s", "rsa"}} {
		if _, err := ks.NewKey(bad[0], bad[1], bad[2]); err == nil || !strings.HasPrefix(err.Error(), "invalid") {
			t.Errorf("NewKey(%q, %q, %q): %v, want an invalid error", bad[0], bad[1], bad[2], err)
		}
	}
}

func writePEM(t *testing.T, file, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	os.MkdirAll(filepath.Dir(file), 0700)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, mode)
}

func TestOpenKeyStoreRefuses(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	small, _ := rsa.GenerateKey(rand.Reader, 512)
	tests := []struct {
		name, file, typ string
		der             []byte
		mode            os.FileMode
		err             string
	}{
		{"readable by others", "example.com/s.key", "PRIVATE KEY", ed, 0644, "permission denied"},
		{"readable by the group", "example.com/s.key", "PRIVATE KEY", ed, 0640, "permission denied"},
		{"RSA too small", "example.com/s.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small), 0600, "fewer than 1024"},
		{"not a key", "example.com/s.key", "CERTIFICATE", ed, 0600, "want PRIVATE KEY"},
		{"domain in capitals", "Example.com/s.key", "PRIVATE KEY", ed, 0600, "not a domain name"},
		{"selector with a space", "example.com/a b.key", "PRIVATE KEY", ed, 0600, "not a selector"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		writePEM(t, filepath.Join(dir, tt.file), tt.typ, tt.der, tt.mode)
		_, err := OpenKeyStore(dir)
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.err)
		}
	}
	// Ignored: other files, hidden ones, a PKCS#1 RSA key is read.
	dir := t.TempDir()
	big, _ := rsa.GenerateKey(rand.Reader, 1024)
	writePEM(t, filepath.Join(dir, "example.com", "old.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(big), 0600)
	writePEM(t, filepath.Join(dir, "example.com", "README"), "X", nil, 0644)
	writePEM(t, filepath.Join(dir, "example.com", ".s.key.123"), "X", nil, 0644)
	ks, err := OpenKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k := ks.keysOf("example.com"); len(k) != 1 || k[0].Algorithm != "rsa" || k[0].Bits != 1024 {
		t.Errorf("keys %v, want the one PKCS#1 RSA key", k)
	}
}

func TestSelect(t *testing.T) {
	r, e := keys(t)
	ks, err := OpenKeyStore(testKeys.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Signing("example.com")) != 0 {
		t.Error("keys sign before they are chosen")
	}
	if err := ks.Select(map[string][]string{"example.com": {"nokey"}}); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Errorf("choosing a selector without a key: %v", err)
	}
	if err := ks.Select(map[string][]string{"example.com": {e.Selector, r.Selector}}); err != nil {
		t.Fatal(err)
	}
	if got := ks.Signing("example.com"); len(got) != 2 || got[0] != ks.keys["example.com"][e.Selector] {
		t.Errorf("Signing = %v, want the two keys in the order chosen", got)
	}
}

func TestDNSRecords(t *testing.T) {
	r, e := keys(t)
	ks, _ := OpenKeyStore(testKeys.dir)
	ks.Select(map[string][]string{"example.com": {e.Selector}})
	text := ks.DNSRecords("example.com")
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("DNSRecords gave %d lines, want a comment and a record for each key:\n%s", len(lines), text)
	}
	if lines[0] != "; selector e2026: ed25519, signing" || lines[2] != "; selector r2026: rsa 2048 bits, not signing yet" {
		t.Errorf("comments %q and %q", lines[0], lines[2])
	}
	re := regexp.MustCompile(`^(\S+) IN TXT ((?:"[^"]{1,255}" ?)+)$`)
	for i, k := range []*Key{e, r} {
		m := re.FindStringSubmatch(lines[2*i+1])
		if m == nil || m[1] != k.Selector+"._domainkey.example.com." {
			t.Errorf("record %q is not a TXT record of strings of at most 255 octets for %s", lines[2*i+1], k.Selector)
			continue
		}
		joined := strings.ReplaceAll(strings.ReplaceAll(m[2], `" "`, ""), `"`, "")
		if joined != keyRecord(k) {
			t.Errorf("record text %q, want %q", joined, keyRecord(k))
		}
	}
	if strings.Count(lines[3], `"`) < 4 {
		t.Errorf("an RSA 2048 record fits one string of 255 octets? %s", lines[3])
	}
}

// TestNewKeyBound: dkim newkey makes no key past the 1000 that lib/dkim
// may hold: one more would leave a store that the next start (or
// Reload) refuses, so that the daemon would not come up again.
func TestNewKeyBound(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	dir := filepath.Join(t.TempDir(), "dkim")
	for i := range maxKeys {
		writePEM(t, filepath.Join(dir, "example.org", "s"+strconv.Itoa(i)+".key"), "PRIVATE KEY", der, 0600)
	}
	ks, err := OpenKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.NewKey("example.net", "s", "ed25519"); err == nil || !strings.Contains(err.Error(), "1000 keys") {
		t.Errorf("key %d: %v, want refused", maxKeys+1, err)
	}
	if _, err := OpenKeyStore(dir); err != nil {
		t.Errorf("after dkim newkey, the store cannot be opened: %v", err)
	}
}

// A FIFO where a key should be is refused at once, not waited on: an
// open for reading would wait for a writer that never comes, and the
// reload with it.
func TestOpenKeyStoreFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "example.com"), 0700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "example.com", "s.key"), 0600); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	done := make(chan error, 1)
	go func() { _, err := OpenKeyStore(dir); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("OpenKeyStore with a FIFO for a key: %v, want not a regular file", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OpenKeyStore waited on a FIFO")
	}
}
