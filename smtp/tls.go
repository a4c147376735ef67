package smtp

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// implicitTLS starts TLS before the greeting (RFC 8314 §3.3, port 465).
func (s *session) implicitTLS() error {
	if !s.c.ImplicitTLS {
		return nil
	}
	return s.handshake()
}

// startTLS upgrades the connection when the policy asks for it and the
// server offers it (RFC 3207), then says EHLO again (§4.2). Once STARTTLS is
// sent, nothing but a good handshake lets the session go on: no fallback to
// plaintext.
func (s *session) startTLS() error {
	if s.tls || s.tlsMode() == NoTLS {
		return nil
	}
	if _, ok := s.ext["STARTTLS"]; !ok {
		if s.tlsMode() == RequireTLS {
			return s.fail("starttls", s.noStartTLS())
		}
		s.note("the server does not offer STARTTLS; going on in plaintext")
		return nil
	}
	if _, err := s.cmd("starttls", s.t.Command, 2, "STARTTLS"); err != nil {
		return err
	}
	// CVE-2011-0411: anything the server sent after its 220 came before
	// the handshake, and must not be read as if it came after.
	if s.r.Buffered() > 0 {
		s.broken = true
		return s.fail("starttls", permanent(errors.New("the server sent data before the TLS handshake")))
	}
	if err := s.handshake(); err != nil {
		return err
	}
	return s.hello()
}

// handshake runs the TLS client handshake on the connection. The
// certificate is checked by verify; a certificate we do not accept is a
// permanent failure, any other failure of the handshake a temporary one.
func (s *session) handshake() error {
	cfg := &tls.Config{
		ServerName:         s.host,
		InsecureSkipVerify: true, // verify does it: pins, then the CAs
		VerifyConnection:   s.verify,
	}
	tc := tls.Client(s.conn, cfg)
	s.conn.SetDeadline(time.Now().Add(s.t.Command))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		s.broken = true
		if perr := s.policyTLSError(err); perr != nil {
			return s.fail("tls", perr)
		}
		var ce *CertError
		if errors.As(err, &ce) {
			s.c.failf("%v", ce)
			return s.fail("tls", permanent(ce))
		}
		return s.fail("tls", err)
	}
	s.conn.SetDeadline(time.Time{})
	s.setConn(tc)
	s.tls = true
	st := tc.ConnectionState()
	sum := sha256.Sum256(st.PeerCertificates[0].Raw)
	s.note("TLS %s %s, certificate x509 sha256=%x", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), sum)
	s.c.logf("started TLS to %s (%s) %s", s.host, s.addr, tls.VersionName(st.Version))
	return nil
}

// verify accepts the server's certificate if -o said anything goes, if it
// is pinned, or if it chains to a trusted CA and names the host.
func (s *session) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return &CertError{Host: s.host, Err: errors.New("no certificate")}
	}
	if s.pol != nil {
		return s.policyVerify(cs)
	}
	leaf := cs.PeerCertificates[0]
	if s.c.Insecure || s.c.Pins.Match(leaf) {
		return nil
	}
	opts := x509.VerifyOptions{Roots: s.c.RootCAs, DNSName: s.host, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		sum := sha256.Sum256(leaf.Raw)
		return &CertError{Host: s.host, SHA256: hex.EncodeToString(sum[:]), Err: err}
	}
	return nil
}

// A CertError is a server certificate we do not accept: not pinned and
// not verifiable. SHA256 is the line to add to lib/tls/smtp to pin it.
type CertError struct {
	Host   string
	SHA256 string
	Err    error
}

func (e *CertError) Error() string {
	return fmt.Sprintf("certificate of %s not recognized: x509 sha256=%s: %v", e.Host, e.SHA256, e.Err)
}

// Pins is a set of pinned certificate thumbprints, upas's lib/tls/smtp.
// The zero value and nil pin nothing.
type Pins struct {
	hashes map[string]bool // raw hash bytes
}

// Match reports whether cert is pinned: the SHA-256 or SHA-1 of its DER
// encoding, or the SHA-256 of its public key (SubjectPublicKeyInfo), is
// listed.
func (p *Pins) Match(cert *x509.Certificate) bool {
	if p == nil || len(p.hashes) == 0 {
		return false
	}
	s1 := sha1.Sum(cert.Raw)
	s256 := sha256.Sum256(cert.Raw)
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return p.hashes[string(s1[:])] || p.hashes[string(s256[:])] || p.hashes[string(spki[:])]
}

// Len returns the number of thumbprints.
func (p *Pins) Len() int {
	if p == nil {
		return 0
	}
	return len(p.hashes)
}

// maxInclude bounds the nesting of #include, as upas does.
const maxInclude = 8

// LoadPins reads a thumbprint file in upas's format (libsec thumb.c):
//
//	# comment
//	x509 sha256=<64 hex digits, or base64>
//	x509 sha1=<40 hex digits, or base64>
//	#include /another/file
//
// Other lines are ignored; a malformed x509 line is an error. A missing
// file pins nothing and is no error. Thumbprints listed in file.exclude
// (same format) are taken out.
func LoadPins(file string) (*Pins, error) {
	p := &Pins{hashes: map[string]bool{}}
	if err := loadPins(file, p.hashes, 0); err != nil {
		return nil, err
	}
	ex := map[string]bool{}
	if err := loadPins(file+".exclude", ex, 0); err != nil {
		return nil, err
	}
	for h := range ex {
		delete(p.hashes, h)
	}
	return p, nil
}

func loadPins(file string, into map[string]bool, depth int) error {
	if depth > maxInclude {
		return fmt.Errorf("invalid thumbprints: too many includes, last %s", file)
	}
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fld := strings.Fields(sc.Text())
		if len(fld) < 2 {
			continue
		}
		if fld[0] == "#include" {
			inc := fld[1]
			if !filepath.IsAbs(inc) {
				inc = filepath.Join(filepath.Dir(file), inc)
			}
			if err := loadPins(inc, into, depth+1); err != nil {
				return err
			}
			continue
		}
		if fld[0] != "x509" {
			continue
		}
		h, err := parseThumb(fld[1])
		if err != nil {
			return fmt.Errorf("%s:%d: invalid thumbprint: %v", file, n, err)
		}
		if h != nil {
			into[string(h)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	return nil
}

// parseThumb parses "sha256=..." or "sha1=..." in hex or base64; another
// algorithm gives nil, as upas ignores it.
func parseThumb(s string) ([]byte, error) {
	alg, v, _ := strings.Cut(s, "=")
	var n int
	switch alg {
	case "sha256":
		n = sha256.Size
	case "sha1":
		n = sha1.Size
	default:
		return nil, nil
	}
	if len(v) == 2*n {
		if b, err := hex.DecodeString(v); err == nil {
			return b, nil
		}
	}
	if b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "=")); err == nil && len(b) == n {
		return b, nil
	}
	return nil, fmt.Errorf("%s is neither %d hex digits nor base64", s, 2*n)
}
