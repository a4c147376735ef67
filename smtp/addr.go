package smtp

import (
	"cmp"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits of RFC 5321 §4.5.3.1: local part 64 octets, domain 255, path 256
// with its angle brackets.
const (
	maxLocal  = 64
	maxDomain = 255
	maxPath   = 256 - 2
)

// checkPath checks an envelope address before it goes into MAIL or RCPT:
// local@domain within the limits, or the empty sender, or "postmaster" as
// a recipient (RFC 5321 §4.1.1.3). Control characters, angle brackets and
// spaces outside a quoted local part would end the path early, or start a
// second command: a CRLF inside an address is how commands are injected.
func checkPath(a string, sender bool) error {
	bad := func(why string) error { return fmt.Errorf("invalid address %q: %s", clip(a), why) }
	switch {
	case a == "" && sender:
		return nil
	case a == "":
		return bad("empty")
	case len(a) > maxPath:
		return bad("too long")
	case !utf8.ValidString(a):
		return bad("not UTF-8")
	case !sender && strings.EqualFold(a, "postmaster"):
		return nil
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return bad("not local@domain")
	}
	local, domain := a[:at], a[at+1:]
	if len(local) > maxLocal || len(domain) > maxDomain {
		return bad("too long")
	}
	quoted := len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"'
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c < ' ' || c == 0x7f || c == '<' || c == '>':
			return bad("forbidden character")
		case c == ' ' && (i >= at || !quoted):
			return bad("space")
		}
	}
	return nil
}

// bangToAt turns a upas bang path into an RFC 5322 address (upas's
// bangtoat): the leading elements that contain a dot are domains, the last
// of them the address's domain and the ones before it a source route.
//
//	example.com!bob      bob@example.com
//	a.com!b.com!bob      @a.com:bob@b.com
//	a.com!host!bob       host!bob@a.com
//	host!bob             host!bob
func bangToAt(a string) string {
	f := strings.Split(a, "!")
	if len(f) == 1 {
		return a
	}
	d := 0
	for d < len(f)-1 && strings.Contains(f[d], ".") {
		d++
	}
	if d == 0 {
		return a
	}
	var b strings.Builder
	if d > 1 {
		for i, dom := range f[:d-1] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("@" + dom)
		}
		b.WriteByte(':')
	}
	b.WriteString(strings.Join(f[d:], "!"))
	b.WriteString("@" + f[d-1])
	return b.String()
}

// An Addresser converts the addresses of the smtp command's envelope and
// header as upas does: bang paths become user@domain, a name without a dot
// in a domain position gets Domain appended, a bare user name gets a
// domain.
type Addresser struct {
	HostDomain string // the domain of bare names (upas's hostdomain: -h, qualified)
	Domain     string // ".example.com": appended to unqualified system names; "" for none
}

// Convert converts a: "/dev/null" and "" stay "" (the null sender);
// "host!bob" with Domain ".example.com" is "bob@host.example.com"; "bob" is
// "bob@" + def, or "bob@" + HostDomain when def is "". Quoted and
// source-routed addresses are left as they are but for their domain.
func (ad Addresser) Convert(a, def string) string {
	if a == "" || a == "/dev/null" {
		return ""
	}
	if strings.HasPrefix(a, "@") {
		return a
	}
	if !strings.Contains(a, "@") && strings.Contains(a, "!") && !strings.HasPrefix(a, `"`) {
		if ad.Domain != "" {
			// Qualify the system names of the path before reading it.
			f := strings.Split(a, "!")
			for i := range f[:len(f)-1] {
				f[i] = ad.qualify(f[i])
			}
			a = strings.Join(f, "!")
		}
		if a = bangToAt(a); strings.HasPrefix(a, "@") {
			return a
		}
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a + "@" + cmp.Or(def, ad.HostDomain)
	}
	return a[:at+1] + ad.qualify(a[at+1:])
}

// qualify appends Domain to a system name without a dot; address literals
// and qualified names stay as they are.
func (ad Addresser) qualify(host string) string {
	if ad.Domain == "" || host == "" || strings.Contains(host, ".") || strings.HasPrefix(host, "[") {
		return host
	}
	return host + "." + strings.TrimPrefix(ad.Domain, ".")
}

// Domainify returns name qualified by domain: name itself if it has a dot
// or there is no domain, else name.domain ("kremvax" and ".example.com"
// give "kremvax.example.com"). upas appended only the part of domain after
// its first dot, so that "example.com" gave "kremvax.com"; we do not.
func Domainify(name, domain string) string {
	domain = strings.TrimPrefix(domain, ".")
	if domain == "" || strings.Contains(name, ".") {
		return name
	}
	return name + "." + domain
}

// A span is a part of a string, [s, e).
type span struct{ s, e int }

// rewriteAddrList returns the value of an address field (RFC 5322 §3.4)
// with each address passed through conv. Display names, comments, groups
// and folding stay as they are; an address that is not one simple token
// (a display name without angle brackets, a comment inside it) is left
// alone.
func rewriteAddrList(v string, conv func(string) string) string {
	var b strings.Builder
	last := 0
	for _, sp := range addrSpans(v) {
		b.WriteString(v[last:sp.s])
		b.WriteString(conv(v[sp.s:sp.e]))
		last = sp.e
	}
	b.WriteString(v[last:])
	return b.String()
}

// A lexer follows quoted strings and comments (RFC 5322 §3.2.4, §3.2.2)
// through an address list read byte by byte.
type lexer struct {
	depth int // comment nesting
	quote bool
}

// Kinds of byte, for lexer.next.
const (
	plain = iota
	quoted
	comment
)

// next says what v[i] is: plain, part of a quoted string (its quotes
// included) or of a comment (its parentheses included). It returns the
// index of the last byte it took: past the escaped byte of a quoted pair.
func (l *lexer) next(v string, i int) (int, int) {
	c := v[i]
	switch {
	case l.quote || l.depth > 0:
		kind := comment
		if l.quote {
			kind = quoted
		}
		switch {
		case c == '\\' && i+1 < len(v):
			return i + 1, kind
		case l.quote && c == '"':
			l.quote = false
		case !l.quote && c == '(':
			l.depth++
		case !l.quote && c == ')':
			l.depth--
		}
		return i, kind
	case c == '"':
		l.quote = true
		return i, quoted
	case c == '(':
		l.depth = 1
		return i, comment
	}
	return i, plain
}

// addrSpans finds the addresses of an address list: the inside of each
// <...>, else the whole of each element between commas, trimmed of
// spaces and comments. A colon outside brackets ends a group's name.
func addrSpans(v string) []span {
	var spans []span
	var lx lexer
	lit := false  // in a domain literal
	angleAt := -1 // just after the open '<', when inside one
	elem, sawAngle := 0, false
	flush := func(end int) {
		if !sawAngle {
			if sp, ok := bareSpan(v, elem, end); ok {
				spans = append(spans, sp)
			}
		}
		sawAngle = false
	}
	for i := 0; i < len(v); i++ {
		var kind int
		if i, kind = lx.next(v, i); kind != plain {
			continue
		}
		c := v[i]
		switch {
		case lit:
			lit = c != ']'
		case c == '[':
			lit = true
		case angleAt >= 0:
			if c == '>' {
				if sp, ok := trimSpan(v, angleAt, i); ok {
					spans = append(spans, sp)
				}
				angleAt = -1
			}
		case c == '<':
			angleAt, sawAngle = i+1, true
		case c == ',' || c == ';':
			flush(i)
			elem = i + 1
		case c == ':':
			elem, sawAngle = i+1, false
		}
	}
	if angleAt < 0 {
		flush(len(v))
	}
	return spans
}

// bareSpan returns the address of an element without angle brackets: the
// text between leading and trailing spaces and comments, if it is one
// simple token.
func bareSpan(v string, s, e int) (span, bool) {
	first, last := -1, -1
	var lx lexer
	for i := s; i < e; i++ {
		start := i
		var kind int
		i, kind = lx.next(v, i)
		if kind == comment || kind == plain && isSpace(v[i]) {
			continue
		}
		if first < 0 {
			first = start
		}
		last = min(i+1, e)
	}
	if first < 0 {
		return span{}, false
	}
	return trimSpan(v, first, last)
}

// trimSpan trims spaces off [s, e) and accepts it if what is left is one
// simple token: no spaces or comments outside quotes, not empty.
func trimSpan(v string, s, e int) (span, bool) {
	for s < e && isSpace(v[s]) {
		s++
	}
	for e > s && isSpace(v[e-1]) {
		e--
	}
	quote := false
	for i := s; i < e; i++ {
		c := v[i]
		switch {
		case quote && c == '\\':
			i++
		case c == '"':
			quote = !quote
		case !quote && (isSpace(c) || c == '(' || c == ')' || c == '<' || c == '>' || c < ' '):
			return span{}, false
		}
	}
	return span{s, e}, s < e && !quote
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
