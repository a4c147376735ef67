package mailauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// DKIM against another implementation: dkimpy (Debian's python3-dkim, with
// PyNaCl for Ed25519) verifies what we sign, and we verify what it signs,
// through testdata/dkimpy.py.

const python = "/usr/bin/python3"

// needDkimpy skips the test when dkimpy is not there to talk to.
func needDkimpy(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import dkim, nacl").Run(); err != nil {
		t.Skipf("interop with dkimpy skipped: %s cannot import dkim and nacl (%v); install python3-dkim and python3-nacl", python, err)
	}
}

// dkimpy runs testdata/dkimpy.py with msg on its standard input.
func dkimpy(t *testing.T, msg string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{"testdata/dkimpy.py"}, args...)...)
	cmd.Stdin = strings.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy %s: %v\n%s", args[0], err, stderr.String())
	}
	return string(out)
}

// zoneFile writes the keys' TXT records for dkimpy.py verify.
func zoneFile(t *testing.T, keys ...*Key) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.Selector + "._domainkey." + k.Domain + "\t" + keyRecord(k) + "\n")
	}
	file := filepath.Join(t.TempDir(), "zone")
	if err := os.WriteFile(file, []byte(b.String()), 0600); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestDkimpyVerifiesOurs(t *testing.T) {
	needDkimpy(t)
	r, e := keys(t)
	zone := zoneFile(t, r, e)
	msg := signed(t, signer(t), testMsg) // folded Subject, 8-bit body
	if got := dkimpy(t, msg, "verify", zone); got != "pass\npass\n" {
		t.Errorf("dkimpy on our rsa and ed25519 signatures: %q, want two passes\n%s", got, msg)
	}
	changed := strings.Replace(msg, "Bob.", "Eve.", 1)
	if got := dkimpy(t, changed, "verify", zone); got != "fail\nfail\n" {
		t.Errorf("dkimpy on a message changed in transit: %q, want two fails", got)
	}
}

// dkimpyKeys writes the test keys in the forms dkimpy signs with.
func dkimpyKeys(t *testing.T) (rsaFile, edFile string) {
	r, e := keys(t)
	dir := t.TempDir()
	rsaFile, edFile = filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "ed.b64")
	der := x509.MarshalPKCS1PrivateKey(r.Signer.(*rsa.PrivateKey))
	os.WriteFile(rsaFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0600)
	seed := e.Signer.(ed25519.PrivateKey).Seed()
	os.WriteFile(edFile, []byte(base64.StdEncoding.EncodeToString(seed)), 0600)
	return rsaFile, edFile
}

func TestWeVerifyDkimpy(t *testing.T) {
	needDkimpy(t)
	r, e := keys(t)
	rsaFile, edFile := dkimpyKeys(t)
	c := &Checker{Resolver: publish(newMemDNS(), r, e)}
	tests := []struct {
		name, sel, key, alg, canon string
	}{
		{"rsa relaxed/simple", r.Selector, rsaFile, "rsa-sha256", "relaxed/simple"},
		{"rsa simple/simple", r.Selector, rsaFile, "rsa-sha256", "simple/simple"},
		{"rsa relaxed/relaxed", r.Selector, rsaFile, "rsa-sha256", "relaxed/relaxed"},
		{"ed25519 relaxed/relaxed", e.Selector, edFile, "ed25519-sha256", "relaxed/relaxed"},
		{"ed25519 simple/simple", e.Selector, edFile, "ed25519-sha256", "simple/simple"},
	}
	for _, tt := range tests {
		sig := dkimpy(t, testMsg, "sign", tt.sel, "example.com", tt.key, tt.alg, tt.canon)
		msg := sig + testMsg
		got := c.VerifyDKIM(context.Background(), strings.NewReader(msg))
		if len(got) != 1 || got[0].Result != Pass || got[0].Algorithm != tt.alg {
			t.Errorf("%s: %v, want pass\n%s", tt.name, got, msg)
		}
		changed := strings.Replace(msg, "Subject: a test", "Subject: a tset", 1)
		got = c.VerifyDKIM(context.Background(), strings.NewReader(changed))
		if len(got) != 1 || got[0].Result != Fail {
			t.Errorf("%s, subject changed in transit: %v, want fail", tt.name, got)
		}
	}
	// With l= the signature covers only part of the body: not a pass.
	sig := dkimpy(t, testMsg, "sign", r.Selector, "example.com", rsaFile, "rsa-sha256", "relaxed/relaxed", "length")
	got := c.VerifyDKIM(context.Background(), strings.NewReader(sig+testMsg+"an added line\r\n"))
	if len(got) != 1 || got[0].Result != Policy {
		t.Errorf("dkimpy signature with l=: %v, want policy", got)
	}
}
