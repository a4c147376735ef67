package smtp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"smtpfs/internal/dnsx"
)

// A DNS answers the two questions delivery asks. *Resolver is the real one;
// tests may plug in another.
type DNS interface {
	// LookupMX returns the MX records of domain, in any order: (nil, nil)
	// when the domain exists but has none; a *DNSError with NotFound when
	// the domain does not exist.
	LookupMX(ctx context.Context, domain string) ([]MX, error)
	// LookupIP returns the IPv6 and IPv4 addresses of host: (nil, nil)
	// when it has none, a *DNSError with NotFound when it does not exist.
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// An MX is a mail exchanger record (RFC 5321 §5.1). Host "." with any
// preference is a null MX (RFC 7505).
type MX struct {
	Host string // without the final dot, lower case; "." for a null MX
	Pref uint16
}

// A DNSError is a failed lookup. NotFound (NXDOMAIN, or a host with no
// address) is a permanent answer; anything else (SERVFAIL, REFUSED, no
// answer, a timeout) is temporary.
type DNSError struct {
	Name     string
	Type     string // "MX", "A", "AAAA"
	NotFound bool
	Err      string
}

func (e *DNSError) Error() string {
	if e.NotFound && e.Err == "" {
		return fmt.Sprintf("dns: %s: domain not found", e.Name)
	}
	return fmt.Sprintf("dns: %s %s: %s", e.Name, e.Type, e.Err)
}

// Temporary reports whether the lookup may succeed later.
func (e *DNSError) Temporary() bool { return !e.NotFound }

// A Resolver looks things up through one DNS server with miekg/dns: UDP
// with EDNS0, TCP when the answer is truncated (RFC 7766), two tries.
type Resolver struct {
	Server  string        // host:port
	Timeout time.Duration // per query; 0 means 5 s
}

// NewResolver returns a Resolver asking server (host:port, a bare host means
// port 53). "" means the first nameserver of /etc/resolv.conf, or
// 127.0.0.1:53 if there is none.
func NewResolver(server string) *Resolver {
	server = dnsx.Server(server)
	return &Resolver{Server: server}
}

// maxNameLen bounds a domain name (RFC 1035 §2.3.4: 255 octets).
const maxNameLen = 255

// query asks one question and returns the answer records of type qtype.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	tname := dns.TypeToString[qtype]
	if len(name) > maxNameLen || name == "" {
		return nil, &DNSError{Name: name, Type: tname, NotFound: true}
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, &DNSError{Name: name, Type: tname, NotFound: true}
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(4096, false)
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	in, err := dnsx.Exchange(ctx, m, r.Server, timeout)
	if err != nil {
		return nil, &DNSError{Name: name, Type: tname, Err: err.Error()}
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, &DNSError{Name: name, Type: tname, NotFound: true}
	default:
		return nil, &DNSError{Name: name, Type: tname, Err: dns.RcodeToString[in.Rcode]}
	}
	var rrs []dns.RR
	for _, rr := range in.Answer {
		// A CNAME chain comes first; only the records asked for count.
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	return rrs, nil
}

// LookupMX returns domain's MX records.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	rrs, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var mxs []MX
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		host := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		if host == "" {
			host = "."
		}
		mxs = append(mxs, MX{Host: host, Pref: mx.Preference})
	}
	return mxs, nil
}

// LookupIP returns host's AAAA and A records, asked at the same time.
// localhost is loopback without a question (RFC 6761 §6.3). When one of the
// two lookups fails and the other finds addresses, the addresses win.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	if strings.EqualFold(host, "localhost") {
		return []netip.Addr{netip.IPv6Loopback(), netip.MustParseAddr("127.0.0.1")}, nil
	}
	type result struct {
		rrs []dns.RR
		err error
	}
	c6 := make(chan result, 1)
	go func() {
		rrs, err := r.query(ctx, host, dns.TypeAAAA)
		c6 <- result{rrs, err}
	}()
	rrs4, err4 := r.query(ctx, host, dns.TypeA)
	res6 := <-c6
	var addrs []netip.Addr
	for _, rr := range append(res6.rrs, rrs4...) {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.AAAA:
			ip = rr.AAAA
		case *dns.A:
			ip = rr.A
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	// No addresses: a temporary failure of either lookup is the answer,
	// then not-found, then none.
	var d4, d6 *DNSError
	errors.As(err4, &d4)
	errors.As(res6.err, &d6)
	switch {
	case d4 != nil && d4.Temporary():
		return nil, d4
	case d6 != nil && d6.Temporary():
		return nil, d6
	case d4 != nil:
		return nil, d4
	case d6 != nil:
		return nil, d6
	}
	return nil, nil
}

// DomainExists reports whether domain has an MX, A or AAAA record: (false,
// nil) for NXDOMAIN or none of them; an error when DNS failed (temporary).
// A null MX (RFC 7505) counts as none: such a domain takes no mail, so it
// cannot take replies or bounces either (RFC 7505 §4.2). The server's
// sender check (-r, verifysenderdom) uses it.
func (r *Resolver) DomainExists(ctx context.Context, domain string) (bool, error) {
	mxs, err := r.LookupMX(ctx, domain)
	var de *DNSError
	switch {
	case errors.As(err, &de) && de.NotFound:
		return false, nil
	case err != nil:
		return false, err
	case len(mxs) > 0:
		return !isNullMX(mxs), nil
	}
	addrs, err := r.LookupIP(ctx, domain)
	if errors.As(err, &de) && de.NotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return len(addrs) > 0, nil
}
