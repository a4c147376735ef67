package smtpd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
