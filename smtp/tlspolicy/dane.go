package tlspolicy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TLSA parameters (RFC 6698 §2.1; the names are RFC 7218's).
const (
	UsagePKIXTA  = 0 // unusable for SMTP (RFC 7672 §3.1.3)
	UsagePKIXEE  = 1 // unusable for SMTP (RFC 7672 §3.1.3)
	UsageDANETA  = 2 // a trust anchor in the server's chain (RFC 7672 §3.1.2)
	UsageDANEEE  = 3 // the server's own key or certificate (RFC 7672 §3.1.1)
	SelectorCert = 0 // the whole certificate
	SelectorSPKI = 1 // its SubjectPublicKeyInfo
	MatchFull    = 0 // the data itself
	MatchSHA256  = 1 // its SHA-256
	MatchSHA512  = 2 // its SHA-512
)

// maxTLSA bounds the records of one TLSA RRset that are looked at.
const maxTLSA = 64

// A TLSA is one TLSA record (RFC 6698 §2).
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte // certificate association data; nil if it was not hex
}

// Usable reports whether an SMTP client can use the record (RFC 7672
// §3.1): usage DANE-TA or DANE-EE, a known selector, a known matching type
// with data of its length (RFC 7671 §5).
func (r TLSA) Usable() bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Matches reports whether the record's data is that of cert.
func (r TLSA) Matches(cert *x509.Certificate) bool {
	var b []byte
	switch r.Selector {
	case SelectorCert:
		b = cert.Raw
	case SelectorSPKI:
		b = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case MatchFull:
	case MatchSHA256:
		s := sha256.Sum256(b)
		b = s[:]
	case MatchSHA512:
		s := sha512.Sum512(b)
		b = s[:]
	default:
		return false
	}
	return len(r.Data) > 0 && bytes.Equal(b, r.Data)
}

// String returns the record in presentation form, long data shortened.
func (r TLSA) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, clip(hex.EncodeToString(r.Data)))
}

// VerifyDANE checks the server's certificates in cs against TLSA records
// (RFC 7672 §3): unusable records are ignored; a DANE-EE(3) record
// matching the server's certificate authenticates it whatever its names
// and dates (§3.1.1); a DANE-TA(2) record matching a certificate the
// server sent after its own makes that one the trust anchor of a chain
// that must verify at now, and the server's certificate must then name
// one of names (§3.1.2, §3.2.2). names are the reference identifiers: the
// MX host name, which is also the TLSA base domain here (no CNAME is
// followed). VerifyConnection in a tls.Config with InsecureSkipVerify is
// where it belongs.
func VerifyDANE(cs tls.ConnectionState, records []TLSA, names []string, now time.Time) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("no certificate")
	}
	var taErr error
	for _, r := range records {
		if !r.Usable() {
			continue
		}
		if r.Usage == UsageDANEEE && r.Matches(certs[0]) {
			return nil
		}
		if r.Usage != UsageDANETA {
			continue
		}
		for _, ta := range certs[1:] {
			if !r.Matches(ta) {
				continue
			}
			if taErr = verifyTA(certs, ta, names, now); taErr == nil {
				return nil
			}
		}
	}
	if taErr != nil {
		return fmt.Errorf("DANE-TA: %v", taErr)
	}
	spki := sha256.Sum256(certs[0].RawSubjectPublicKeyInfo)
	return fmt.Errorf("no TLSA record matches the certificate chain (server key: 3 1 1 %x)", spki)
}

// verifyTA verifies the server's certificate up to the trust anchor ta,
// through the other certificates it sent, then its names.
func verifyTA(certs []*x509.Certificate, ta *x509.Certificate, names []string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return err
	}
	for _, n := range names {
		if certs[0].VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("the certificate is not valid for %s", strings.Join(names, " or "))
}

// DANE discovery (RFC 7672 §2.2), through the validating resolver only.
// The MX RRset must be secure (AD set): §2.2.1 lets a client use DANE for
// MX hosts found through an insecure MX RRset too, but an attacker who can
// forge that RRset can name hosts without TLSA records, so it protects
// nothing, and it can fail a delivery that opportunistic TLS would have
// made; like Postfix, we do not. Each MX host is then a destination of its
// own (§2.2.2): its address records must be secure, then its TLSA RRset
// _<port>._tcp.<host> is looked up; a secure non-empty one applies. A
// lookup that fails (SERVFAIL is what a validating resolver answers for
// bogus data, §2.1.1) makes that host unusable, since the failure may be
// an attacker hiding its records: the message waits or goes to another
// MX. An insecure or empty answer means no DANE for that host.

// lookupMX learns whether the MX RRset of the domain is secure, and the
// hosts in it; a domain with a secure denial of MX records is its own MX
// (RFC 5321 §5.1).
func (p *DomainPolicy) lookupMX(ctx context.Context) error {
	a, err := p.e.dane.query(ctx, p.Domain, dns.TypeMX, true)
	if err != nil {
		return &Error{Domain: p.Domain, Reason: fmt.Sprintf("dane: MX lookup of %s at the validating resolver failed: %v", p.Domain, err)}
	}
	if !a.secure {
		p.daneNote = "MX records of " + p.Domain + " not DNSSEC-signed"
		return nil
	}
	p.secureMX = map[string]bool{}
	for _, rr := range a.rrs {
		if h, ok := normalize(rr.(*dns.MX).Mx); ok {
			p.secureMX[h] = true
		}
	}
	if len(a.rrs) == 0 && !a.nx {
		p.secureMX[p.Domain] = true
	}
	return nil
}

// tlsa returns the secure TLSA records of an MX host, or a note saying
// why DANE does not apply to it; an error when a lookup failed.
func (p *DomainPolicy) tlsa(ctx context.Context, host string) ([]TLSA, string, error) {
	switch {
	case p.daneNote != "":
		return nil, p.daneNote, nil
	case !p.secureMX[host]:
		return nil, host + " not in the signed MX records of " + p.Domain, nil
	}
	a, err := p.e.dane.query(ctx, host, dns.TypeA, true)
	if err != nil {
		return nil, "", fmt.Errorf("address lookup of %s at the validating resolver failed: %v", host, err)
	}
	if !a.secure {
		return nil, "address records of " + host + " not DNSSEC-signed", nil
	}
	name := "_" + p.e.port() + "._tcp." + host
	if a, err = p.e.dane.query(ctx, name, dns.TypeTLSA, true); err != nil {
		return nil, "", fmt.Errorf("TLSA lookup of %s failed: %v", name, err)
	}
	switch {
	case !a.secure:
		return nil, "TLSA records of " + name + " not DNSSEC-signed", nil
	case len(a.rrs) == 0:
		return nil, "no TLSA records at " + name, nil
	}
	return toTLSA(a.rrs), name, nil
}

// toTLSA converts up to maxTLSA records.
func toTLSA(rrs []dns.RR) []TLSA {
	var recs []TLSA
	for _, rr := range rrs[:min(len(rrs), maxTLSA)] {
		t := rr.(*dns.TLSA)
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			data = nil // unusable
		}
		recs = append(recs, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return recs
}

// usable returns the usable records of recs.
func usable(recs []TLSA) []TLSA {
	var u []TLSA
	for _, r := range recs {
		if r.Usable() {
			u = append(u, r)
		}
	}
	return u
}
