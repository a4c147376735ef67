package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"smtpfs/smtp/tlspolicy"
)

// The TLS policy of outbound delivery: the hooks between the Client and
// smtp/tlspolicy, which decides.
//
// With Client.Policy set, a destination routed by MX (a bare domain; not
// an address literal, nor a dial string with a port such as a smarthost)
// gets the engine's decision once per attempt, logged. The MX hosts it
// refuses (not listed by an MTA-STS policy in mode enforce, DNSSEC
// lookups that failed) are not dialled; each host that is gets its
// MXPolicy, which says whether STARTTLS is mandatory and checks the
// certificate instead of Insecure, Pins and RootCAs. Where the policy
// makes TLS mandatory the message never goes in the clear: a server that
// does not offer STARTTLS (or whose offer was stripped on the way) and a
// certificate that fails are temporary failures with the engine's reason,
// and the next host is tried; when none is left the queue keeps the
// message, shows the reason, and in the end bounces it (RFC 8461 §5, RFC
// 7672 §2.2). Other destinations keep StartTLS, Insecure and Pins.
//
// REQUIRETLS (RFC 8689 §4.2.1): a message whose Params ask for it goes
// only to an MX host the policy authenticates (DANE with usable TLSA
// records, an MTA-STS policy in mode enforce, or an MX RRset the
// validating resolver vouched for, checked with the CAs for the MX name),
// over TLS with the certificate verified, to a server that offers
// REQUIRETLS, and with REQUIRETLS on MAIL FROM. Anything else is a
// permanent failure, 5.7.30 (RFC 8689 §5: such a message is bounced,
// never sent without).

// A hostPolicy is the policy of one hop.
type hostPolicy struct {
	m          *tlspolicy.MXPolicy
	requireTLS bool // the message asks REQUIRETLS: failures are final
}

// PolicyStats count the TLS policy's decisions, for the stats file. The
// zero value is ready; a Client with a nil *PolicyStats counts nothing.
type PolicyStats struct {
	DANE, MTASTS, Verify, Encrypt, May, None atomic.Int64 // connections tried under each level
	Refused                                  atomic.Int64 // attempts the policy stopped: no host allowed, STARTTLS missing, certificate refused
	RequireTLS                               atomic.Int64 // MAIL FROM with REQUIRETLS
	RequireTLSFailed                         atomic.Int64 // REQUIRETLS messages refused (5.7.30)
}

// A PolicyStat is one counter and its name in the stats file.
type PolicyStat struct {
	Name  string
	Value int64
}

// Values returns the counters with their names: tls.dane, tls.mtasts,
// tls.verify, tls.encrypt, tls.may, tls.none, tls.refused,
// tls.requiretls, tls.requiretls.failed.
func (p *PolicyStats) Values() []PolicyStat {
	return []PolicyStat{
		{"tls.dane", p.DANE.Load()}, {"tls.mtasts", p.MTASTS.Load()}, {"tls.verify", p.Verify.Load()},
		{"tls.encrypt", p.Encrypt.Load()}, {"tls.may", p.May.Load()}, {"tls.none", p.None.Load()},
		{"tls.refused", p.Refused.Load()}, {"tls.requiretls", p.RequireTLS.Load()},
		{"tls.requiretls.failed", p.RequireTLSFailed.Load()},
	}
}

// count adds one to the counter f picks, if there are counters.
func (c *Client) count(f func(*PolicyStats) *atomic.Int64) {
	if c.PolicyStats != nil {
		f(c.PolicyStats).Add(1)
	}
}

// requireTLSError is the permanent failure of a REQUIRETLS message (RFC
// 8689 §5: 5.7.30).
func requireTLSError(format string, args ...any) *Reply {
	return Replyf(550, "5.7.30", "REQUIRETLS: "+format, args...)
}

// applyPolicy asks the engine about the destination and returns the hops
// it allows, each with its policy; or the *Error that stops the attempt.
func (c *Client) applyPolicy(ctx context.Context, d DialString, hops []hop, req bool) ([]hop, error) {
	if c.Policy == nil || d.Port != "" || literal(d.Host).IsValid() {
		if req {
			c.count(func(p *PolicyStats) *atomic.Int64 { return &p.RequireTLSFailed })
			return nil, &Error{Phase: "tls", Host: d.Host, Err: requireTLSError("%s is not a destination whose MX hosts a TLS policy authenticates", d.Host)}
		}
		return hops, nil
	}
	names := make([]string, len(hops))
	for i, h := range hops {
		names[i] = h.name
	}
	dec, err := c.Policy.Resolve(ctx, d.Host, names)
	if dec == nil {
		return nil, c.policyRefused(d.Host, err, req)
	}
	c.logf("tls policy %s", dec.Domain)
	var kept []hop
	var why []string
	for i, h := range hops[:min(len(hops), len(dec.Hosts))] {
		m := dec.Hosts[i]
		if !m.Allowed {
			c.logf("tls policy %s", m)
			continue
		}
		if req {
			var reason string
			if m, reason = requireTLSPolicy(dec.Domain, m); m == nil {
				why = append(why, reason)
				continue
			}
		}
		h.pol = &hostPolicy{m: m, requireTLS: req}
		kept = append(kept, h)
	}
	switch {
	case len(kept) > 0:
		return kept, nil
	case err != nil:
		return nil, c.policyRefused(d.Host, err, req)
	case req:
		c.count(func(p *PolicyStats) *atomic.Int64 { return &p.RequireTLSFailed })
		return nil, &Error{Phase: "tls", Host: d.Host, Err: requireTLSError("%s", strings.Join(why[:min(len(why), 3)], "; "))}
	}
	return nil, c.policyRefused(d.Host, &tlspolicy.Error{Domain: d.Host, Reason: "no MX host to apply the TLS policy to"}, false)
}

// policyRefused counts and logs a destination the policy refuses, and
// returns its *Error: temporary, or for REQUIRETLS permanent.
func (c *Client) policyRefused(host string, err error, req bool) *Error {
	c.failf("tls policy %s: not delivered: %v", host, err)
	if req {
		c.count(func(p *PolicyStats) *atomic.Int64 { return &p.RequireTLSFailed })
		return &Error{Phase: "tls", Host: host, Err: requireTLSError("%v", err)}
	}
	c.count(func(p *PolicyStats) *atomic.Int64 { return &p.Refused })
	return &Error{Phase: "tls", Host: host, Err: err}
}

// requireTLSPolicy returns the policy under which a REQUIRETLS message may
// go to the host (RFC 8689 §4.2.1), or nil and why not: DANE as it is, an
// enforced MTA-STS policy as it is, a host of a signed MX RRset with its
// certificate verified for its name whatever the domain's level says.
func requireTLSPolicy(dp *tlspolicy.DomainPolicy, m *tlspolicy.MXPolicy) (*tlspolicy.MXPolicy, string) {
	switch {
	case m.Level == tlspolicy.LevelDANE && len(m.TLSA) > 0:
		return m, ""
	case m.Level == tlspolicy.LevelMTASTS && m.TLS == tlspolicy.RequireTLS && !m.Testing:
		return m, ""
	case dp.SignedMX(m.Host):
		v := *m
		v.Level, v.TLS, v.Testing = tlspolicy.LevelVerify, tlspolicy.RequireTLS, false
		v.Reason = "requiretls: TLS required, certificate verified for " + m.Host + " (DNSSEC-signed MX)"
		return &v, ""
	}
	return nil, m.Host + " is authenticated by neither DANE, an MTA-STS policy in mode enforce, nor DNSSEC-signed MX records"
}

// notePolicy logs the policy of the session's host and counts it.
func (s *session) notePolicy() {
	if s.pol == nil {
		return
	}
	m := s.pol.m
	s.note("tls policy: %s", m.Reason)
	s.c.logf("tls policy %s (%s): %s", s.host, s.addr, m.Reason)
	s.c.count(func(p *PolicyStats) *atomic.Int64 {
		switch m.Level {
		case tlspolicy.LevelDANE:
			return &p.DANE
		case tlspolicy.LevelMTASTS:
			return &p.MTASTS
		case tlspolicy.LevelVerify:
			return &p.Verify
		case tlspolicy.LevelEncrypt:
			return &p.Encrypt
		case tlspolicy.LevelNone:
			return &p.None
		}
		return &p.May
	})
}

// tlsMode is when the session uses STARTTLS: as its host's policy says,
// else as the Client's StartTLS.
func (s *session) tlsMode() TLSMode {
	if s.pol == nil {
		return s.c.StartTLS
	}
	switch s.pol.m.TLS {
	case tlspolicy.RequireTLS:
		return RequireTLS
	case tlspolicy.TryTLS:
		return TryTLS
	}
	return NoTLS
}

// noStartTLS is the failure of a session whose policy needs TLS from a
// server that does not offer STARTTLS: nothing more is sent on it.
func (s *session) noStartTLS() error {
	if s.pol == nil {
		return errors.New("TLS required, but the server does not offer STARTTLS")
	}
	return s.refused(fmt.Errorf("TLS required (%s), but the server does not offer STARTTLS", s.pol.m.Reason))
}

// refused counts a session the policy stopped and classes its error.
func (s *session) refused(err error) error {
	if s.pol.requireTLS {
		s.c.count(func(p *PolicyStats) *atomic.Int64 { return &p.RequireTLSFailed })
		return requireTLSError("%v", err)
	}
	s.c.count(func(p *PolicyStats) *atomic.Int64 { return &p.Refused })
	return err
}

// policyVerify checks the certificate as the host's policy says.
func (s *session) policyVerify(cs tls.ConnectionState) error {
	return s.pol.m.Verify(cs)
}

// policyTLSError returns the failure of a handshake that the policy's
// check of the certificate ended, nil for another failure.
func (s *session) policyTLSError(err error) error {
	var pe *tlspolicy.Error
	if s.pol == nil || !errors.As(err, &pe) {
		return nil
	}
	s.c.failf("tls policy %s (%s): %v", s.host, s.addr, pe)
	return s.refused(pe)
}

// checkRequireTLS stops a REQUIRETLS message before MAIL FROM unless the
// session is one its policy allows, over TLS, to a server that offers
// REQUIRETLS (RFC 8689 §4.2.1). Another host may still take it.
func (s *session) checkRequireTLS(env envelope) error {
	if !env.params.RequireTLS {
		return nil
	}
	_, offered := s.ext["REQUIRETLS"]
	var why string
	switch {
	case s.pol == nil || !s.pol.requireTLS:
		why = "no TLS policy authenticates " + s.host
	case !s.tls:
		why = "no TLS with " + s.host
	case !offered:
		why = s.host + " does not offer REQUIRETLS"
	default:
		return nil
	}
	s.c.count(func(p *PolicyStats) *atomic.Int64 { return &p.RequireTLSFailed })
	return s.fail("starttls", requireTLSError("%s", why))
}

// requireTLSParam is the REQUIRETLS parameter of MAIL FROM (RFC 8689
// §4.1) for a message that asks it of a server that checkRequireTLS let
// through.
func (s *session) requireTLSParam(env envelope) string {
	if _, ok := s.ext["REQUIRETLS"]; !ok || !env.params.RequireTLS || !s.tls {
		return ""
	}
	s.c.count(func(p *PolicyStats) *atomic.Int64 { return &p.RequireTLS })
	return " REQUIRETLS"
}

// DescribePolicy returns what the TLS policy says of dest, one line for
// the destination and one per MX host in the order they would be tried,
// without connecting (smtp -p reports it); nil for a destination the
// policy does not apply to (no Policy, an address literal, a port).
func (c *Client) DescribePolicy(ctx context.Context, dest string) ([]string, error) {
	d, err := ParseDialString(dest)
	if err != nil || c.Policy == nil || d.Port != "" || literal(d.Host).IsValid() {
		return nil, err
	}
	hops, err := c.route(ctx, d)
	if err != nil {
		return nil, &Error{Phase: "dns", Host: d.Host, Err: err}
	}
	names := make([]string, len(hops))
	for i, h := range hops {
		names[i] = h.name
	}
	dec, err := c.Policy.Resolve(ctx, d.Host, names)
	if dec == nil {
		return nil, err
	}
	lines := []string{dec.Domain.String()}
	for _, m := range dec.Hosts {
		lines = append(lines, m.String())
	}
	return lines, nil
}
