package mailauth

import (
	"strings"
)

// Authentication-Results, RFC 8601. The field we add names our host as
// the authserv-id and holds one resinfo per method checked: spf with
// smtp.mailfrom (the domain) or smtp.helo, one dkim per signature with
// header.d, header.s, header.a and header.b (the shortest prefix of b=,
// at least 8 characters, that tells the message's signatures apart, RFC
// 6008 §4), dmarc with header.from. A field that claims our authserv-id
// on a message arriving from outside is a forgery, and is removed before
// ours is added (§5).

// A Verdict gathers what was checked for one message. A nil SPF or DMARC,
// or a nil DKIM, was not checked.
type Verdict struct {
	SPF   *SPFResult
	DKIM  []DKIMResult
	DMARC *DMARCResult
}

// maxReason bounds a reason in the field.
const maxReason = 100

// AuthResults renders the Authentication-Results field for a verdict,
// name and final CRLF included, folded one method a line.
func AuthResults(authservID string, v Verdict) string {
	var res []string
	if v.SPF != nil {
		res = append(res, spfResinfo(*v.SPF))
	}
	for _, d := range v.DKIM {
		res = append(res, dkimResinfo(d, v.DKIM))
	}
	if v.DMARC != nil {
		res = append(res, dmarcResinfo(*v.DMARC))
	}
	if len(res) == 0 {
		res = []string{"none"} // §2.2: no method was applied
	}
	return "Authentication-Results: " + pvalue(authservID) + ";\r\n\t" + strings.Join(res, ";\r\n\t") + "\r\n"
}

func spfResinfo(r SPFResult) string {
	s := "spf=" + string(r.Result) + reason(r.Result, r.Reason)
	if r.Identity == "helo" {
		return s + " smtp.helo=" + pvalue(r.Domain)
	}
	return s + " smtp.mailfrom=" + pvalue(r.Domain)
}

func dkimResinfo(r DKIMResult, all []DKIMResult) string {
	s := "dkim=" + string(r.Result) + reason(r.Result, r.Reason)
	if r.Result == None {
		return s
	}
	if r.Domain != "" {
		s += " header.d=" + pvalue(r.Domain)
	}
	if r.Selector != "" {
		s += " header.s=" + pvalue(r.Selector)
	}
	if r.Algorithm != "" {
		s += " header.a=" + pvalue(r.Algorithm)
	}
	if b := uniqueB(r.Signature, all); b != "" {
		s += " header.b=" + pvalue(b)
	}
	return s
}

func dmarcResinfo(r DMARCResult) string {
	s := "dmarc=" + string(r.Result)
	if r.Policy != "" {
		s += " (p=" + string(r.Policy) + " dis=" + string(r.Disposition) + ")"
	}
	s += reason(r.Result, r.Reason)
	if r.From != "" {
		s += " header.from=" + pvalue(r.From)
	}
	return s
}

// reason is the reason property of a result that did not pass (§2.2).
func reason(r Result, why string) string {
	if r == Pass || why == "" {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(why) && b.Len() < maxReason; i++ {
		if c := why[i]; c >= ' ' && c <= '~' {
			b.WriteByte(c)
		}
	}
	return " reason=" + quoted(b.String())
}

// uniqueB returns the shortest prefix of b, of at least 8 characters, that
// no other signature of the message starts with (RFC 6008 §4).
func uniqueB(b string, all []DKIMResult) string {
	n := min(8, len(b))
	for _, o := range all {
		if o.Signature == b {
			continue
		}
		for n < len(b) && strings.HasPrefix(o.Signature, b[:n]) {
			n++
		}
	}
	return b[:n]
}

// pvalue writes a property value: as it is when it is a token or a
// domain name, else as a quoted-string (§2.2, RFC 2045 §5.1).
func pvalue(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return quoted(s)
		}
	}
	return s
}

// quoted writes s as a quoted-string, with '"' and '\' escaped and
// anything but printable ASCII left out.
func quoted(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= ' ' && c <= '~':
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// StripAuthResults returns header without the Authentication-Results
// fields whose authserv-id is authservID, compared without regard to
// case or a final dot, however folded and commented (RFC 8601 §5). The
// rest of header is kept byte for byte.
func StripAuthResults(header []byte, authservID string) []byte {
	var out []byte
	n := 0
	for _, f := range splitHeader(header) {
		n += len(f.raw)
		if f.is("Authentication-Results") && sameID(authservIDOf(f.value()), authservID) {
			continue
		}
		out = append(out, f.raw...)
	}
	// What follows the fields (the empty line, a body) stays.
	return append(out, header[n:]...)
}

func sameID(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// authservIDOf returns the authserv-id at the start of an
// Authentication-Results value: a token or a quoted-string after any
// white space and comments (§2.2, RFC 5322 §3.2.2).
func authservIDOf(v string) string {
	v = skipCFWS(v)
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch v[i] {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(v[i])
			}
		}
		return "" // no closing quote
	}
	end := strings.IndexAny(v, " \t\r\n;()\"")
	if end < 0 {
		end = len(v)
	}
	return v[:end]
}

// skipCFWS skips white space and comments, which nest and may hold
// quoted-pairs (RFC 5322 §3.2.2).
func skipCFWS(v string) string {
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '\\' && depth > 0:
			i++
		case depth > 0 || c == ' ' || c == '\t' || c == '\r' || c == '\n':
		default:
			return v[i:]
		}
	}
	return ""
}
