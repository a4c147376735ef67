package tlspolicy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// A fakeDNS is a DNS server on 127.0.0.1 (UDP) that plays a validating
// resolver. Its zone is text: resource records in zone-file syntax, and
// the lines "secure NAME" (answers for NAME, data or denial, carry the AD
// bit, if the query set DO or AD) and "servfail NAME" (every query for
// NAME gets SERVFAIL, as a bogus answer does). A name with records but
// none of the type asked gets NODATA, an unknown one NXDOMAIN.
type fakeDNS struct {
	addr string

	mu      sync.Mutex
	rrs     map[string][]dns.RR
	secure  map[string]bool
	fail    map[string]bool
	queries map[string]int // "name type" -> count
}

func newFakeDNS(t *testing.T, zone string) *fakeDNS {
	t.Helper()
	d := &fakeDNS{}
	d.set(t, zone)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: d}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

func (d *fakeDNS) set(t *testing.T, zone string) {
	t.Helper()
	rrs, secure, fail := map[string][]dns.RR{}, map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(zone, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], ";"):
		case f[0] == "secure":
			secure[dns.CanonicalName(f[1])] = true
		case f[0] == "servfail":
			fail[dns.CanonicalName(f[1])] = true
		default:
			rr, err := dns.NewRR(line)
			if err != nil {
				t.Fatalf("zone line %q: %v", line, err)
			}
			n := dns.CanonicalName(rr.Header().Name)
			rrs[n] = append(rrs[n], rr)
		}
	}
	d.mu.Lock()
	d.rrs, d.secure, d.fail, d.queries = rrs, secure, fail, map[string]int{}
	d.mu.Unlock()
}

func (d *fakeDNS) count(name string, qtype uint16) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[dns.CanonicalName(name)+" "+dns.TypeToString[qtype]]
}

func (d *fakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	d.mu.Lock()
	d.queries[name+" "+dns.TypeToString[q.Qtype]]++
	rrs, secure, fail := d.rrs[name], d.secure[name], d.fail[name]
	d.mu.Unlock()
	wantsAD := req.AuthenticatedData || (req.IsEdns0() != nil && req.IsEdns0().Do())
	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	case len(rrs) == 0:
		m.Rcode = dns.RcodeNameError
	}
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	m.AuthenticatedData = secure && wantsAD && !fail
	w.WriteMsg(m)
}

// A cert is a certificate with its key.
type cert struct {
	x509 *x509.Certificate
	key  crypto.Signer
}

var serial atomic.Int64

// newCert makes a certificate for names, valid from nb to na, signed by
// parent (self-signed when nil); isCA makes it a CA.
func newCert(t *testing.T, parent *cert, names []string, isCA bool, nb, na time.Time) *cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             nb,
		NotAfter:              na,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames = names
	}
	signer, issuer := crypto.Signer(key), tmpl
	if parent != nil {
		signer, issuer = parent.key, parent.x509
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &cert{c, key}
}

// valid makes a certificate valid from an hour ago for 30 days.
func valid(t *testing.T, parent *cert, isCA bool, names ...string) *cert {
	now := time.Now()
	return newCert(t, parent, names, isCA, now.Add(-time.Hour), now.Add(30*24*time.Hour))
}

// tlsCert returns c with the chain for a tls.Config.
func (c *cert) tlsCert(chain ...*cert) tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{c.x509.Raw}, PrivateKey: c.key, Leaf: c.x509}
	for _, p := range chain {
		tc.Certificate = append(tc.Certificate, p.x509.Raw)
	}
	return tc
}

func pool(cs ...*cert) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c.x509)
	}
	return p
}

// state is what a handshake would give VerifyConnection.
func state(cs ...*cert) tls.ConnectionState {
	var st tls.ConnectionState
	for _, c := range cs {
		st.PeerCertificates = append(st.PeerCertificates, c.x509)
	}
	return st
}

// A policyServer serves an MTA-STS policy over HTTPS on 127.0.0.1, as
// mta-sts.<domain> for the domains its certificate names.
type policyServer struct {
	srv  *httptest.Server
	port string
	hits atomic.Int64 // requests for the policy
	away atomic.Int64 // requests elsewhere (redirect targets)

	mu     sync.Mutex
	status int
	ctype  string
	body   string
	header map[string]string
}

func newPolicyServer(t *testing.T, c *cert, body string) *policyServer {
	t.Helper()
	ps := &policyServer{status: 200, ctype: "text/plain", body: body}
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(ps.serve))
	ps.srv.TLS = &tls.Config{Certificates: []tls.Certificate{c.tlsCert()}}
	ps.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are what some tests want
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	_, ps.port, _ = net.SplitHostPort(ps.srv.Listener.Addr().String())
	return ps
}

// reply sets what the next requests get.
func (ps *policyServer) reply(status int, ctype, body string, header map[string]string) {
	ps.mu.Lock()
	ps.status, ps.ctype, ps.body, ps.header = status, ctype, body, header
	ps.mu.Unlock()
}

func (ps *policyServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/.well-known/mta-sts.txt" {
		ps.away.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		ps.mu.Lock()
		body := ps.body
		ps.mu.Unlock()
		w.Write([]byte(body))
		return
	}
	ps.hits.Add(1)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for k, v := range ps.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", ps.ctype)
	w.WriteHeader(ps.status)
	w.Write([]byte(ps.body))
}

// A clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
