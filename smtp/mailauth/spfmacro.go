package mailauth

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// SPF macros (RFC 7208 §7). A macro-string is parsed once, with the
// record, into literal text and macros; it is expanded when a term that
// holds it is evaluated.

// A macroPart is literal text, or one macro when letter is set.
type macroPart struct {
	lit     string
	letter  byte   // lower case: s l o d i p v h, and c r t in explanations
	upper   bool   // URL-escape the value (§7.3)
	digits  int    // keep this many right-hand parts; 0 means all
	reverse bool   // reverse the parts first
	delims  string // split on these; "" means "."
}

// parseMacroString parses a macro-string (§7.1), or an explain-string when
// explain is set: that one may hold spaces and the macros c, r and t.
func parseMacroString(s string, explain bool) ([]macroPart, error) {
	var parts []macroPart
	lit := 0 // start of the literal text not yet added
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if c < 0x21 && !(explain && c == ' ') || c > 0x7e {
				return nil, fmt.Errorf("character %#02x not allowed (RFC 7208 §7.1)", c)
			}
			continue
		}
		if i+1 == len(s) {
			return nil, errors.New("'%' at the end (RFC 7208 §7.1)")
		}
		var text string
		switch s[i+1] {
		case '%':
			text = "%"
		case '_':
			text = " "
		case '-':
			text = "%20"
		case '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return nil, errors.New("'%{' without '}' (RFC 7208 §7.1)")
			}
			m, err := parseMacro(s[i+2:i+end], explain)
			if err != nil {
				return nil, err
			}
			parts = append(parts, macroPart{lit: s[lit:i]}, m)
			i += end
			lit = i + 1
			continue
		default:
			return nil, fmt.Errorf("'%%' before %q (RFC 7208 §7.1)", s[i+1])
		}
		parts = append(parts, macroPart{lit: s[lit:i] + text})
		i++
		lit = i + 1
	}
	parts = append(parts, macroPart{lit: s[lit:]})
	return compact(parts), nil
}

// compact joins adjacent literals and drops empty ones.
func compact(parts []macroPart) []macroPart {
	var out []macroPart
	for _, p := range parts {
		switch {
		case p.letter == 0 && p.lit == "":
		case p.letter == 0 && len(out) > 0 && out[len(out)-1].letter == 0:
			out[len(out)-1].lit += p.lit
		default:
			out = append(out, p)
		}
	}
	return out
}

// parseMacro parses what is between "%{" and "}": macro-letter
// transformers *delimiter (§7.1).
func parseMacro(s string, explain bool) (macroPart, error) {
	bad := fmt.Errorf("bad macro %%{%s} (RFC 7208 §7.1)", s)
	if s == "" {
		return macroPart{}, bad
	}
	m := macroPart{letter: s[0] | 0x20, upper: s[0] >= 'A' && s[0] <= 'Z'}
	letters := "slodipvh"
	if explain {
		letters += "crt"
	}
	if !isAlpha(s[0]) || strings.IndexByte(letters, m.letter) < 0 {
		return m, bad
	}
	i := 1
	for ; i < len(s) && isDigit(s[i]); i++ {
		// The DIGIT transformer is nonzero (§7.3); more parts than a
		// name has labels keeps them all.
		m.digits = min(m.digits*10+int(s[i]-'0'), 1000)
	}
	if i > 1 && m.digits == 0 {
		return m, bad
	}
	if i < len(s) && s[i]|0x20 == 'r' {
		m.reverse = true
		i++
	}
	m.delims = s[i:]
	for ; i < len(s); i++ {
		if strings.IndexByte(".-+,/_=", s[i]) < 0 {
			return m, bad
		}
	}
	return m, nil
}

// parseDomainSpec parses a domain-spec: a macro-string that ends in a
// macro or in "." and a toplabel, a final "." allowed (§7.1, §12).
func parseDomainSpec(s string) ([]macroPart, error) {
	if s == "" {
		return nil, errors.New("empty domain")
	}
	parts, err := parseMacroString(s, false)
	if err != nil {
		return nil, err
	}
	last := parts[len(parts)-1]
	if last.letter != 0 {
		return parts, nil
	}
	lit := strings.TrimSuffix(last.lit, ".")
	if lit == "" && len(parts) > 1 {
		return parts, nil // "%{d}."
	}
	dot := strings.LastIndexByte(lit, '.')
	if dot < 0 || !topLabel(lit[dot+1:]) {
		return nil, fmt.Errorf("%q does not end in a top-level label (RFC 7208 §7.1)", s)
	}
	return parts, nil
}

// topLabel reports whether s is a toplabel (§7.1): letters, digits and
// inner hyphens, and not all digits unless it has a hyphen.
func topLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	alpha, hyphen := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isAlpha(c):
			alpha = true
		case c == '-':
			hyphen = true
		case !isDigit(c):
			return false
		}
	}
	return alpha || hyphen
}

// A macroEnv holds the values the macro letters expand to (§7.3).
type macroEnv struct {
	sender, local, senderDomain string // s, l, o
	domain                      string // d
	ip                          netip.Addr
	helo                        string // h
	receiver                    string // r
	now                         int64  // t
	ptr                         func(domain string) string
}

// value returns the value of a macro letter.
func (e *macroEnv) value(letter byte) string {
	switch letter {
	case 's':
		return e.sender
	case 'l':
		return e.local
	case 'o':
		return e.senderDomain
	case 'd':
		return e.domain
	case 'i':
		return dotted(e.ip)
	case 'p':
		if e.ptr == nil {
			return "unknown"
		}
		return e.ptr(e.domain)
	case 'v':
		if e.ip.Is4() {
			return "in-addr"
		}
		return "ip6"
	case 'h':
		return e.helo
	case 'c':
		return e.ip.String()
	case 'r':
		return e.receiver
	case 't':
		return fmt.Sprint(e.now)
	}
	return ""
}

// dotted writes ip for the i macro: dotted quad, or for IPv6 the 32
// nibbles separated by dots (§7.3). The nibbles are in upper case, as the
// openspf suite wants (v-macro-ip6) and DNS does not mind.
func dotted(ip netip.Addr) string {
	if ip.Is4() {
		return ip.String()
	}
	var b strings.Builder
	for i, c := range ip.As16() {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte('.')
		b.WriteByte("0123456789ABCDEF"[c&15])
	}
	return b.String()
}

// expand expands parts with the values of env.
func (e *macroEnv) expand(parts []macroPart) string {
	var b strings.Builder
	for _, p := range parts {
		if p.letter == 0 {
			b.WriteString(p.lit)
			continue
		}
		b.WriteString(p.transform(e.value(p.letter)))
	}
	return b.String()
}

// transform applies the transformers and the URL escape (§7.3).
func (p macroPart) transform(v string) string {
	if p.digits > 0 || p.reverse || p.delims != "" {
		delims := p.delims
		if delims == "" {
			delims = "."
		}
		f := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
		if p.reverse {
			for i, j := 0, len(f)-1; i < j; i, j = i+1, j-1 {
				f[i], f[j] = f[j], f[i]
			}
		}
		if p.digits > 0 && p.digits < len(f) {
			f = f[len(f)-p.digits:]
		}
		v = strings.Join(f, ".")
	}
	if p.upper {
		v = urlEscape(v)
	}
	return v
}

// urlEscape escapes all but the unreserved characters of RFC 3986 §2.3
// (§7.3).
func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// expandDomain expands a domain-spec into the name to ask: the final dot
// dropped, labels dropped from the left until it is at most 253 octets
// (§7.3).
func (e *macroEnv) expandDomain(parts []macroPart) string {
	name := strings.TrimSuffix(e.expand(parts), ".")
	for len(name) > maxName {
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return name
		}
		name = name[i+1:]
	}
	return name
}
