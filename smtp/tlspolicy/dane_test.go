package tlspolicy

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// rec makes a TLSA record for c.
func rec(usage, sel, match uint8, c *cert) TLSA {
	b := c.x509.Raw
	if sel == SelectorSPKI {
		b = c.x509.RawSubjectPublicKeyInfo
	}
	switch match {
	case MatchSHA256:
		s := sha256.Sum256(b)
		b = s[:]
	case MatchSHA512:
		s := sha512.Sum512(b)
		b = s[:]
	}
	return TLSA{usage, sel, match, b}
}

func TestVerifyDANE(t *testing.T) {
	now := time.Now()
	root := valid(t, nil, true, "root")
	inter := valid(t, root, true, "intermediate")
	leaf := valid(t, inter, false, "mx.example.org")
	other := valid(t, inter, false, "other.example.org")
	expired := newCert(t, inter, []string{"mx.example.org"}, false, now.Add(-48*time.Hour), now.Add(-time.Hour))
	stray := newCert(t, nil, []string{"whatever.invalid"}, false, now.Add(-48*time.Hour), now.Add(-time.Hour))
	short := rec(3, 1, 1, leaf)
	short.Data = short.Data[:31]
	names := []string{"mx.example.org"}

	for _, tc := range []struct {
		name  string
		recs  []TLSA
		chain []*cert
		err   string // "" for success
	}{
		{"DANE-EE SPKI SHA-256", []TLSA{rec(3, 1, 1, leaf)}, []*cert{leaf}, ""},
		{"DANE-EE cert SHA-256", []TLSA{rec(3, 0, 1, leaf)}, []*cert{leaf, inter}, ""},
		{"DANE-EE SPKI SHA-512", []TLSA{rec(3, 1, 2, leaf)}, []*cert{leaf}, ""},
		{"DANE-EE cert full", []TLSA{rec(3, 0, 0, leaf)}, []*cert{leaf}, ""},
		{"DANE-EE ignores name and expiry", []TLSA{rec(3, 1, 1, stray)}, []*cert{stray}, ""},
		{"DANE-EE other key", []TLSA{rec(3, 1, 1, other)}, []*cert{leaf}, "no TLSA record matches"},
		{"DANE-EE on the issuer", []TLSA{rec(3, 0, 1, inter)}, []*cert{leaf, inter}, "no TLSA record matches"},
		{"DANE-TA intermediate", []TLSA{rec(2, 0, 1, inter)}, []*cert{leaf, inter}, ""},
		{"DANE-TA root SPKI", []TLSA{rec(2, 1, 1, root)}, []*cert{leaf, inter, root}, ""},
		{"DANE-TA wrong name", []TLSA{rec(2, 0, 1, inter)}, []*cert{other, inter}, "not valid for mx.example.org"},
		{"DANE-TA not sent", []TLSA{rec(2, 0, 1, root)}, []*cert{leaf, inter}, "no TLSA record matches"},
		{"DANE-TA expired", []TLSA{rec(2, 0, 1, inter)}, []*cert{expired, inter}, "DANE-TA: x509: certificate has expired"},
		{"DANE-TA on the leaf", []TLSA{rec(2, 0, 1, leaf)}, []*cert{leaf, inter}, "no TLSA record matches"},
		{"DANE-TA chain does not lead there", []TLSA{rec(2, 0, 1, inter)}, []*cert{stray, inter}, "DANE-TA"},
		{"PKIX-EE unusable", []TLSA{rec(1, 1, 1, leaf)}, []*cert{leaf}, "no TLSA record matches"},
		{"PKIX-TA unusable", []TLSA{rec(0, 0, 1, root)}, []*cert{leaf, inter, root}, "no TLSA record matches"},
		{"short digest", []TLSA{short}, []*cert{leaf}, "no TLSA record matches"},
		{"unknown selector", []TLSA{{3, 2, 1, short.Data}}, []*cert{leaf}, "no TLSA record matches"},
		{"unknown matching", []TLSA{{3, 1, 3, rec(3, 1, 1, leaf).Data}}, []*cert{leaf}, "no TLSA record matches"},
		{"one of several", []TLSA{rec(1, 1, 1, leaf), rec(3, 1, 1, other), rec(3, 1, 1, leaf)}, []*cert{leaf}, ""},
		{"no certificate", []TLSA{rec(3, 1, 1, leaf)}, nil, "no certificate"},
	} {
		err := VerifyDANE(state(tc.chain...), tc.recs, names, now)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.err)
		}
	}
}

func TestUsable(t *testing.T) {
	d32, d64 := make([]byte, 32), make([]byte, 64)
	for _, tc := range []struct {
		r    TLSA
		want bool
	}{
		{TLSA{3, 1, 1, d32}, true},
		{TLSA{2, 0, 2, d64}, true},
		{TLSA{3, 0, 0, []byte{1}}, true},
		{TLSA{3, 0, 0, nil}, false},
		{TLSA{0, 0, 1, d32}, false},
		{TLSA{1, 1, 1, d32}, false},
		{TLSA{4, 1, 1, d32}, false},
		{TLSA{3, 2, 1, d32}, false},
		{TLSA{3, 1, 3, d32}, false},
		{TLSA{3, 1, 1, d64}, false},
		{TLSA{3, 1, 2, d32}, false},
	} {
		if got := tc.r.Usable(); got != tc.want {
			t.Errorf("%v usable: %v, want %v", tc.r, got, tc.want)
		}
	}
}

// tlsaLine returns the TLSA record of r for a zone.
func tlsaLine(name string, r TLSA) string {
	return fmt.Sprintf("%s TLSA %d %d %d %s\n", name, r.Usage, r.Selector, r.MatchingType, hex.EncodeToString(r.Data))
}

// daneZone: example.org signed, MX mx.example.org, signed, with a signed
// DANE-EE record for leaf.
func daneZone(leaf *cert) string {
	return "example.org. MX 10 mx.example.org.\n" +
		"mx.example.org. A 127.0.0.1\n" +
		tlsaLine("_25._tcp.mx.example.org.", rec(3, 1, 1, leaf)) +
		"secure example.org.\nsecure mx.example.org.\nsecure _25._tcp.mx.example.org.\n"
}

// forMX asks e for the policy of host as an MX of domain.
func forMX(t *testing.T, e *Engine, domain, host string) (*MXPolicy, error) {
	t.Helper()
	dp, err := e.ForDomain(t.Context(), domain)
	if err != nil {
		t.Fatalf("ForDomain: %v", err)
	}
	return dp.ForMX(t.Context(), host)
}

// TestDANEDiscovery: DANE applies only where the validating resolver
// vouches for the MX RRset, the host's addresses and its TLSA records.
func TestDANEDiscovery(t *testing.T) {
	leaf := valid(t, nil, false, "mx.example.org")
	base := daneZone(leaf)
	unusable := strings.Replace(base, "TLSA 3 1 1", "TLSA 1 1 1", 1)
	for _, tc := range []struct {
		name, zone string
		level      Level
		tls        TLS
		reason     string
		refused    bool
	}{
		{"signed", base, LevelDANE, RequireTLS, "dane: TLS required, 1 usable TLSA records at _25._tcp.mx.example.org", false},
		{"MX not signed", strings.Replace(base, "secure example.org.", "", 1), LevelMay, TryTLS, "no dane: MX records of example.org not DNSSEC-signed", false},
		{"addresses not signed", strings.Replace(base, "secure mx.example.org.", "", 1), LevelMay, TryTLS, "address records of mx.example.org not DNSSEC-signed", false},
		{"TLSA not signed", strings.Replace(base, "secure _25._tcp", "; ", 1), LevelMay, TryTLS, "TLSA records of _25._tcp.mx.example.org not DNSSEC-signed", false},
		{"no TLSA", strings.Replace(base, "_25._tcp.mx.example.org. TLSA", "x.example.org. TLSA", 1), LevelMay, TryTLS, "no TLSA records at _25._tcp.mx.example.org", false},
		{"TLSA unusable", unusable, LevelEncrypt, RequireTLS, "dane: TLS required, not authenticated: TLSA records at _25._tcp.mx.example.org all unusable", false},
		{"TLSA bogus", base + "servfail _25._tcp.mx.example.org.", LevelDefault, NoTLS, "dane: TLSA lookup of _25._tcp.mx.example.org failed: dns: _25._tcp.mx.example.org TLSA: SERVFAIL", true},
		{"addresses bogus", base + "servfail mx.example.org.", LevelDefault, NoTLS, "dane: address lookup of mx.example.org at the validating resolver failed", true},
	} {
		d := newFakeDNS(t, tc.zone)
		e := &Engine{Resolver: d.addr, DANEResolver: d.addr}
		m, err := forMX(t, e, "example.org", "mx.example.org")
		if tc.refused != (err != nil) || m.Allowed == tc.refused {
			t.Errorf("%s: allowed %v, error %v", tc.name, m.Allowed, err)
		}
		if !tc.refused && (m.Level != tc.level || m.TLS != tc.tls) {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, m.Level, m.TLS, tc.level, tc.tls)
		}
		if !strings.Contains(m.Reason, tc.reason) {
			t.Errorf("%s: reason %q, want %q", tc.name, m.Reason, tc.reason)
		}
		var pe *Error
		if err != nil && (!errors.As(err, &pe) || !pe.Temporary() || pe.Host != "mx.example.org") {
			t.Errorf("%s: error %#v is not a temporary *Error for the host", tc.name, err)
		}
	}
}

// TestDANEVerify: the MXPolicy of a DANE host accepts the certificate of
// its TLSA record, whatever its name, and no other.
func TestDANEVerify(t *testing.T) {
	leaf := valid(t, nil, false, "not-the-mx.example.net")
	d := newFakeDNS(t, daneZone(leaf))
	e := &Engine{Resolver: d.addr, DANEResolver: d.addr}
	m, err := forMX(t, e, "example.org", "MX.example.org.")
	if err != nil || m.Level != LevelDANE {
		t.Fatalf("got %v, %v", m, err)
	}
	if err := m.Verify(state(leaf)); err != nil {
		t.Errorf("matching certificate refused: %v", err)
	}
	err = m.Verify(state(valid(t, nil, false, "mx.example.org")))
	var pe *Error
	if !errors.As(err, &pe) || !strings.HasPrefix(pe.Reason, "dane: certificate of mx.example.org: no TLSA record matches") {
		t.Errorf("other certificate: got %v", err)
	}
}

// TestDANEWithoutResolver: no daneresolver, no DANE, and no DNSSEC query.
func TestDANEWithoutResolver(t *testing.T) {
	leaf := valid(t, nil, false, "mx.example.org")
	d := newFakeDNS(t, daneZone(leaf))
	e := &Engine{Resolver: d.addr}
	m, err := forMX(t, e, "example.org", "mx.example.org")
	if err != nil || m.Level != LevelMay || !strings.Contains(m.Reason, "no validating resolver") {
		t.Errorf("got %v, %v", m, err)
	}
	if n := d.count("_25._tcp.mx.example.org", 52); n != 0 {
		t.Errorf("%d TLSA queries without a validating resolver", n)
	}
}

// TestDANEMXBogus: the validating resolver cannot vouch for the MX
// records: nothing may go to the domain now.
func TestDANEMXBogus(t *testing.T) {
	d := newFakeDNS(t, daneZone(valid(t, nil, false, "mx.example.org"))+"servfail example.org.")
	e := &Engine{Resolver: d.addr, DANEResolver: d.addr}
	_, err := e.ForDomain(t.Context(), "example.org")
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(pe.Reason, "dane: MX lookup of example.org at the validating resolver failed") {
		t.Errorf("got %v", err)
	}
}

// TestDANEHosts: DANE applies to the hosts of the signed MX RRset only;
// a domain with a signed denial of MX records is its own MX; the TLSA
// name follows the SMTP port.
func TestDANEHosts(t *testing.T) {
	leaf := valid(t, nil, false, "mx.example.org")
	d := newFakeDNS(t, daneZone(leaf)+"elsewhere.example.net. A 127.0.0.1\nsecure elsewhere.example.net.\n"+
		tlsaLine("_25._tcp.elsewhere.example.net.", rec(3, 1, 1, leaf))+"secure _25._tcp.elsewhere.example.net.\n")
	e := &Engine{Resolver: d.addr, DANEResolver: d.addr}
	if m, _ := forMX(t, e, "example.org", "elsewhere.example.net"); m.Level != LevelMay || !strings.Contains(m.Reason, "not in the signed MX records of example.org") {
		t.Errorf("host outside the MX RRset: %v", m)
	}

	d.set(t, "implicit.example. A 127.0.0.1\nsecure implicit.example.\n"+
		tlsaLine("_2525._tcp.implicit.example.", rec(3, 1, 1, leaf))+"secure _2525._tcp.implicit.example.\n")
	e = &Engine{Resolver: d.addr, DANEResolver: d.addr, Port: "2525"}
	if m, err := forMX(t, e, "implicit.example", "implicit.example"); err != nil || m.Level != LevelDANE {
		t.Errorf("implicit MX: %v, %v", m, err)
	}
}
