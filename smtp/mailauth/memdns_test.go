package mailauth

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A memDNS is a Resolver answering from memory, as the openspf suite's
// driver does: each name has its records in order; a "TIMEOUT" entry
// makes a question time out unless a record of the asked type came before
// it; a CNAME is followed (a chain of more than 8 is an error); an unknown
// name does not exist.
type memDNS struct {
	mu      sync.Mutex
	names   map[string][]memRR
	queries atomic.Int64
}

// A memRR is one record: typ "TXT" (val []string), "A", "AAAA", "PTR",
// "CNAME" (val string), "MX" (val MX), or "TIMEOUT".
type memRR struct {
	typ string
	val any
}

func newMemDNS() *memDNS { return &memDNS{names: map[string][]memRR{}} }

// add adds a record to name.
func (m *memDNS) add(name, typ string, val any) *memDNS {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = normName(name)
	m.names[name] = append(m.names[name], memRR{typ, val})
	return m
}

// txt adds a TXT record of one string.
func (m *memDNS) txt(name, s string) *memDNS { return m.add(name, "TXT", []string{s}) }

// find returns the values of name's records of type typ.
func (m *memDNS) find(ctx context.Context, name, typ string) ([]any, Answer, error) {
	m.queries.Add(1)
	if err := ctx.Err(); err != nil {
		return nil, Answer{}, &DNSError{Name: name, Type: typ, Err: err.Error()}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	name = normName(name)
	for hops := 0; ; hops++ {
		rrs, ok := m.names[name]
		if !ok {
			return nil, Answer{TTL: time.Minute, NotFound: true}, nil
		}
		var vals []any
		seen, next := false, ""
		for _, rr := range rrs {
			if rr.typ == "TIMEOUT" {
				if !seen {
					return nil, Answer{}, &DNSError{Name: name, Type: typ, Err: "i/o timeout"}
				}
				break
			}
			if rr.typ == typ {
				seen = true
				vals = append(vals, rr.val)
			}
			if rr.typ == "CNAME" && typ != "CNAME" {
				next = normName(rr.val.(string))
			}
		}
		if next == "" || len(vals) > 0 {
			return vals, Answer{TTL: time.Hour}, nil
		}
		if hops == 8 {
			return nil, Answer{}, &DNSError{Name: name, Type: typ, Err: "CNAME chain too long"}
		}
		name = next
	}
}

func (m *memDNS) LookupTXT(ctx context.Context, name string) ([]string, Answer, error) {
	vals, a, err := m.find(ctx, name, "TXT")
	var txts []string
	for _, v := range vals {
		txts = append(txts, strings.Join(v.([]string), ""))
	}
	return txts, a, err
}

func (m *memDNS) LookupIP(ctx context.Context, network, name string) ([]netip.Addr, Answer, error) {
	typ := "A"
	if network == "ip6" {
		typ = "AAAA"
	}
	vals, a, err := m.find(ctx, name, typ)
	var addrs []netip.Addr
	for _, v := range vals {
		addr, perr := netip.ParseAddr(v.(string))
		if perr != nil {
			panic(fmt.Sprintf("memDNS: %s %s %q: %v", name, typ, v, perr))
		}
		addrs = append(addrs, addr)
	}
	return addrs, a, err
}

func (m *memDNS) LookupMX(ctx context.Context, name string) ([]MX, Answer, error) {
	vals, a, err := m.find(ctx, name, "MX")
	var mxs []MX
	for _, v := range vals {
		mxs = append(mxs, v.(MX))
	}
	return mxs, a, err
}

func (m *memDNS) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, Answer, error) {
	vals, a, err := m.find(ctx, reverseName(ip), "PTR")
	var names []string
	for _, v := range vals {
		names = append(names, normName(v.(string)))
	}
	return names, a, err
}

// reverseName is ip's name under in-addr.arpa or ip6.arpa.
func reverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	b := ip.AsSlice()
	var labels []string
	if ip.Is4() {
		for i := len(b) - 1; i >= 0; i-- {
			labels = append(labels, fmt.Sprint(b[i]))
		}
		return strings.Join(labels, ".") + ".in-addr.arpa"
	}
	for i := len(b) - 1; i >= 0; i-- {
		labels = append(labels, fmt.Sprintf("%x.%x", b[i]&15, b[i]>>4))
	}
	return strings.Join(labels, ".") + ".ip6.arpa"
}
