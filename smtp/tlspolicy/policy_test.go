package tlspolicy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"strings"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"dane", "mta-sts", "verify", "encrypt", "may", "none"} {
		l, err := ParseLevel(s)
		if err != nil || l.String() != s {
			t.Errorf("ParseLevel(%q) = %v, %v", s, l, err)
		}
	}
	for _, s := range []string{"", "default", "DANE", "secure", "may "} {
		if l, err := ParseLevel(s); err == nil {
			t.Errorf("ParseLevel(%q) = %v, want an error", s, l)
		}
	}
}

// mixed is example.org with three MX hosts: mx1 with a signed DANE-EE
// record, mx2 and mx3 without TLSA records; its MTA-STS policy names mx1
// and mx2 only.
type mixed struct {
	*stsSetup
	leaf1, leaf2 *cert
	log          bytes.Buffer
}

func newMixed(t *testing.T, policy string) *mixed {
	leaf1 := valid(t, nil, false, "self-signed")
	zone := stsZone + "example.org. MX 10 mx1.example.org.\nexample.org. MX 20 mx2.example.org.\nexample.org. MX 30 mx3.example.org.\n" +
		"mx1.example.org. A 127.0.0.1\nmx2.example.org. A 127.0.0.1\nmx3.example.org. A 127.0.0.1\n" +
		tlsaLine("_25._tcp.mx1.example.org.", rec(3, 1, 1, leaf1)) +
		"secure example.org.\nsecure mx1.example.org.\nsecure mx2.example.org.\nsecure mx3.example.org.\n" +
		"secure _25._tcp.mx1.example.org.\nsecure _25._tcp.mx2.example.org.\nsecure _25._tcp.mx3.example.org.\n"
	m := &mixed{stsSetup: newSTSSetup(t, zone, policy), leaf1: leaf1}
	m.leaf2 = valid(t, m.ca, false, "mx2.example.org")
	m.e.DANEResolver = m.dns.addr
	m.e.Log = log.New(&m.log, "", 0)
	return m
}

const enforce12 = "version: STSv1\nmode: enforce\nmx: mx1.example.org\nmx: mx2.example.org\nmax_age: 86400\n"

var hosts = []string{"mx1.example.org", "mx2.example.org", "mx3.example.org"}

// TestResolveDefault: without a tlspolicy line, DANE decides for the host
// that has it, MTA-STS for the others, and a host the enforced policy
// does not name is not used.
func TestResolveDefault(t *testing.T) {
	m := newMixed(t, enforce12)
	d, err := m.e.Resolve(t.Context(), "example.org", hosts)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		level   Level
		tls     TLS
		allowed bool
		reason  string
	}{
		{LevelDANE, RequireTLS, true, "dane: TLS required"},
		{LevelMTASTS, RequireTLS, true, "mta-sts enforce: TLS required, certificate verified for mx2.example.org (no dane: no TLSA records at _25._tcp.mx2.example.org)"},
		{LevelMTASTS, NoTLS, false, "mta-sts enforce: mx3.example.org does not match the policy of example.org"},
	}
	for i, w := range want {
		h := d.Hosts[i]
		if h.Level != w.level || h.TLS != w.tls || h.Allowed != w.allowed || !strings.HasPrefix(h.Reason, w.reason) {
			t.Errorf("%s: got %v %v %v %q, want %v %v %v %q", h.Host, h.Level, h.TLS, h.Allowed, h.Reason, w.level, w.tls, w.allowed, w.reason)
		}
	}
	if s := d.Domain.String(); s != "example.org: tlspolicy default; mta-sts: policy id 1 fetched (enforce)" {
		t.Errorf("domain policy: %s", s)
	}
	if got := d.Allowed(); len(got) != 2 || got[0].Host != "mx1.example.org" || got[1].Host != "mx2.example.org" {
		t.Errorf("Allowed: %v", got)
	}
	if err := d.Hosts[1].Verify(state(m.leaf2)); err != nil {
		t.Errorf("mx2 with a certificate of a trusted CA for its name: %v", err)
	}
	err = d.Hosts[1].Verify(state(m.leaf1))
	var pe *Error
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Reason, "mta-sts enforce: certificate of mx2.example.org: ") {
		t.Errorf("mx2 with an untrusted certificate: %v", err)
	}
}

// TestResolveRefused: when the policy lets no host be used, Resolve says
// why in one line, as the queue will show it.
func TestResolveRefused(t *testing.T) {
	m := newMixed(t, enforce12)
	d, err := m.e.Resolve(t.Context(), "example.org", []string{"mx3.example.org", "evil.example.net"})
	var pe *Error
	if !errors.As(err, &pe) || !pe.Temporary() || pe.Domain != "example.org" {
		t.Fatalf("got %v, want a temporary *Error", err)
	}
	const want = "mta-sts enforce: mx3.example.org does not match the policy of example.org; mta-sts enforce: evil.example.net does not match the policy of example.org"
	if pe.Reason != want || len(d.Allowed()) != 0 {
		t.Errorf("reason %q, want %q", pe.Reason, want)
	}
	if strings.ContainsAny(pe.Reason, "\r\n") {
		t.Errorf("reason is not one line")
	}
}

// TestUnusableTLSAWithSTS: TLSA records that are all unusable give way to
// an enforced MTA-STS policy, which asks for more than they do.
func TestUnusableTLSAWithSTS(t *testing.T) {
	m := newMixed(t, "version: STSv1\nmode: enforce\nmx: mx2.example.org\nmax_age: 86400\n")
	zone := strings.Replace(stsZone+"example.org. MX 10 mx1.example.org.\nmx1.example.org. A 127.0.0.1\n"+
		tlsaLine("_25._tcp.mx1.example.org.", rec(3, 1, 1, m.leaf1))+
		"secure example.org.\nsecure mx1.example.org.\nsecure _25._tcp.mx1.example.org.\n", "TLSA 3 1 1", "TLSA 0 0 1", 1)
	m.dns.set(t, zone)
	h, err := forMX(t, m.e, "example.org", "mx1.example.org")
	if err == nil || h.Allowed || h.Reason != "mta-sts enforce: mx1.example.org does not match the policy of example.org" {
		t.Errorf("got %v, %v", h, err)
	}
}

// TestTesting: under mode testing nothing is refused; what enforce would
// have refused is logged.
func TestTesting(t *testing.T) {
	m := newMixed(t, strings.Replace(enforce12, "enforce", "testing", 1))
	h, err := forMX(t, m.e, "example.org", "mx3.example.org")
	if err != nil || h.Level != LevelMTASTS || h.TLS != TryTLS || !h.Testing {
		t.Fatalf("got %v, %v", h, err)
	}
	if err := h.Verify(state(m.leaf1)); err != nil {
		t.Errorf("testing refused a certificate: %v", err)
	}
	for _, want := range []string{
		"mta-sts testing: example.org: mx3.example.org does not match the policy (delivered anyway)",
		"mta-sts testing: example.org: certificate of mx3.example.org: x509: ",
	} {
		if !strings.Contains(m.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, m.log.String())
		}
	}
}

// TestConfiguredLevels: a tlspolicy line decides alone; dane does not
// look at MTA-STS and mta-sts does not look at DANE.
func TestConfiguredLevels(t *testing.T) {
	for _, tc := range []struct {
		level    Level
		host     string
		want     Level
		tls      TLS
		ok1, ok2 bool // leaf1 (self-signed, in mx1's TLSA) and leaf2 (trusted CA, mx2) pass Verify
	}{
		{LevelNone, "mx3.example.org", LevelNone, NoTLS, true, true},
		{LevelMay, "mx3.example.org", LevelMay, TryTLS, true, true},
		{LevelEncrypt, "mx3.example.org", LevelEncrypt, RequireTLS, true, true},
		{LevelVerify, "mx2.example.org", LevelVerify, RequireTLS, false, true},
		{LevelVerify, "mx3.example.org", LevelVerify, RequireTLS, false, false},
		{LevelDANE, "mx2.example.org", LevelMay, TryTLS, true, true},
		{LevelDANE, "mx1.example.org", LevelDANE, RequireTLS, true, false},
		{LevelMTASTS, "mx1.example.org", LevelMTASTS, RequireTLS, false, false},
		{LevelMTASTS, "mx2.example.org", LevelMTASTS, RequireTLS, false, true},
	} {
		m := newMixed(t, enforce12)
		m.e.Policies = map[string]Level{"example.org": tc.level}
		h, err := forMX(t, m.e, "EXAMPLE.org.", tc.host)
		if err != nil || h.Level != tc.want || h.TLS != tc.tls {
			t.Errorf("%v %s: got %v, %v", tc.level, tc.host, h, err)
			continue
		}
		err1, err2 := h.Verify(state(m.leaf1)), h.Verify(state(m.leaf2))
		if (err1 == nil) != tc.ok1 || (err2 == nil) != tc.ok2 {
			t.Errorf("%v %s: Verify gave %v and %v, want success %v and %v", tc.level, tc.host, err1, err2, tc.ok1, tc.ok2)
		}
		fetched := m.ps.hits.Load() > 0
		if fetched != (tc.level == LevelMTASTS) {
			t.Errorf("%v: MTA-STS policy fetched: %v", tc.level, fetched)
		}
		tlsa := m.dns.count("_25._tcp."+tc.host, 52) > 0
		if tlsa != (tc.level == LevelDANE) {
			t.Errorf("%v: TLSA looked up: %v", tc.level, tlsa)
		}
	}
}

// TestVerifyConnection: Verify plugged into a real handshake decides it.
func TestVerifyConnection(t *testing.T) {
	m := newMixed(t, enforce12)
	h, err := forMX(t, m.e, "example.org", "mx1.example.org")
	if err != nil || h.Level != LevelDANE {
		t.Fatalf("got %v, %v", h, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	handshake := func(c *cert) error {
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			sc, err := l.Accept()
			if err != nil {
				return
			}
			defer sc.Close()
			tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{c.tlsCert()}}).Handshake()
		}()
		cc, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			return err
		}
		defer cc.Close()
		return tls.Client(cc, &tls.Config{ServerName: h.Host, InsecureSkipVerify: true, VerifyConnection: h.Verify}).Handshake()
	}
	if err := handshake(m.leaf1); err != nil {
		t.Errorf("DANE-EE certificate refused: %v", err)
	}
	err = handshake(m.leaf2)
	var pe *Error
	if !errors.As(err, &pe) || pe.Host != "mx1.example.org" {
		t.Errorf("other certificate: got %v", err)
	}
}
