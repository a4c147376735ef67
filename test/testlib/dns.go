// Package testlib holds helpers shared by the tests of several packages: a
// fake DNS server, a scriptable SMTP server, throwaway certificates and a
// polling wait. It is imported only from _test.go files.
package testlib

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// A DNS is a fake DNS server on 127.0.0.1, over UDP and TCP, answering from
// a zone given as text. Each line is a resource record in zone-file syntax
// ("example.org. 300 IN MX 10 mx.example.org.", the TTL and class may be
// left out), or "name NXDOMAIN" or "name SERVFAIL" to make every query for
// name fail that way. A name with no record of the asked type, but some
// other record, gets an empty answer (NODATA); an unknown name, NXDOMAIN.
type DNS struct {
	Addr    string       // host:port, for $SMTPFS_RESOLVER
	Queries atomic.Int64 // number of queries answered
	AD      atomic.Bool  // set the AD bit in every answer, as a validating resolver vouching for it

	mu    sync.Mutex
	rrs   map[string][]dns.RR
	rcode map[string]int
}

// NewDNS starts a fake DNS server for the life of the test.
func NewDNS(t testing.TB, zone string) *DNS {
	t.Helper()
	d, stop, err := startDNS(zone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return d
}

// ServeDNS starts a fake DNS server outside a test (for TestMain) and
// returns a function that stops it, and its address.
func ServeDNS(zone string) (stop func(), addr string, err error) {
	d, stop, err := startDNS(zone)
	if err != nil {
		return nil, "", err
	}
	return stop, d.Addr, nil
}

func startDNS(zone string) (*DNS, func(), error) {
	d := &DNS{}
	if err := d.Set(zone); err != nil {
		return nil, nil, err
	}
	pc, l, err := listenUDPTCP()
	if err != nil {
		return nil, nil, err
	}
	d.Addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: d}
	tcp := &dns.Server{Listener: l, Handler: d}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	return d, func() {
		udp.Shutdown()
		tcp.Shutdown()
	}, nil
}

// listenUDPTCP listens on one port of 127.0.0.1 for UDP and TCP. The
// port the UDP listener got may be taken for TCP (by any connection on
// the machine), so it tries a few ports.
func listenUDPTCP() (net.PacketConn, net.Listener, error) {
	var err error
	for try := 0; try < 20; try++ {
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		var l net.Listener
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			return pc, l, nil
		}
		pc.Close()
	}
	return nil, nil, err
}

// Set replaces the zone.
func (d *DNS) Set(zone string) error {
	rrs := map[string][]dns.RR{}
	rcode := map[string]int{}
	for i, line := range strings.Split(zone, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], ";") || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) == 2 && (f[1] == "NXDOMAIN" || f[1] == "SERVFAIL") {
			code := dns.RcodeNameError
			if f[1] == "SERVFAIL" {
				code = dns.RcodeServerFailure
			}
			rcode[dns.CanonicalName(f[0])] = code
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			return fmt.Errorf("zone line %d: %v", i+1, err)
		}
		name := dns.CanonicalName(rr.Header().Name)
		rrs[name] = append(rrs[name], rr)
	}
	d.mu.Lock()
	d.rrs, d.rcode = rrs, rcode
	d.mu.Unlock()
	return nil
}

// ServeDNS answers one query.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	d.Queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.AuthenticatedData = d.AD.Load()
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	d.mu.Lock()
	code, failed := d.rcode[name]
	rrs := d.rrs[name]
	d.mu.Unlock()
	switch {
	case failed:
		m.Rcode = code
	case len(rrs) == 0:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				c := dns.Copy(rr)
				c.Header().Name = q.Name
				m.Answer = append(m.Answer, c)
			}
		}
	}
	w.WriteMsg(m)
}
