package testlib

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// An STSServer is a loopback HTTPS server of MTA-STS policies (RFC 8461
// §3.3): GET /.well-known/mta-sts.txt on host mta-sts.<domain> answers the
// policy set for domain, as text/plain; anything else is 404.
type STSServer struct {
	Addr string // 127.0.0.1:port
	Cert *Cert  // its certificate: trust it (Cert.CertFile) to fetch

	mu       sync.Mutex
	policies map[string]string
	fetches  map[string]int
}

// NewSTSServer starts an STSServer whose certificate names mta-sts.<d> for
// each of domains, written in dir, for the life of the test.
func NewSTSServer(t testing.TB, dir string, domains ...string) *STSServer {
	t.Helper()
	var names []string
	for _, d := range domains {
		names = append(names, "mta-sts."+d)
	}
	s := &STSServer{Cert: NewCert(t, dir, names...), policies: map[string]string{}, fetches: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	srv := &http.Server{Handler: s, TLSConfig: s.Cert.ServerConfig()}
	go srv.Serve(tls.NewListener(l, srv.TLSConfig))
	t.Cleanup(func() { srv.Close() })
	return s
}

// Port returns the port the server listens on.
func (s *STSServer) Port() string {
	_, p, _ := net.SplitHostPort(s.Addr)
	return p
}

// Set sets the policy of domain ("" for none: 404).
func (s *STSServer) Set(domain, policy string) {
	s.mu.Lock()
	s.policies[domain] = policy
	s.mu.Unlock()
}

// Fetches returns how many times the policy of domain was asked for.
func (s *STSServer) Fetches(domain string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[domain]
}

// Policy returns the text of a policy: version STSv1, the mode, each MX
// pattern, max_age a day.
func Policy(mode string, mx ...string) string {
	p := "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, m := range mx {
		p += "mx: " + m + "\r\n"
	}
	return p + "max_age: 86400\r\n"
}

func (s *STSServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	domain, ok := strings.CutPrefix(strings.ToLower(host), "mta-sts.")
	s.mu.Lock()
	p := s.policies[domain]
	if ok {
		s.fetches[domain]++
	}
	s.mu.Unlock()
	if !ok || p == "" || r.URL.Path != "/.well-known/mta-sts.txt" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprint(w, p)
}

// TLSA311 returns the TLSA record data of usage DANE-EE(3), selector
// SPKI(1), matching SHA-256(1) for the certificate: "3 1 1 <hex>".
func TLSA311(c *Cert) string {
	sum := sha256.Sum256(c.X509.RawSubjectPublicKeyInfo)
	return "3 1 1 " + hex.EncodeToString(sum[:])
}

// NewSinksOnePort starts one sink per option, the first on 127.0.0.1, the
// next on 127.0.0.2 and so on, all on the same port: the MX hosts of a
// fake DNS, each its own address, reached on one SMTP port. It tries a
// few ports if one is taken on another address.
func NewSinksOnePort(t testing.TB, opts ...SinkOptions) []*Sink {
	t.Helper()
	for try := 0; try < 10; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ls := []net.Listener{l}
		for i := 1; i < len(opts); i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%s", i+1, port))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		if len(ls) < len(opts) {
			for _, l := range ls {
				l.Close()
			}
			continue
		}
		var sinks []*Sink
		for i, o := range opts {
			sinks = append(sinks, serveSink(t, ls[i], o))
		}
		return sinks
	}
	t.Fatalf("no port free on 127.0.0.1 to 127.0.0.%d", len(opts))
	return nil
}
