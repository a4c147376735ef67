package mailauth

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"smtpfs/internal/errquote"
)

// SPF, RFC 7208: check_host() (§4) for the MAIL FROM identity, or for the
// HELO identity when the reverse-path is null (§2.4). Every limit of §4.6.4
// holds: at most 10 mechanisms and modifiers that ask DNS (include, a, mx,
// ptr, exists, redirect) in the whole evaluation, at most 2 of them with a
// void answer (NXDOMAIN or no records), at most 10 MX names looked up for
// one mx, at most 10 PTR names for one ptr or %{p}; and the whole check
// ends after SPFTimeout (20 s by default, the least §4.6.4 allows) with
// temperror. An explanation (exp=, §6.2) is looked up once, only for a
// fail, without counting against the limits, and kept only when it is
// printable ASCII of at most maxExplanation octets: it may end up in an
// SMTP reply.

// An SPFResult is the outcome of an SPF check, for the log, the
// Authentication-Results field and DMARC.
type SPFResult struct {
	Result      Result     // none, neutral, pass, fail, softfail, temperror or permerror (§2.6)
	Identity    string     // "mailfrom" or "helo" (§2.3, §2.4)
	Domain      string     // the domain checked, lower case
	Sender      string     // the <sender> of check_host(): local@domain
	IP          netip.Addr // the client
	Mechanism   string     // the term that matched, "" for the default result or an error
	Reason      string     // why, in words
	Explanation string     // for fail, the domain's exp= text (§6.2); "" if none
	Lookups     int        // DNS-querying terms evaluated (§4.6.4)
}

// String renders the result in one log line.
func (r SPFResult) String() string {
	s := fmt.Sprintf("spf=%s %s=%s ip=%s lookups=%d", r.Result, r.Identity, errquote.Quote(r.Domain), r.IP, r.Lookups)
	if r.Reason != "" {
		s += " reason=" + errquote.Quote(r.Reason)
	}
	return s
}

// Limits of §4.6.4 and §6.2.
const (
	maxSPFTerms    = 10 // DNS-querying terms in one evaluation
	maxVoids       = 2  // of which with a void answer
	maxSPFNames    = 10 // MX or PTR names looked up for one term
	maxExplanation = 512
)

// CheckSPF evaluates check_host() (RFC 7208 §4) for a client at ip that
// said helo and gave mailfrom (local@domain, without angle brackets; ""
// for the null reverse-path, in which case postmaster@helo is checked).
func (c *Checker) CheckSPF(ctx context.Context, ip netip.Addr, helo, mailfrom string) SPFResult {
	ip = ip.Unmap() // an IPv4-mapped address is IPv4 (§5)
	r := SPFResult{IP: ip, Identity: "mailfrom"}
	local, domain := mailfrom, ""
	if i := strings.LastIndexByte(mailfrom, '@'); i >= 0 {
		local, domain = mailfrom[:i], mailfrom[i+1:]
	}
	if mailfrom == "" {
		r.Identity, domain = "helo", helo
	}
	if local == "" {
		local = "postmaster" // §4.3
	}
	r.Domain, r.Sender = normName(domain), local+"@"+domain
	if !spfDomain(domain) {
		r.Result, r.Reason = None, "not a domain name that can have SPF (RFC 7208 §4.3)"
		return r
	}
	if !ip.IsValid() {
		r.Result, r.Reason = None, "no client address"
		return r
	}
	ctx, cancel := context.WithTimeout(ctx, c.spfTimeout())
	defer cancel()
	s := &spfCheck{ctx: ctx, r: c.Resolver, ip: ip}
	s.env = macroEnv{
		sender: r.Sender, local: local, senderDomain: domain,
		ip: ip, helo: helo, receiver: c.receiver(), now: c.now().Unix(),
		ptr: s.ptrName,
	}
	o := s.checkHost(strings.TrimSuffix(domain, "."), true)
	r.Result, r.Mechanism, r.Reason, r.Explanation, r.Lookups = o.result, o.mech, o.reason, o.exp, s.terms
	if r.Result == TempError && ctx.Err() != nil {
		r.Reason = "took longer than " + c.spfTimeout().String() + " (RFC 7208 §4.6.4)"
	}
	return r
}

func (c *Checker) spfTimeout() time.Duration {
	if c.SPFTimeout > 0 {
		return c.SPFTimeout
	}
	return 20 * time.Second
}

// receiver is the r macro: our name, or "unknown" (§7.3).
func (c *Checker) receiver() string {
	if c.Hostname == "" {
		return "unknown"
	}
	return c.Hostname
}

// spfDomain reports whether d is a multi-label domain name whose labels
// are letters, digits, hyphens and underscores (§4.3): anything else, a
// domain literal or a bare word, has no SPF record and gets none.
func spfDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if !validName(d) || !strings.Contains(d, ".") {
		return false
	}
	for i := 0; i < len(d); i++ {
		if c := d[i]; !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// An spfError ends an evaluation with temperror or permerror.
type spfError struct {
	result Result
	reason string
}

func (e *spfError) Error() string { return string(e.result) + ": " + e.reason }

// An spfOutcome is the result of one check_host().
type spfOutcome struct {
	result Result
	mech   string
	reason string
	exp    string
}

func outcome(err error) spfOutcome {
	e := err.(*spfError)
	return spfOutcome{result: e.result, reason: e.reason}
}

// An spfCheck is one evaluation: the client, the counts of §4.6.4, and
// the validated names of the client (§5.5), found once.
type spfCheck struct {
	ctx   context.Context
	r     Resolver
	ip    netip.Addr
	env   macroEnv
	terms int
	voids int

	ptrDone  bool
	ptrNames []string // validated, at most maxSPFNames asked
	ptrVoid  bool
	ptrErr   error
}

// checkHost is check_host() for domain (§4). top says whether the result
// is the one given out, which may carry an explanation (§6.2): it is not
// under an include.
func (s *spfCheck) checkHost(domain string, top bool) spfOutcome {
	rec, err := s.record(domain)
	if err != nil {
		return outcome(err)
	}
	if rec == nil {
		return spfOutcome{result: None, reason: "no SPF record at " + errquote.Quote(domain)}
	}
	env := s.env
	env.domain = domain
	for _, t := range rec.terms {
		match, err := s.match(&env, t)
		if err != nil {
			o := outcome(err)
			o.mech = t.text
			return o
		}
		if !match {
			continue
		}
		o := spfOutcome{result: qualifier(t.qual), mech: t.text, reason: "matched " + t.text + " of " + domain}
		if o.result == Fail && top && rec.exp != nil {
			o.exp = s.explain(&env, rec.exp)
		}
		return o
	}
	if rec.redirect != nil {
		return s.redirect(&env, rec.redirect, top)
	}
	return spfOutcome{result: Neutral, reason: "no mechanism of " + domain + " matched (RFC 7208 §4.7)"}
}

// record finds and parses domain's SPF record (§4.4, §4.5): nil when
// there is none.
func (s *spfCheck) record(domain string) (*spfRecord, error) {
	txts, _, err := s.r.LookupTXT(s.ctx, domain)
	if err != nil {
		return nil, &spfError{TempError, err.Error()}
	}
	var found []string
	for _, t := range txts {
		if spfVersion(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return parseSPF(found[0])
	}
	return nil, errSyntax("%d SPF records at %s (RFC 7208 §4.5)", len(found), errquote.Quote(domain))
}

// qualifier maps a qualifier to its result (§4.6.2).
func qualifier(q byte) Result {
	switch q {
	case '-':
		return Fail
	case '~':
		return SoftFail
	case '?':
		return Neutral
	}
	return Pass
}

// match evaluates one mechanism (§5).
func (s *spfCheck) match(env *macroEnv, t spfTerm) (bool, error) {
	switch t.mech {
	case "all":
		return true, nil
	case "ip4", "ip6":
		return t.prefix.Contains(s.ip), nil
	}
	if err := s.count(); err != nil {
		return false, err
	}
	name := env.domain
	if t.domain != nil {
		name = env.expandDomain(t.domain)
	}
	switch t.mech {
	case "include":
		return s.include(name)
	case "a":
		return s.matchA(name, t)
	case "mx":
		return s.matchMX(name, t)
	case "ptr":
		return s.matchPTR(name)
	}
	return s.exists(name)
}

// count counts a term that asks DNS (§4.6.4).
func (s *spfCheck) count() error {
	s.terms++
	if s.terms > maxSPFTerms {
		return &spfError{PermError, fmt.Sprintf("more than %d DNS-querying terms (RFC 7208 §4.6.4)", maxSPFTerms)}
	}
	return nil
}

// void counts a lookup that found nothing (§4.6.4).
func (s *spfCheck) void(n int) error {
	if n > 0 {
		return nil
	}
	s.voids++
	if s.voids > maxVoids {
		return &spfError{PermError, fmt.Sprintf("more than %d void lookups (RFC 7208 §4.6.4)", maxVoids)}
	}
	return nil
}

// include: the target's pass matches, its fail, softfail and neutral do
// not, its errors are ours, and none is a permerror (§5.2).
func (s *spfCheck) include(name string) (bool, error) {
	if !validName(name) {
		return false, &spfError{PermError, "include of a malformed name " + errquote.Quote(name)}
	}
	o := s.checkHost(name, false)
	switch o.result {
	case Pass:
		return true, nil
	case Fail, SoftFail, Neutral:
		return false, nil
	case TempError:
		return false, &spfError{TempError, o.reason}
	case None:
		return false, &spfError{PermError, "include of " + errquote.Quote(name) + ", which has no SPF record (RFC 7208 §5.2)"}
	}
	return false, &spfError{PermError, o.reason}
}

// redirect evaluates the target's record in place of ours; a target with
// none is a permerror (§6.1).
func (s *spfCheck) redirect(env *macroEnv, spec []macroPart, top bool) spfOutcome {
	if err := s.count(); err != nil {
		return outcome(err)
	}
	name := env.expandDomain(spec)
	if !validName(name) {
		return spfOutcome{result: PermError, reason: "redirect to a malformed name " + errquote.Quote(name)}
	}
	o := s.checkHost(name, top)
	if o.result == None {
		return spfOutcome{result: PermError, reason: "redirect to " + errquote.Quote(name) + ", which has no SPF record (RFC 7208 §6.1)"}
	}
	return o
}

// family is the network of the client's address, for LookupIP.
func (s *spfCheck) family() string {
	if s.ip.Is4() {
		return "ip4"
	}
	return "ip6"
}

// addrs looks up name's addresses of the client's family. A name that
// cannot be asked has none.
func (s *spfCheck) addrs(name string) ([]netip.Addr, error) {
	if !validName(name) {
		return nil, nil
	}
	addrs, _, err := s.r.LookupIP(s.ctx, s.family(), name)
	if err != nil {
		return nil, &spfError{TempError, err.Error()}
	}
	return addrs, nil
}

// inCIDR reports whether the client is within the prefix length of the
// term around one of addrs (§5.3, §5.6).
func (s *spfCheck) inCIDR(addrs []netip.Addr, t spfTerm) bool {
	bits := t.cidr4
	if s.ip.Is6() {
		bits = t.cidr6
	}
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() != s.ip.Is4() {
			continue
		}
		if p, err := a.Prefix(bits); err == nil && p.Contains(s.ip) {
			return true
		}
	}
	return false
}

// matchA is the a mechanism (§5.3).
func (s *spfCheck) matchA(name string, t spfTerm) (bool, error) {
	addrs, err := s.addrs(name)
	if err != nil {
		return false, err
	}
	if err := s.void(len(addrs)); err != nil {
		return false, err
	}
	return s.inCIDR(addrs, t), nil
}

// matchMX is the mx mechanism (§5.4): no MX record is no match (no
// implicit MX), more than 10 is a permerror (§4.6.4).
func (s *spfCheck) matchMX(name string, t spfTerm) (bool, error) {
	if !validName(name) {
		return false, s.void(0)
	}
	mxs, _, err := s.r.LookupMX(s.ctx, name)
	if err != nil {
		return false, &spfError{TempError, err.Error()}
	}
	if err := s.void(len(mxs)); err != nil {
		return false, err
	}
	if len(mxs) > maxSPFNames {
		return false, &spfError{PermError, fmt.Sprintf("%s has more than %d MX records (RFC 7208 §4.6.4)", errquote.Quote(name), maxSPFNames)}
	}
	mxs = slices.Clone(mxs)
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	for _, mx := range mxs {
		if mx.Host == "." {
			continue
		}
		addrs, err := s.addrs(mx.Host)
		if err != nil {
			return false, err
		}
		if s.inCIDR(addrs, t) {
			return true, nil
		}
	}
	return false, nil
}

// matchPTR is the ptr mechanism (§5.5): a validated name of the client
// that is the target or ends in it. A failed PTR lookup is no match.
func (s *spfCheck) matchPTR(target string) (bool, error) {
	names, void, err := s.validated()
	if err != nil {
		return false, nil
	}
	if void {
		if err := s.void(0); err != nil {
			return false, err
		}
	}
	target = normName(target)
	for _, n := range names {
		if n == target || strings.HasSuffix(n, "."+target) {
			return true, nil
		}
	}
	return false, nil
}

// exists matches when name has an A record, whatever the client's
// family (§5.7).
func (s *spfCheck) exists(name string) (bool, error) {
	if !validName(name) {
		return false, s.void(0)
	}
	addrs, _, err := s.r.LookupIP(s.ctx, "ip4", name)
	if err != nil {
		return false, &spfError{TempError, err.Error()}
	}
	if err := s.void(len(addrs)); err != nil {
		return false, err
	}
	return len(addrs) > 0, nil
}

// validated returns the client's validated names (§5.5): of the first 10
// names its PTR records give, those whose addresses include it. A name
// whose address lookup fails is skipped.
func (s *spfCheck) validated() (names []string, void bool, err error) {
	if s.ptrDone {
		return s.ptrNames, s.ptrVoid, s.ptrErr
	}
	s.ptrDone = true
	ptrs, _, err := s.r.LookupPTR(s.ctx, s.ip)
	if err != nil {
		s.ptrErr = err
		return nil, false, err
	}
	s.ptrVoid = len(ptrs) == 0
	if len(ptrs) > maxSPFNames {
		ptrs = ptrs[:maxSPFNames]
	}
	for _, p := range ptrs {
		p = normName(p)
		addrs, err := s.addrs(p)
		if err != nil {
			continue
		}
		if slices.Contains(addrs, s.ip) {
			s.ptrNames = append(s.ptrNames, p)
		}
	}
	return s.ptrNames, s.ptrVoid, nil
}

// ptrName is the p macro (§7.3): the validated name that is domain, else
// one under domain, else any, else "unknown".
func (s *spfCheck) ptrName(domain string) string {
	names, _, err := s.validated()
	if err != nil || len(names) == 0 {
		return "unknown"
	}
	domain = normName(domain)
	if slices.Contains(names, domain) {
		return domain
	}
	for _, n := range names {
		if strings.HasSuffix(n, "."+domain) {
			return n
		}
	}
	return names[0]
}

// explain returns the explanation of exp= (§6.2), or "" when there is
// none to give: the name is malformed, DNS fails, there is not exactly
// one TXT record, or its text is not printable ASCII or not a valid
// explain-string.
func (s *spfCheck) explain(env *macroEnv, spec []macroPart) string {
	name := env.expandDomain(spec)
	if !validName(name) {
		return ""
	}
	txts, _, err := s.r.LookupTXT(s.ctx, name)
	if err != nil || len(txts) != 1 || !printable(txts[0]) {
		return ""
	}
	parts, err := parseMacroString(txts[0], true)
	if err != nil {
		return ""
	}
	exp := env.expand(parts)
	if len(exp) > maxExplanation || !printable(exp) {
		return ""
	}
	return exp
}

// printable reports whether s is printable ASCII.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
