package tlspolicy

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A Level is the TLS security level of a destination, after Postfix's
// smtp_tls_security_level.
type Level int

const (
	// LevelDefault is that of a domain without a tlspolicy line: DANE
	// where it applies, else MTA-STS where published, else may.
	LevelDefault Level = iota
	LevelNone          // no TLS
	LevelMay           // TLS when offered, any certificate
	LevelEncrypt       // TLS required, any certificate
	LevelVerify        // TLS required, certificate verified for the MX name
	LevelDANE          // DANE where it applies, else may
	LevelMTASTS        // MTA-STS where published, else may
)

var levelNames = [...]string{"default", "none", "may", "encrypt", "verify", "dane", "mta-sts"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel parses the level of a tlspolicy line: dane, mta-sts, verify,
// encrypt, may or none.
func ParseLevel(s string) (Level, error) {
	for l, n := range levelNames {
		if s == n && Level(l) != LevelDefault {
			return Level(l), nil
		}
	}
	return 0, fmt.Errorf("invalid TLS policy level %q: not dane, mta-sts, verify, encrypt, may or none", clip(s))
}

// A TLS says whether STARTTLS is used, as smtp.TLSMode does.
type TLS int

const (
	NoTLS      TLS = iota // never
	TryTLS                // when the server offers it
	RequireTLS            // always; a server that does not offer it is not used
)

func (t TLS) String() string {
	return [...]string{"no TLS", "TLS when offered", "TLS required"}[t]
}

// An Engine decides the TLS policy of outbound deliveries. Its fields are
// its configuration; set them before the first use and do not change them
// afterwards. An Engine is safe for concurrent use.
type Engine struct {
	Resolver     string           // DNS server for TXT and address lookups (host:port); "" means /etc/resolv.conf's
	DANEResolver string           // validating resolver whose AD bit DANE trusts (host:port); "" means no DANE
	HTTP         *http.Client     // for policy fetches, its redirects refused; nil means the package's own
	HTTPSPort    string           // port of mta-sts.<domain>; "" means 443 (tests set it)
	RootCAs      *x509.CertPool   // CAs for verify, mta-sts and the package's policy fetches; nil means the system's
	Port         string           // SMTP port, for TLSA names; "" means 25
	CacheDir     string           // one file per domain with its MTA-STS policy; "" means memory only
	Now          func() time.Time // nil means time.Now
	Policies     map[string]Level // tlspolicy lines: keys in lower case, without a final dot
	Log          *log.Logger      // policy fetches and failures, mta-sts testing findings; nil for none

	once   sync.Once
	dns    *resolver
	dane   *resolver // nil without DANEResolver
	client *http.Client

	mu     sync.Mutex
	mem    map[string]*entry
	stripe [stripes]sync.Mutex
}

func (e *Engine) init() {
	e.once.Do(func() {
		e.dns = newResolver(e.Resolver)
		if e.DANEResolver != "" {
			e.dane = newResolver(e.DANEResolver)
		}
		e.client = e.newHTTPClient()
	})
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) port() string { return cmp.Or(e.Port, "25") }

func (e *Engine) logf(format string, args ...any) {
	if e.Log != nil {
		e.Log.Printf(format, args...)
	}
}

func (e *Engine) httpClient() *http.Client { return e.client }

// newHTTPClient returns the client of policy fetches: e.HTTP with
// redirects refused (RFC 8461 §3.3), or one that resolves names through
// e.Resolver, trusts e.RootCAs, keeps no connection and bounds each step.
func (e *Engine) newHTTPClient() *http.Client {
	if e.HTTP != nil {
		c := *e.HTTP
		c.CheckRedirect = noRedirect
		return &c
	}
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, e.dns.server)
	}}
	dialer := &net.Dialer{Timeout: 10 * time.Second, Resolver: res}
	tr := &http.Transport{
		DialContext:            dialer.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: e.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  20 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
		DisableKeepAlives:      true,
	}
	return &http.Client{Transport: tr, Timeout: fetchTimeout, CheckRedirect: noRedirect}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// An Error is a destination, or one MX host of it, that the policy does
// not let a message go to now. Every one is temporary: the queue keeps the
// message and tries again until its lifetime ends, then bounces it with
// the reason (RFC 8461 §5, RFC 7672 §2.2: the failure may be an attack or
// a mistake that will be mended).
type Error struct {
	Domain string
	Host   string // "" when it is about the whole domain
	Reason string // one line, e.g. "mta-sts enforce: mx.example.org does not match the policy of example.org"
}

func (e *Error) Error() string { return e.Reason }

// Temporary reports whether a later try may succeed: always.
func (e *Error) Temporary() bool { return true }

// A DomainPolicy is what the policy of a destination domain is made of,
// found once per delivery attempt; ForMX applies it to each MX host.
type DomainPolicy struct {
	Domain  string
	Level   Level      // its tlspolicy line, LevelDefault without one
	STS     *STSPolicy // the MTA-STS policy in force, nil for none or not asked
	STSNote string     // where STS came from, or why there is none

	daneNote string          // why DANE applies to no host of the domain
	secureMX map[string]bool // the hosts of its signed MX RRset
	e        *Engine
}

// ForDomain finds the policy of domain: its tlspolicy level, its MX
// RRset's DNSSEC status when DANE may apply, its MTA-STS policy when that
// may. The error, always an *Error, says the validating resolver could not
// vouch for the MX records: nothing can be delivered now.
func (e *Engine) ForDomain(ctx context.Context, domain string) (*DomainPolicy, error) {
	e.init()
	d, ok := normalize(domain)
	p := &DomainPolicy{Domain: d, Level: e.Policies[d], e: e}
	if p.Level != LevelDefault && p.Level != LevelDANE && p.Level != LevelMTASTS {
		return p, nil
	}
	if !ok {
		p.daneNote, p.STSNote = "not a domain name", "not a domain name"
		return p, nil
	}
	if p.Level != LevelMTASTS {
		if e.dane == nil {
			p.daneNote = "no validating resolver (daneresolver)"
		} else if err := p.lookupMX(ctx); err != nil {
			return nil, err
		}
	}
	if p.Level != LevelDANE {
		p.STS, p.STSNote = e.stsPolicy(ctx, d)
	}
	return p, nil
}

// String describes the policy for logs.
func (p *DomainPolicy) String() string {
	s := fmt.Sprintf("%s: tlspolicy %s", p.Domain, p.Level)
	if p.daneNote != "" {
		s += "; no dane: " + p.daneNote
	}
	if p.STSNote != "" {
		s += "; mta-sts: " + p.STSNote
		if p.STS != nil {
			s += " (" + string(p.STS.Mode) + ")"
		}
	}
	return s
}

// An MXPolicy is the policy of one MX host: whether it may be used, with
// or without TLS, and how its certificate is checked.
type MXPolicy struct {
	Domain  string
	Host    string
	Allowed bool   // false: do not connect to this host
	Level   Level  // the level that applies: none, may, encrypt, verify, dane or mta-sts
	TLS     TLS    // whether STARTTLS is needed
	Testing bool   // mta-sts in mode testing: findings are logged, nothing refused
	Reason  string // one line saying why, for logs and the queue
	TLSA    []TLSA // the usable TLSA records, for dane

	e *Engine
}

// ForMX returns the policy of one MX host of the domain. The error, an
// *Error, says the host may not be used now (Allowed is false, and the
// MXPolicy says why too): its MX name does not match an enforced MTA-STS
// policy, or its DNSSEC lookups failed. Other hosts may still be tried.
func (p *DomainPolicy) ForMX(ctx context.Context, mx string) (*MXPolicy, error) {
	host, _ := normalize(mx)
	m := &MXPolicy{Domain: p.Domain, Host: host, e: p.e}
	switch p.Level {
	case LevelNone:
		m.set(LevelNone, NoTLS, "none: no TLS, as configured")
	case LevelMay:
		m.set(LevelMay, TryTLS, "may: TLS when offered, as configured")
	case LevelEncrypt:
		m.set(LevelEncrypt, RequireTLS, "encrypt: TLS required, any certificate, as configured")
	case LevelVerify:
		m.set(LevelVerify, RequireTLS, "verify: TLS required, certificate verified for "+host+", as configured")
	case LevelMTASTS:
		p.viaSTS(m, "")
	default:
		if err := p.viaDANE(ctx, m); err != nil {
			m.Reason = err.Error()
			return m, err
		}
	}
	if !m.Allowed {
		return m, &Error{Domain: p.Domain, Host: host, Reason: m.Reason}
	}
	return m, nil
}

func (m *MXPolicy) set(l Level, t TLS, reason string) {
	m.Allowed, m.Level, m.TLS, m.Reason = true, l, t, reason
}

// viaDANE applies DANE to the host (RFC 7672 §2.2): usable TLSA records
// make TLS and a match mandatory; records that are all unusable make TLS
// mandatory without authentication (§2.2), unless an enforced MTA-STS
// policy asks for more; without records, level dane is may and the
// default level goes on to MTA-STS. DANE comes before MTA-STS (RFC 8461
// §2).
func (p *DomainPolicy) viaDANE(ctx context.Context, m *MXPolicy) error {
	recs, note, err := p.tlsa(ctx, m.Host)
	if err != nil {
		return &Error{Domain: p.Domain, Host: m.Host, Reason: "dane: " + err.Error()}
	}
	toSTS := p.Level == LevelDefault
	u := usable(recs)
	switch {
	case len(u) > 0:
		m.set(LevelDANE, RequireTLS, fmt.Sprintf("dane: TLS required, %d usable TLSA records at %s", len(u), note))
		m.TLSA = u
	case len(recs) > 0 && toSTS && p.STS != nil && p.STS.Mode == ModeEnforce:
		p.viaSTS(m, "TLSA records at "+note+" all unusable")
	case len(recs) > 0:
		m.set(LevelEncrypt, RequireTLS, "dane: TLS required, not authenticated: TLSA records at "+note+" all unusable")
	case toSTS:
		p.viaSTS(m, "no dane: "+note)
	default:
		m.set(LevelMay, TryTLS, "dane: TLS when offered: "+note)
	}
	return nil
}

// viaSTS applies the MTA-STS policy to the host (RFC 8461 §4, §5): under
// enforce, a host that does not match is refused, one that does needs TLS
// and a certificate verified for its name; under testing, mismatches are
// logged and nothing is refused; with no policy, or mode none, it is may.
func (p *DomainPolicy) viaSTS(m *MXPolicy, note string) {
	s := p.STS
	if note != "" {
		note = " (" + note + ")"
	}
	match := s != nil && s.Match(m.Host)
	switch {
	case s == nil || s.Mode == ModeNone:
		m.set(LevelMay, TryTLS, "may: TLS when offered: "+cmp.Or(p.STSNote, "no MTA-STS policy")+note)
	case s.Mode == ModeEnforce && !match:
		m.Allowed, m.Level = false, LevelMTASTS
		m.Reason = fmt.Sprintf("mta-sts enforce: %s does not match the policy of %s", m.Host, p.Domain)
	case s.Mode == ModeEnforce:
		m.set(LevelMTASTS, RequireTLS, "mta-sts enforce: TLS required, certificate verified for "+m.Host+note)
	default:
		m.set(LevelMTASTS, TryTLS, "mta-sts testing: TLS when offered"+note)
		m.Testing = true
		if !match {
			m.Reason += "; " + m.Host + " does not match the policy"
			p.e.logf("mta-sts testing: %s: %s does not match the policy (delivered anyway)", p.Domain, m.Host)
		}
	}
}

// Verify checks the server's certificate as the policy asks: against the
// TLSA records for dane, the CAs and the host name for verify and mta-sts,
// not at all otherwise. Under mta-sts testing a failure is logged, not
// returned. It fits tls.Config.VerifyConnection, with InsecureSkipVerify
// set so that it alone decides; its error is an *Error.
func (m *MXPolicy) Verify(cs tls.ConnectionState) error {
	var err error
	switch m.Level {
	case LevelDANE:
		err = VerifyDANE(cs, m.TLSA, []string{m.Host}, m.e.now())
	case LevelVerify, LevelMTASTS:
		err = verifyPKIX(cs, m.Host, m.e.RootCAs, m.e.now())
	}
	if err == nil {
		return nil
	}
	what, _, _ := strings.Cut(m.Reason, ":")
	if m.Testing {
		m.e.logf("%s: %s: certificate of %s: %v (delivered anyway)", what, m.Domain, m.Host, err)
		return nil
	}
	return &Error{Domain: m.Domain, Host: m.Host, Reason: fmt.Sprintf("%s: certificate of %s: %v", what, m.Host, err)}
}

// verifyPKIX verifies the chain against roots (nil: the system's) and the
// name, wildcards in the leftmost label only (RFC 8461 §4.1, RFC 6125).
func verifyPKIX(cs tls.ConnectionState, host string, roots *x509.CertPool, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: now, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// String describes the policy for logs: host, then the reason.
func (m *MXPolicy) String() string {
	if !m.Allowed {
		return m.Host + ": not used: " + m.Reason
	}
	return m.Host + ": " + m.Reason
}

// maxHosts bounds the MX hosts Resolve looks at.
const maxHosts = 20

// A Decision is the policy of a destination and of each of its MX hosts.
type Decision struct {
	Domain *DomainPolicy
	Hosts  []*MXPolicy // in the order of the hosts given
}

// Resolve finds the policy of domain and of each of mxhosts, the hosts
// delivery would try, in that order (the domain itself for an implicit
// MX). Its error, an *Error, says no host may be used: the domain's
// policy failed, or every host was refused; its reason is the one line
// the queue shows ("mta-sts enforce: mx.example.org does not match ...").
func (e *Engine) Resolve(ctx context.Context, domain string, mxhosts []string) (*Decision, error) {
	dp, err := e.ForDomain(ctx, domain)
	if err != nil {
		return nil, err
	}
	d := &Decision{Domain: dp}
	for _, h := range mxhosts[:min(len(mxhosts), maxHosts)] {
		m, _ := dp.ForMX(ctx, h)
		d.Hosts = append(d.Hosts, m)
	}
	return d, d.Err()
}

// Allowed returns the hosts that may be used, in order.
func (d *Decision) Allowed() []*MXPolicy {
	var a []*MXPolicy
	for _, m := range d.Hosts {
		if m.Allowed {
			a = append(a, m)
		}
	}
	return a
}

// Err returns nil when some host may be used, else an *Error whose reason
// joins those of the first three hosts.
func (d *Decision) Err() error {
	if len(d.Allowed()) > 0 {
		return nil
	}
	if len(d.Hosts) == 0 {
		return &Error{Domain: d.Domain.Domain, Reason: "no MX host to apply the TLS policy to"}
	}
	var r []string
	for _, m := range d.Hosts[:min(len(d.Hosts), 3)] {
		r = append(r, m.Reason)
	}
	if n := len(d.Hosts) - 3; n > 0 {
		r = append(r, fmt.Sprintf("and %d more", n))
	}
	return &Error{Domain: d.Domain.Domain, Reason: strings.Join(r, "; ")}
}
