package tlspolicy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"

	"smtpfs/internal/dnsx"
)

// A resolver asks one DNS server with miekg/dns: UDP with EDNS0, TCP when
// the answer is truncated (RFC 7766), two tries. It is this package's own,
// so that smtp, which will use the package, need not be imported by it.
type resolver struct {
	server  string        // host:port
	timeout time.Duration // per query
}

// newResolver returns a resolver asking server (host:port, a bare host
// means port 53); "" means the first nameserver of /etc/resolv.conf, or
// 127.0.0.1:53.
func newResolver(server string) *resolver {
	server = dnsx.Server(server)
	return &resolver{server: server, timeout: 5 * time.Second}
}

// An answer is what one query learned. NXDOMAIN and NODATA are answers,
// not errors: under DNSSEC a signed denial is as telling as data.
type answer struct {
	rrs    []dns.RR // the records of the type asked for, CNAMEs left out
	nx     bool     // NXDOMAIN
	secure bool     // the AD bit was set (RFC 4035 §3.2.3)
}

// A dnsError is a lookup that got no answer: a timeout, SERVFAIL (which a
// validating resolver also returns for a bogus answer, RFC 4035 §5.5), or
// another error code. It is always temporary.
type dnsError struct {
	name, qtype, err string
}

func (e *dnsError) Error() string {
	return fmt.Sprintf("dns: %s %s: %s", e.name, e.qtype, e.err)
}

// query asks one question. With dnssec, the DO bit (RFC 3225) and the AD
// bit (RFC 6840 §5.7) are set in the query, so that a validating resolver
// says in its answer's AD bit whether it validated it.
func (r *resolver) query(ctx context.Context, name string, qtype uint16, dnssec bool) (*answer, error) {
	tname := dns.TypeToString[qtype]
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = dnssec
	m.SetEdns0(4096, dnssec)
	in, err := dnsx.Exchange(ctx, m, r.server, r.timeout)
	if err != nil {
		return nil, &dnsError{name, tname, err.Error()}
	}
	return toAnswer(in, name, qtype)
}

// toAnswer reads a reply: the records of type qtype, and whether it was
// validated.
func toAnswer(in *dns.Msg, name string, qtype uint16) (*answer, error) {
	a := &answer{secure: in.AuthenticatedData}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		a.nx = true
		return a, nil
	default:
		return nil, &dnsError{name, dns.TypeToString[qtype], dns.RcodeToString[in.Rcode]}
	}
	for _, rr := range in.Answer {
		if rr.Header().Rrtype == qtype {
			a.rrs = append(a.rrs, rr)
		}
	}
	return a, nil
}

// maxNameLen bounds a domain name in text (RFC 1035 §2.3.4: 255 octets on
// the wire, 253 characters without the final dot).
const maxNameLen = 253

// normalize returns name in lower case without the final dot, and whether
// it is a host name this package can look up and name a cache file after:
// letters, digits, '-', '_' and '.', at least two labels, no empty label.
func normalize(name string) (string, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" || len(name) > maxNameLen || !strings.Contains(name, ".") {
		return name, false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return name, false
		}
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return name, false
		}
	}
	return name, true
}
