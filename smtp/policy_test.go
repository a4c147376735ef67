package smtp_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"smtpfs/smtp"
	"smtpfs/smtp/tlspolicy"
	"smtpfs/test/testlib"
)

// A policyWorld is a fake DNS (its AD bit on), an MTA-STS HTTPS server and
// five sinks on one port, each an MX host of its own address:
//
//	good.mx.test        127.0.0.1  STARTTLS, a trusted certificate for its name
//	wrongname.mx.test   127.0.0.2  STARTTLS, a trusted certificate for another name
//	selfsigned.mx.test  127.0.0.3  STARTTLS, an untrusted self-signed certificate
//	plain.mx.test       127.0.0.4  no STARTTLS (as if an attacker stripped it)
//	stripped.mx.test    127.0.0.4  the same, with TLSA records
//	reqtls.mx.test      127.0.0.5  STARTTLS with the good certificate, REQUIRETLS
//
// and destination domains named after what their policy meets.
type policyWorld struct {
	dns   *testlib.DNS
	sts   *testlib.STSServer
	sinks map[string]*testlib.Sink // by host name
	port  string
	roots *x509.CertPool
	good  *testlib.Cert
	self  *testlib.Cert
}

var policyHosts = []string{"good", "wrongname", "selfsigned", "plain", "reqtls"}

func newPolicyWorld(t *testing.T) *policyWorld {
	t.Helper()
	dir := t.TempDir()
	mk := func(sub string, names ...string) *testlib.Cert {
		d := filepath.Join(dir, sub)
		if err := os.Mkdir(d, 0700); err != nil {
			t.Fatal(err)
		}
		return testlib.NewCert(t, d, names...)
	}
	w := &policyWorld{sinks: map[string]*testlib.Sink{}}
	w.good = mk("good", "good.mx.test", "reqtls.mx.test")
	wrong := mk("wrong", "elsewhere.mx.test")
	w.self = mk("self", "selfsigned.mx.test")
	sinks := testlib.NewSinksOnePort(t,
		testlib.SinkOptions{TLS: w.good.ServerConfig()},
		testlib.SinkOptions{TLS: wrong.ServerConfig()},
		testlib.SinkOptions{TLS: w.self.ServerConfig()},
		testlib.SinkOptions{},
		testlib.SinkOptions{TLS: w.good.ServerConfig(), ReqTLS: true})
	for i, h := range policyHosts {
		w.sinks[h] = sinks[i]
	}
	w.port = sinks[0].Port()
	w.sts = testlib.NewSTSServer(t, dir, "sts-good.test", "sts-nomatch.test", "sts-strip.test", "sts-wrong.test", "sts-testing.test")
	w.roots = x509.NewCertPool()
	for _, c := range []*testlib.Cert{w.good, wrong, w.sts.Cert} {
		w.roots.AddCert(c.X509)
	}
	var zone strings.Builder
	for i, h := range policyHosts {
		fmt.Fprintf(&zone, "%s.mx.test. A 127.0.0.%d\n", h, i+1)
	}
	zone.WriteString("stripped.mx.test. A 127.0.0.4\n")
	mx := map[string]string{
		"verify-good.test": "good", "verify-wrong.test": "wrongname", "verify-plain.test": "plain",
		"encrypt-self.test": "selfsigned", "encrypt-plain.test": "plain", "none-good.test": "good", "may-self.test": "selfsigned",
		"sts-good.test": "good", "sts-nomatch.test": "plain", "sts-strip.test": "plain", "sts-wrong.test": "wrongname",
		"sts-testing.test": "wrongname",
		"dane-self.test":   "selfsigned", "dane-stripped.test": "stripped", "dane-reqtls.test": "reqtls",
		"default-none.test": "plain",
	}
	for d, h := range mx {
		fmt.Fprintf(&zone, "%s. MX 10 %s.mx.test.\n", d, h)
	}
	for d, p := range map[string]string{
		"sts-good.test":    testlib.Policy("enforce", "good.mx.test"),
		"sts-nomatch.test": testlib.Policy("enforce", "good.mx.test"),
		"sts-strip.test":   testlib.Policy("enforce", "*.mx.test"),
		"sts-wrong.test":   testlib.Policy("enforce", "wrongname.mx.test"),
		"sts-testing.test": testlib.Policy("testing", "good.mx.test"),
	} {
		w.sts.Set(d, p)
		fmt.Fprintf(&zone, "_mta-sts.%s. TXT \"v=STSv1; id=1\"\nmta-sts.%s. A 127.0.0.1\n", d, d)
	}
	// DANE-EE records: the self-signed certificate's key for selfsigned
	// and stripped (whose STARTTLS is gone), the good one's for reqtls.
	for h, c := range map[string]*testlib.Cert{"selfsigned": w.self, "stripped": w.self, "reqtls": w.good} {
		fmt.Fprintf(&zone, "_%s._tcp.%s.mx.test. TLSA %s\n", w.port, h, testlib.TLSA311(c))
	}
	w.dns = testlib.NewDNS(t, zone.String())
	w.dns.AD.Store(true)
	return w
}

// client returns a Client with a policy engine: the tlspolicy lines
// given, DANE through the fake DNS.
func (w *policyWorld) client(policies map[string]tlspolicy.Level, logb *bytes.Buffer) *smtp.Client {
	e := &tlspolicy.Engine{Resolver: w.dns.Addr, DANEResolver: w.dns.Addr, HTTPSPort: w.sts.Port(),
		RootCAs: w.roots, Port: w.port, Policies: policies}
	c := &smtp.Client{Hello: "client.example.net", Port: w.port, DNS: smtp.NewResolver(w.dns.Addr), Timeouts: fast,
		Policy: e, PolicyStats: &smtp.PolicyStats{}}
	if logb != nil {
		c.Log = log.New(logb, "", 0)
	}
	return c
}

// mailFrom reports whether any sink saw a MAIL FROM naming from, and the
// line.
func (w *policyWorld) mailFrom(from string) (string, bool) {
	for _, s := range w.sinks {
		for _, sess := range s.Sessions() {
			for _, c := range sess {
				if strings.HasPrefix(strings.ToUpper(c), "MAIL FROM:<"+strings.ToUpper(from)+">") {
					return c, true
				}
			}
		}
	}
	return "", false
}

// received returns the message the sink of host got from from.
func (w *policyWorld) received(host, from string) (testlib.SinkMsg, bool) {
	for _, m := range w.sinks[host].Messages() {
		if m.From == from {
			return m, true
		}
	}
	return testlib.SinkMsg{}, false
}

// TestPolicyLevels: each level delivers where it should, over TLS or not
// as it says, and holds the message (a temporary failure with the
// policy's reason) where it must; a host without STARTTLS under a policy
// that requires TLS never sees MAIL FROM.
func TestPolicyLevels(t *testing.T) {
	w := newPolicyWorld(t)
	pol := map[string]tlspolicy.Level{
		"verify-good.test": tlspolicy.LevelVerify, "verify-wrong.test": tlspolicy.LevelVerify, "verify-plain.test": tlspolicy.LevelVerify,
		"encrypt-self.test": tlspolicy.LevelEncrypt, "encrypt-plain.test": tlspolicy.LevelEncrypt,
		"none-good.test": tlspolicy.LevelNone, "may-self.test": tlspolicy.LevelMay,
	}
	var logb bytes.Buffer
	c := w.client(pol, &logb)
	tests := []struct {
		dest, host string // destination, and the sink that takes it ("" none)
		tls        bool
		err        string // in the error, "" for none
	}{
		{"verify-good.test", "good", true, ""},
		{"verify-wrong.test", "", false, "verify: certificate of wrongname.mx.test: x509: certificate is valid for elsewhere.mx.test"},
		{"verify-plain.test", "", false, "TLS required (verify: TLS required, certificate verified for plain.mx.test, as configured), but the server does not offer STARTTLS"},
		{"encrypt-self.test", "selfsigned", true, ""},
		{"encrypt-plain.test", "", false, "but the server does not offer STARTTLS"},
		{"none-good.test", "good", false, ""},
		{"may-self.test", "selfsigned", true, ""},
		{"sts-good.test", "good", true, ""},
		{"sts-nomatch.test", "", false, "mta-sts enforce: plain.mx.test does not match the policy of sts-nomatch.test"},
		{"sts-strip.test", "", false, "TLS required (mta-sts enforce: TLS required, certificate verified for plain.mx.test (no dane: no TLSA records at _" + w.port + "._tcp.plain.mx.test)), but the server does not offer STARTTLS"},
		{"sts-wrong.test", "", false, "mta-sts enforce: certificate of wrongname.mx.test: x509: certificate is valid for elsewhere.mx.test"},
		{"sts-testing.test", "wrongname", true, ""},
		{"dane-self.test", "selfsigned", true, ""},
		{"dane-stripped.test", "", false, "TLS required (dane: TLS required, 1 usable TLSA records at _" + w.port + "._tcp.stripped.mx.test), but the server does not offer STARTTLS"},
		{"default-none.test", "plain", false, ""},
	}
	for _, tt := range tests {
		from := "from-" + strings.TrimSuffix(tt.dest, ".test") + "@sender.test"
		_, err := c.Deliver(context.Background(), tt.dest, from, []string{"bob@" + tt.dest}, strings.NewReader(testMsg))
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.dest, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q in it", tt.dest, err, tt.err)
		case tt.err != "" && phaseOf(err) != "tls temporary" && phaseOf(err) != "starttls temporary":
			t.Errorf("%s: %v is %s, want a temporary failure", tt.dest, err, phaseOf(err))
		}
		if tt.host == "" {
			if line, ok := w.mailFrom(from); ok {
				t.Errorf("%s: a sink saw %q: the message went where its policy forbids", tt.dest, line)
			}
			continue
		}
		if m, ok := w.received(tt.host, from); !ok || m.TLS != tt.tls {
			t.Errorf("%s: at %s: received %v, over TLS %v; want TLS %v", tt.dest, tt.host, ok, m.TLS, tt.tls)
		}
	}
	st := map[string]int64{}
	for _, v := range c.PolicyStats.Values() {
		st[v.Name] = v.Value
	}
	if st["tls.refused"] != 7 || st["tls.none"] != 1 || st["tls.verify"] != 3 || st["tls.dane"] != 2 {
		t.Errorf("stats %v", st)
	}
	for _, want := range []string{
		"tls policy sts-nomatch.test: tlspolicy default; mta-sts: policy id 1 fetched (enforce)",
		"tls policy plain.mx.test: not used: mta-sts enforce: plain.mx.test does not match",
		"tls policy good.mx.test (127.0.0.1:" + w.port + "): verify: TLS required",
	} {
		if !strings.Contains(logb.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logb.String())
		}
	}
}

// TestPolicyNoAD: without the validating resolver's AD bit there is no
// DANE: the same TLSA records are not believed, and a host whose
// STARTTLS is gone gets the message in the clear, as under may.
func TestPolicyNoAD(t *testing.T) {
	w := newPolicyWorld(t)
	w.dns.AD.Store(false)
	c := w.client(nil, nil)
	if _, err := c.Deliver(context.Background(), "dane-stripped.test", "noad@sender.test", []string{"bob@dane-stripped.test"}, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if m, ok := w.received("plain", "noad@sender.test"); !ok || m.TLS {
		t.Errorf("received %v, TLS %v", ok, m.TLS)
	}
}

// TestPolicyRequireTLS: a message that asks REQUIRETLS (RFC 8689) goes
// only to a host DANE authenticates, over TLS, to a server offering
// REQUIRETLS, with REQUIRETLS on MAIL FROM; otherwise it fails for good
// with 5.7.30, before MAIL FROM.
func TestPolicyRequireTLS(t *testing.T) {
	w := newPolicyWorld(t)
	c := w.client(map[string]tlspolicy.Level{"verify-good.test": tlspolicy.LevelVerify}, nil)
	tests := []struct {
		dest string
		err  string
	}{
		{"dane-reqtls.test", ""},
		{"dane-self.test", "550 5.7.30 REQUIRETLS: selfsigned.mx.test does not offer REQUIRETLS"},
		{"verify-good.test", "550 5.7.30 REQUIRETLS: good.mx.test is authenticated by neither DANE"},
		{"sts-strip.test", "550 5.7.30 REQUIRETLS: TLS required (mta-sts enforce"},
		{"none-good.test", "REQUIRETLS: good.mx.test does not offer REQUIRETLS"}, // signed MX, no DANE: verify
		{"[127.0.0.1]", "REQUIRETLS: 127.0.0.1 is not a destination whose MX hosts a TLS policy authenticates"},
	}
	for _, tt := range tests {
		from := "req-" + strings.Trim(tt.dest, "[]") + "@sender.test"
		m := smtp.Mail{From: from, Rcpts: []string{"bob@example.org"}, Params: smtp.Params{RequireTLS: true}}
		_, err := c.Send(context.Background(), tt.dest, m, strings.NewReader(testMsg))
		line, seen := w.mailFrom(from)
		if tt.err == "" {
			if err != nil || !strings.HasSuffix(line, " REQUIRETLS") {
				t.Errorf("%s: %v; MAIL line %q", tt.dest, err, line)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.err) || smtp.IsTemporary(err) {
			t.Errorf("%s: error %v, want a permanent one with %q", tt.dest, err, tt.err)
		}
		if seen {
			t.Errorf("%s: a sink saw %q", tt.dest, line)
		}
	}
}
