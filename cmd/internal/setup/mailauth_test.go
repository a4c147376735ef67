package setup

import (
	"bytes"
	"context"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"smtpfs/smtp/mailauth"
	"smtpfs/smtpd/conf"
	"smtpfs/test/testlib"
)

// TestAuthCheckerResolver: the checker asks the DNS server of the
// resolver setting, and another one as soon as the setting changes.
func TestAuthCheckerResolver(t *testing.T) {
	one := testlib.NewDNS(t, `example.org. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`)
	two := testlib.NewDNS(t, `example.org. 300 IN TXT "v=spf1 ip4:192.0.2.1 ~all"`)
	var mu sync.Mutex
	cfg, _, err := conf.Apply(conf.Default(), "ctl", "resolver "+one.Addr)
	if err != nil {
		t.Fatal(err)
	}
	a := &AuthChecker{Config: func() *conf.Config { mu.Lock(); defer mu.Unlock(); return cfg }}
	ip := netip.MustParseAddr("198.51.100.1")
	if r := a.CheckSPF(context.Background(), ip, "x.example", "a@example.org"); r.Result != mailauth.Fail {
		t.Errorf("first server: %v", r)
	}
	a.CheckSPF(context.Background(), ip, "x.example", "a@example.org")
	if n := one.Queries.Load(); n != 1 {
		t.Errorf("%d queries for one answer: the cache does not keep it", n)
	}
	mu.Lock()
	cfg, _, _ = conf.Apply(cfg, "ctl", "resolver "+two.Addr)
	mu.Unlock()
	if r := a.CheckSPF(context.Background(), ip, "x.example", "a@example.org"); r.Result != mailauth.SoftFail || two.Queries.Load() != 1 {
		t.Errorf("after the resolver changed: %v, %d queries", r, two.Queries.Load())
	}
}

// TestSigner: the keys of lib/dkim that the dkim lines choose sign, and
// the log names them; without dkim lines nothing is signed; a dkim line
// naming a selector without a key, or a key others may read, keeps the
// keys from opening.
func TestSigner(t *testing.T) {
	root := t.TempDir()
	ks, err := mailauth.OpenKeyStore(filepath.Join(root, "lib", "dkim"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.NewKey("example.org", "ed1", "ed25519"); err != nil {
		t.Fatal(err)
	}
	cfg, _, _ := conf.Apply(conf.Default(), "ctl", "dkim example.org ed1")
	keys, err := OpenKeys(root, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var logbuf bytes.Buffer
	s := &Signer{Keys: keys, Config: func() *conf.Config { return cfg }, Log: log.New(&logbuf, "", 0)}
	msg := "From: a@example.org\r\nTo: b@example.net\r\n\r\nhi\r\n"
	sigs, err := s.Sign(strings.NewReader(msg))
	if err != nil || !strings.HasPrefix(string(sigs), "DKIM-Signature:") {
		t.Fatalf("%q %v", sigs, err)
	}
	if got := logbuf.String(); got != "dkim: signed d=example.org s=ed1 a=ed25519-sha256\n" {
		t.Errorf("log %q", got)
	}
	none := &Signer{Keys: keys, Config: conf.Default}
	if sigs, err := none.Sign(strings.NewReader(msg)); sigs != nil || err != nil {
		t.Errorf("without dkim lines: %q %v", sigs, err)
	}
	bad, _, _ := conf.Apply(conf.Default(), "ctl", "dkim example.org ed2")
	if _, err := OpenKeys(root, bad); err == nil || !strings.Contains(err.Error(), "dkim example.org ed2: no key") {
		t.Errorf("a selector without a key: %v", err)
	}
	os.Chmod(filepath.Join(root, "lib", "dkim", "example.org", "ed1.key"), 0644)
	if _, err := OpenKeys(root, cfg); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Errorf("a key others may read: %v", err)
	}
}

func TestSignedBy(t *testing.T) {
	f := "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;\r\n s=s1; h=from; bh=x; b=y\r\nDKIM-Signature: v=1; a=ed25519-sha256; d=example.org; s=e\r\n\t1; b=z\r\n"
	if got := signedBy([]byte(f)); got != "d=example.org s=s1 a=rsa-sha256, d=example.org s=e1 a=ed25519-sha256" {
		t.Errorf("signedBy = %q", got)
	}
}
