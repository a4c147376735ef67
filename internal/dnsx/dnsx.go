// Package dnsx is the DNS exchange that smtp, smtp/tlspolicy and
// smtp/mailauth share: the server to ask, and how a question goes to it.
// Each package reads the reply its own way (what NXDOMAIN means, TTLs,
// the AD bit), so only the asking is here. It imports nothing of smtpfs,
// so that all three may use it without importing each other.
package dnsx

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Server returns the host:port to ask for server: itself when it has a
// port, port 53 for a bare host or address ("[::1]" too), and for "" the
// first nameserver of /etc/resolv.conf, or 127.0.0.1:53 if there is none.
func Server(server string) string {
	if server == "" {
		if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil && len(cc.Servers) > 0 {
			return net.JoinHostPort(cc.Servers[0], cc.Port)
		}
		return "127.0.0.1:53"
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		return net.JoinHostPort(strings.Trim(server, "[]"), "53")
	}
	return server
}

// Exchange sends m to server over UDP with a 4096-octet EDNS0 buffer,
// again over TCP when the reply is truncated (RFC 7766 §5), and the whole
// again once if that fails, unless ctx is done; timeout bounds each
// exchange. The error is the last exchange's.
func Exchange(ctx context.Context, m *dns.Msg, server string, timeout time.Duration) (*dns.Msg, error) {
	var in *dns.Msg
	var err error
	for try := 0; try < 2; try++ {
		c := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 4096}
		in, _, err = c.ExchangeContext(ctx, m, server)
		if err == nil && in.Truncated {
			c.Net = "tcp"
			in, _, err = c.ExchangeContext(ctx, m, server)
		}
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	return in, err
}
