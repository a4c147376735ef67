package mailauth

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"smtpfs/internal/errquote"
)

// The syntax of an SPF record (RFC 7208 §4.5, §4.6.1, §5, §6, §7.1 and
// the ABNF of §12). The whole record is parsed before it is evaluated, so
// that a syntax error anywhere is a permerror even when a term before it
// would have matched (§4.6).

// A spfRecord is a parsed "v=spf1" record.
type spfRecord struct {
	terms    []spfTerm   // the mechanisms, in order
	redirect []macroPart // the redirect= domain-spec; nil if none (§6.1)
	exp      []macroPart // the exp= domain-spec; nil if none (§6.2)
}

// A spfTerm is one mechanism (§5).
type spfTerm struct {
	text   string      // as written, for the log
	qual   byte        // '+', '-', '~' or '?'
	mech   string      // "all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"
	domain []macroPart // the domain-spec; nil means the current domain
	prefix netip.Prefix
	cidr4  int // for a and mx: the prefix lengths (§5.6)
	cidr6  int
}

// errSyntax makes the permerror of a malformed record.
func errSyntax(format string, args ...any) error {
	return &spfError{result: PermError, reason: fmt.Sprintf(format, args...)}
}

// spfVersion reports whether txt is an SPF record: "v=spf1", in any case,
// then a space or the end (§4.5).
func spfVersion(txt string) bool {
	const v = "v=spf1"
	return len(txt) >= len(v) && strings.EqualFold(txt[:len(v)], v) && (len(txt) == len(v) || txt[len(v)] == ' ')
}

// parseSPF parses a record that spfVersion accepted.
func parseSPF(txt string) (*spfRecord, error) {
	for i := 0; i < len(txt); i++ {
		if txt[i] >= 0x80 {
			return nil, errSyntax("record is not 7-bit ASCII (RFC 7208 §3.1)")
		}
	}
	r := &spfRecord{}
	// Terms are separated by one or more spaces, and spaces may end the
	// record (§4.6.1, §12); no other character separates.
	for _, t := range strings.Split(txt[len("v=spf1"):], " ") {
		if t == "" {
			continue
		}
		if name, value, ok := modifier(t); ok {
			if err := r.addModifier(name, value); err != nil {
				return nil, err
			}
			continue
		}
		term, err := parseMechanism(t)
		if err != nil {
			return nil, err
		}
		r.terms = append(r.terms, term)
	}
	return r, nil
}

// modifier splits a term of the form name=value, with name = ALPHA *(
// ALPHA / DIGIT / "-" / "_" / "." ) (§4.6.1, §12). Anything else is a
// mechanism.
func modifier(t string) (name, value string, ok bool) {
	name, value, ok = strings.Cut(t, "=")
	if !ok || name == "" || !isAlpha(name[0]) {
		return "", "", false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return "", "", false
		}
	}
	return name, value, true
}

// addModifier records redirect= and exp=, each allowed once (§6), and
// checks that an unknown modifier's value is a macro-string (§6, §12).
func (r *spfRecord) addModifier(name, value string) error {
	switch strings.ToLower(name) {
	case "redirect":
		if r.redirect != nil {
			return errSyntax("redirect= twice (RFC 7208 §6)")
		}
		ds, err := parseDomainSpec(value)
		if err != nil {
			return errSyntax("redirect=%s: %v", errquote.Quote(value), err)
		}
		r.redirect = ds
	case "exp":
		if r.exp != nil {
			return errSyntax("exp= twice (RFC 7208 §6)")
		}
		ds, err := parseDomainSpec(value)
		if err != nil {
			return errSyntax("exp=%s: %v", errquote.Quote(value), err)
		}
		r.exp = ds
	default:
		if _, err := parseMacroString(value, false); err != nil {
			return errSyntax("modifier %s: %v", errquote.Quote(name), err)
		}
	}
	return nil
}

// parseMechanism parses [qualifier] name [":" argument] [cidr] (§4.6.1, §5).
func parseMechanism(t string) (spfTerm, error) {
	term := spfTerm{text: t, qual: '+', cidr4: 32, cidr6: 128}
	if strings.IndexByte("+-~?", t[0]) >= 0 {
		term.qual = t[0]
		t = t[1:]
	}
	end := strings.IndexAny(t, ":/")
	if end < 0 {
		end = len(t)
	}
	term.mech = strings.ToLower(t[:end])
	rest := t[end:]
	var err error
	switch term.mech {
	case "all":
		if rest != "" {
			err = errors.New("all takes no argument")
		}
	case "include", "exists":
		term.domain, err = requiredDomain(rest)
	case "a", "mx":
		err = term.parseTarget(rest)
	case "ptr":
		if rest != "" {
			term.domain, err = requiredDomain(rest)
		}
	case "ip4", "ip6":
		term.prefix, err = parseNetwork(term.mech, rest)
	default:
		err = errors.New("unknown mechanism")
	}
	if err != nil {
		return term, errSyntax("%s: %v", errquote.Quote(term.text), err)
	}
	return term, nil
}

// requiredDomain parses ":" domain-spec.
func requiredDomain(rest string) ([]macroPart, error) {
	if !strings.HasPrefix(rest, ":") {
		return nil, errors.New("domain missing")
	}
	return parseDomainSpec(rest[1:])
}

// parseTarget parses the [":" domain-spec] [dual-cidr-length] of a and
// mx (§5.3, §5.4). The prefix lengths are taken from the end:
// "a:foo:bar/baz.example.com" has none.
func (term *spfTerm) parseTarget(rest string) error {
	spec, c4, c6, err := splitCIDR(rest)
	if err != nil {
		return err
	}
	term.cidr4, term.cidr6 = c4, c6
	switch {
	case spec == "":
		return nil
	case spec[0] != ':':
		return errors.New("malformed")
	}
	term.domain, err = parseDomainSpec(spec[1:])
	return err
}

// splitCIDR takes a dual-cidr-length = [ "/" ip4 ] [ "//" ip6 ] off the end
// of s.
func splitCIDR(s string) (rest string, c4, c6 int, err error) {
	c4, c6 = 32, 128
	if i := strings.LastIndex(s, "//"); i >= 0 && isDigits(s[i+2:]) {
		if c6, err = cidrLen(s[i+2:], 128); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 && isDigits(s[i+1:]) {
		if c4, err = cidrLen(s[i+1:], 32); err != nil {
			return "", 0, 0, err
		}
		s = s[:i]
	}
	return s, c4, c6, nil
}

// cidrLen parses a prefix length: no leading zero, at most max (§5.6).
func cidrLen(s string, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n > max || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("bad prefix length /%s", s)
	}
	return n, nil
}

// parseNetwork parses ":" network [ "/" length ] of ip4 and ip6 (§5.6).
func parseNetwork(mech, rest string) (netip.Prefix, error) {
	if !strings.HasPrefix(rest, ":") {
		return netip.Prefix{}, errors.New("network missing")
	}
	s, bits := rest[1:], ""
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s, bits = s[:i], s[i+1:]
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" || ip.Is4() != (mech == "ip4") {
		return netip.Prefix{}, fmt.Errorf("bad network %s", errquote.Quote(s))
	}
	n := ip.BitLen()
	if bits != "" {
		if n, err = cidrLen(bits, ip.BitLen()); err != nil {
			return netip.Prefix{}, err
		}
	}
	return ip.Prefix(n)
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
