package mailauth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"smtpfs/internal/dnsx"
)

// A Resolver answers the DNS questions of SPF, DKIM and DMARC. *DNS asks a
// server; Cache keeps its answers; tests plug in their own.
//
// A name that does not exist (NXDOMAIN) and a name without records of the
// type asked (NODATA) are answers: no records, with Answer.NotFound set for
// the first. The error is for no answer at all (a timeout, SERVFAIL,
// REFUSED, a malformed reply) and is temporary: SPF's temperror (RFC 7208
// §2.6.6), DKIM's TEMPFAIL (RFC 6376 §6.1.2), DMARC's temperror (RFC 7489
// §6.6.3).
type Resolver interface {
	// LookupTXT returns the TXT records of name, each one's strings
	// joined without a separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
	LookupTXT(ctx context.Context, name string) ([]string, Answer, error)
	// LookupIP returns the A (network "ip4") or AAAA ("ip6") records of
	// name.
	LookupIP(ctx context.Context, network, name string) ([]netip.Addr, Answer, error)
	// LookupMX returns the MX records of name, in the order received.
	LookupMX(ctx context.Context, name string) ([]MX, Answer, error)
	// LookupPTR returns the names the PTR records of ip point to.
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, Answer, error)
}

// An Answer says what a lookup that got a reply learned besides the records.
type Answer struct {
	TTL      time.Duration // how long the reply may be kept (RFC 2308 §5 for a negative one)
	NotFound bool          // the name does not exist (NXDOMAIN)
}

// An MX is a mail exchanger record. Host is lower case without the final
// dot; "." is a null MX (RFC 7505).
type MX struct {
	Host string
	Pref uint16
}

// A DNSError is a lookup that got no answer. It is always temporary.
type DNSError struct {
	Name, Type string
	Err        string
}

func (e *DNSError) Error() string { return fmt.Sprintf("dns: %s %s: %s", e.Name, e.Type, e.Err) }

// Temporary reports true: a lookup without an answer may succeed later.
func (e *DNSError) Temporary() bool { return true }

// A DNS looks things up through one recursive server with miekg/dns: UDP
// with EDNS0, TCP when the reply is truncated (RFC 7766), two tries. It is
// the client SPF needs and net.Resolver does not give: it tells NXDOMAIN
// from NODATA, returns TTLs, and asks names that are not host names
// ("_dmarc.", "macro%percent  space.example.com" from an SPF macro).
type DNS struct {
	Server  string        // host:port
	Timeout time.Duration // per query; 0 means 5 s
}

// NewDNS returns a DNS asking server (host:port; a bare host means port
// 53). "" means the first nameserver of /etc/resolv.conf, or 127.0.0.1:53.
func NewDNS(server string) *DNS {
	server = dnsx.Server(server)
	return &DNS{Server: server}
}

// Bounds on names (RFC 1035 §2.3.4): 63 octets a label, 253 a name
// written without its final dot.
const (
	maxLabel = 63
	maxName  = 253
)

// negativeTTL is how long a negative reply without an SOA record is kept.
const negativeTTL = 60 * time.Second

// validName reports whether name (without a final dot) can be asked: not
// empty, at most 253 octets, every label 1 to 63 octets. Any octet may be
// in a label (RFC 2181 §11).
func validName(name string) bool {
	if name == "" || len(name) > maxName {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > maxLabel {
			return false
		}
	}
	return true
}

// normName lower-cases name and drops one final dot.
func normName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// qname writes name in the presentation format miekg/dns packs: octets
// other than letters, digits, '-' and '_' escaped as \DDD.
func qname(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\%03d", c)
		}
	}
	b.WriteByte('.')
	return b.String()
}

// unescape undoes the escapes of miekg/dns's presentation format: \DDD is
// the octet DDD, \X is X.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		if i+3 < len(s) && isDigits(s[i+1:i+4]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		i++
		b.WriteByte(s[i])
	}
	return b.String()
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// query asks one question and returns the answer records of type qtype.
func (d *DNS) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, Answer, error) {
	name = strings.TrimSuffix(name, ".")
	if !validName(name) {
		return nil, Answer{TTL: negativeTTL, NotFound: true}, nil
	}
	m := new(dns.Msg)
	m.SetQuestion(qname(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(4096, false)
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	in, err := dnsx.Exchange(ctx, m, d.Server, timeout)
	tname := dns.TypeToString[qtype]
	if err != nil {
		return nil, Answer{}, &DNSError{Name: name, Type: tname, Err: err.Error()}
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, Answer{TTL: soaTTL(in), NotFound: true}, nil
	default:
		return nil, Answer{}, &DNSError{Name: name, Type: tname, Err: dns.RcodeToString[in.Rcode]}
	}
	var rrs []dns.RR
	ttl := uint32(1<<31 - 1)
	for _, rr := range in.Answer {
		// A CNAME chain comes first; only the records asked for are
		// returned, and the shortest TTL of the chain bounds the lot.
		ttl = min(ttl, rr.Header().Ttl)
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	if len(rrs) == 0 {
		return nil, Answer{TTL: soaTTL(in)}, nil
	}
	return rrs, Answer{TTL: time.Duration(ttl) * time.Second}, nil
}

// soaTTL is how long a negative reply may be kept: the smaller of the SOA
// record's TTL and its MINIMUM field (RFC 2308 §5).
func soaTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
		}
	}
	return negativeTTL
}

// LookupTXT returns name's TXT records.
func (d *DNS) LookupTXT(ctx context.Context, name string) ([]string, Answer, error) {
	rrs, a, err := d.query(ctx, name, dns.TypeTXT)
	var txts []string
	for _, rr := range rrs {
		var b strings.Builder
		for _, s := range rr.(*dns.TXT).Txt {
			b.WriteString(unescape(s))
		}
		txts = append(txts, b.String())
	}
	return txts, a, err
}

// LookupIP returns name's A or AAAA records.
func (d *DNS) LookupIP(ctx context.Context, network, name string) ([]netip.Addr, Answer, error) {
	qtype := dns.TypeA
	if network == "ip6" {
		qtype = dns.TypeAAAA
	}
	rrs, a, err := d.query(ctx, name, qtype)
	var addrs []netip.Addr
	for _, rr := range rrs {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A
		case *dns.AAAA:
			ip = rr.AAAA
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, addr.Unmap())
		}
	}
	return addrs, a, err
}

// LookupMX returns name's MX records.
func (d *DNS) LookupMX(ctx context.Context, name string) ([]MX, Answer, error) {
	rrs, a, err := d.query(ctx, name, dns.TypeMX)
	var mxs []MX
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		host := normName(unescape(mx.Mx))
		if host == "" {
			host = "."
		}
		mxs = append(mxs, MX{Host: host, Pref: mx.Preference})
	}
	return mxs, a, err
}

// LookupPTR returns the names ip's PTR records point to.
func (d *DNS) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, Answer, error) {
	arpa, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, Answer{}, &DNSError{Name: ip.String(), Type: "PTR", Err: err.Error()}
	}
	rrs, a, err := d.query(ctx, arpa, dns.TypePTR)
	var names []string
	for _, rr := range rrs {
		names = append(names, normName(unescape(rr.(*dns.PTR).Ptr)))
	}
	return names, a, err
}
