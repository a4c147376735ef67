package mailauth

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"smtpfs/internal/errquote"
)

// DMARC, RFC 7489. The author domain is the domain of the From field
// (§6.6.1); its policy is the record at _dmarc.<domain>, else at
// _dmarc.<organizational domain> (§6.6.3), the organizational domain
// being the public suffix of golang.org/x/net/publicsuffix plus one label
// (§3.2). The message passes when SPF passed for a domain aligned with
// the author domain, or a DKIM signature passed for one (§3.1, relaxed
// or strict as adkim and aspf say); otherwise the policy (sp for a
// subdomain when the record is the organizational domain's) is the
// disposition, softened one step for the messages pct leaves out (§6.3).
//
// A message is expected to have one From field with one address. With
// several addresses, or several From fields (which RFC 5322 §3.6 forbids,
// and which readers show differently), every author domain is checked and
// the strictest disposition among those that fail applies (§6.6.1); at
// most maxAuthors of them are looked up. Without any author domain there
// is nothing to check: permerror, no disposition.

// A Disposition is what DMARC asks the receiver to do with a message
// (RFC 7489 §6.3 p=).
type Disposition string

// The dispositions, from the mildest.
const (
	DispositionNone Disposition = "none"
	Quarantine      Disposition = "quarantine"
	Reject          Disposition = "reject"
)

// A DMARCResult is the DMARC evaluation of a message.
type DMARCResult struct {
	Result      Result      // none, pass, fail, temperror or permerror
	From        string      // the author domain (header.from)
	Policy      Disposition // the policy that applies; "" without a record
	Disposition Disposition // what to do: Policy, softened by pct; none unless fail
	Record      string      // where the record was found (_dmarc.<this>)
	SPFAligned  bool
	DKIMAligned bool
	Reason      string
}

// String renders the result in one log line.
func (r DMARCResult) String() string {
	s := fmt.Sprintf("dmarc=%s from=%s", r.Result, errquote.Quote(r.From))
	if r.Policy != "" {
		s += fmt.Sprintf(" p=%s dis=%s record=%s spf-aligned=%v dkim-aligned=%v", r.Policy, r.Disposition, r.Record, r.SPFAligned, r.DKIMAligned)
	}
	if r.Reason != "" {
		s += " reason=" + errquote.Quote(r.Reason)
	}
	return s
}

// maxAuthors bounds the author domains looked up for one message.
const maxAuthors = 5

// A dmarcRecord is a parsed policy record (§6.3).
type dmarcRecord struct {
	p, sp       Disposition
	adkim, aspf byte // 'r' or 's'
	pct         int
}

// EvalDMARC evaluates DMARC for a message with header (the header block;
// a whole message will do) whose SPF and DKIM results are given.
func (c *Checker) EvalDMARC(ctx context.Context, header []byte, spf SPFResult, dkim []DKIMResult) DMARCResult {
	domains, froms := authorDomains(splitHeader(header))
	if len(domains) == 0 {
		return DMARCResult{Result: PermError, Disposition: DispositionNone,
			Reason: fmt.Sprintf("no author domain in %d From fields (RFC 7489 §6.6.1)", froms)}
	}
	ctx, cancel := context.WithTimeout(ctx, c.dkimTimeout())
	defer cancel()
	var worst *DMARCResult
	for i, d := range domains {
		if i == maxAuthors {
			break
		}
		r := c.evalDomain(ctx, d, spf, dkim)
		if froms > 1 || len(domains) > 1 {
			r.Reason = joinReason(r.Reason, fmt.Sprintf("%d From fields, %d author domains (RFC 7489 §6.6.1)", froms, len(domains)))
		}
		if worst == nil || worse(r, *worst) {
			worst = &r
		}
	}
	return *worst
}

// joinReason joins two reasons with "; ".
func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// worse reports whether a is the result to give rather than b: a
// stricter disposition, then fail, temperror, permerror, none, pass.
func worse(a, b DMARCResult) bool {
	if rank(a.Disposition) != rank(b.Disposition) {
		return rank(a.Disposition) > rank(b.Disposition)
	}
	order := map[Result]int{Fail: 5, TempError: 4, PermError: 3, None: 2, Pass: 1}
	return order[a.Result] > order[b.Result]
}

func rank(d Disposition) int {
	switch d {
	case Reject:
		return 2
	case Quarantine:
		return 1
	}
	return 0
}

// evalDomain evaluates DMARC for one author domain.
func (c *Checker) evalDomain(ctx context.Context, from string, spf SPFResult, dkim []DKIMResult) DMARCResult {
	r := DMARCResult{From: from, Disposition: DispositionNone}
	rec, at, err := c.dmarcRecord(ctx, from)
	switch {
	case err != nil:
		r.Result, r.Reason = TempError, err.Error()
		return r
	case rec == nil:
		r.Result, r.Reason = None, "no DMARC record"
		return r
	}
	r.Record, r.Policy = at, rec.p
	if at != from && rec.sp != "" {
		r.Policy = rec.sp // §6.3 sp: the organizational domain's policy for its subdomains
	}
	r.SPFAligned = spf.Result == Pass && aligned(spf.Domain, from, rec.aspf)
	for _, d := range dkim {
		if d.Result == Pass && aligned(d.Domain, from, rec.adkim) {
			r.DKIMAligned = true
		}
	}
	if r.SPFAligned || r.DKIMAligned {
		r.Result = Pass
		return r
	}
	r.Result, r.Disposition = Fail, r.Policy
	if rec.pct < 100 && c.rand(100) >= rec.pct {
		r.Disposition = soften(r.Policy)
		r.Reason = fmt.Sprintf("not sampled by pct=%d (RFC 7489 §6.3)", rec.pct)
	}
	return r
}

// soften is the next milder disposition (§6.3 pct).
func soften(d Disposition) Disposition {
	if d == Reject {
		return Quarantine
	}
	return DispositionNone
}

// orgDomain returns the organizational domain of d (§3.2).
func orgDomain(d string) string {
	d = normName(d)
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d // d is itself a public suffix, or no name at all
	}
	return org
}

// aligned reports whether an authenticated domain is aligned with the
// author domain: the same (strict), or the same organizational domain
// (relaxed) (§3.1).
func aligned(authenticated, author string, mode byte) bool {
	a, f := normName(authenticated), normName(author)
	if a == "" {
		return false
	}
	if mode == 's' {
		return a == f
	}
	return orgDomain(a) == orgDomain(f)
}

// dmarcRecord finds the policy for the author domain (§6.6.3): the
// record at _dmarc.<from>, else at _dmarc.<organizational domain>. It
// returns the domain the record was found at, or a nil record when there
// is none; the error is a DNS failure.
func (c *Checker) dmarcRecord(ctx context.Context, from string) (*dmarcRecord, string, error) {
	rec, err := c.dmarcAt(ctx, from)
	if rec != nil || err != nil {
		return rec, from, err
	}
	if org := orgDomain(from); org != from {
		rec, err = c.dmarcAt(ctx, org)
		return rec, org, err
	}
	return nil, "", nil
}

// dmarcAt looks up the record at _dmarc.<domain>: exactly one TXT record
// that starts with v=DMARC1, else none (§6.6.3 steps 2 and 3).
func (c *Checker) dmarcAt(ctx context.Context, domain string) (*dmarcRecord, error) {
	name := "_dmarc." + domain
	if !validName(name) {
		return nil, nil
	}
	txts, _, err := c.Resolver.LookupTXT(ctx, name)
	if err != nil {
		return nil, err
	}
	var recs []*dmarcRecord
	for _, t := range txts {
		if rec, ok := parseDMARC(t); ok {
			recs = append(recs, rec)
		}
	}
	if len(recs) != 1 {
		return nil, nil
	}
	return recs[0], nil
}

// parseDMARC parses a DMARC record (§6.3, §6.4). Unknown tags and bad
// values of optional ones are ignored (§6.3); a record without a valid p
// is one with p=none when it has rua, and no record otherwise (§6.6.3
// step 6).
func parseDMARC(txt string) (*dmarcRecord, bool) {
	tags := strings.Split(txt, ";")
	if v, ok := tag(tags[0]); !ok || v[0] != "v" || v[1] != "DMARC1" {
		return nil, false
	}
	rec := &dmarcRecord{adkim: 'r', aspf: 'r', pct: 100}
	rua := false
	for _, t := range tags[1:] {
		kv, ok := tag(t)
		if !ok {
			continue
		}
		switch v := strings.ToLower(kv[1]); kv[0] {
		case "p":
			rec.p = policy(v)
		case "sp":
			rec.sp = policy(v)
		case "adkim", "aspf":
			if v == "r" || v == "s" {
				if kv[0] == "adkim" {
					rec.adkim = v[0]
				} else {
					rec.aspf = v[0]
				}
			}
		case "pct":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 100 {
				rec.pct = n
			}
		case "rua":
			rua = v != ""
		}
	}
	if rec.p == "" {
		if !rua {
			return nil, false
		}
		rec.p = DispositionNone
	}
	return rec, true
}

// tag splits "name = value" (§6.4: white space around the '=').
func tag(t string) ([2]string, bool) {
	name, value, ok := strings.Cut(t, "=")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	return [2]string{name, value}, ok && name != "" && value != ""
}

// policy parses a p or sp value; "" if it is none of the three.
func policy(v string) Disposition {
	switch d := Disposition(v); d {
	case DispositionNone, Quarantine, Reject:
		return d
	}
	return ""
}
