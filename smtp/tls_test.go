package smtp_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

func TestLoadPins(t *testing.T) {
	dir := t.TempDir()
	cert := testlib.NewCert(t, dir, "mx.example.org")
	other := testlib.NewCert(t, t.TempDir(), "mx.example.org")
	der256 := sha256.Sum256(cert.X509.Raw)
	der1 := sha1.Sum(cert.X509.Raw)
	spki := sha256.Sum256(cert.X509.RawSubjectPublicKeyInfo)
	tests := []struct {
		name    string
		files   map[string]string // file name → contents; "smtp" is loaded
		match   bool
		wantErr bool
	}{
		{"sha256 hex", map[string]string{"smtp": "x509 sha256=" + cert.SHA256}, true, false},
		{"sha256 upper hex", map[string]string{"smtp": "x509 sha256=" + strings.ToUpper(cert.SHA256)}, true, false},
		{"sha256 base64", map[string]string{"smtp": "x509 sha256=" + base64.StdEncoding.EncodeToString(der256[:])}, true, false},
		{"sha256 base64 unpadded", map[string]string{"smtp": "x509 sha256=" + base64.RawStdEncoding.EncodeToString(der256[:])}, true, false},
		{"spki sha256, as upas logs it", map[string]string{"smtp": "x509 sha256=" + base64.RawStdEncoding.EncodeToString(spki[:])}, true, false},
		{"sha1", map[string]string{"smtp": "x509 sha1=" + hex.EncodeToString(der1[:])}, true, false},
		{"another certificate", map[string]string{"smtp": "x509 sha256=" + other.SHA256}, false, false},
		{"comments and noise", map[string]string{"smtp": "# pins\n\nx509 md5=abc\nsomething else\n  x509   sha256=" + cert.SHA256 + "  cn=mx\n"}, true, false},
		{"include", map[string]string{"smtp": "#include more\n", "more": "x509 sha256=" + cert.SHA256}, true, false},
		{"include missing", map[string]string{"smtp": "#include nothere\n"}, false, false},
		{"excluded", map[string]string{"smtp": "x509 sha256=" + cert.SHA256, "smtp.exclude": "x509 sha256=" + cert.SHA256}, false, false},
		{"include loop", map[string]string{"smtp": "#include smtp\n"}, false, true},
		{"malformed", map[string]string{"smtp": "x509 sha256=1234\n"}, false, true},
		{"missing file", map[string]string{}, false, false},
	}
	for _, tt := range tests {
		d := t.TempDir()
		for name, text := range tt.files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0644); err != nil {
				t.Fatal(err)
			}
		}
		p, err := smtp.LoadPins(filepath.Join(d, "smtp"))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: LoadPins error %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "invalid") {
				t.Errorf("%s: error %q lacks the word invalid", tt.name, err)
			}
			continue
		}
		if got := p.Match(cert.X509); got != tt.match {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.match)
		}
	}
	var none *smtp.Pins
	if none.Match(cert.X509) || none.Len() != 0 {
		t.Error("nil Pins match")
	}
}
