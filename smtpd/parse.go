package smtpd

import (
	"net/netip"
	"strconv"
	"strings"

	"smtpfs/smtp"
)

// Limits of RFC 5321 §4.5.3.1.
const (
	maxCmdLine = 2048 // §4.5.3.1.4 says 512 with CRLF; the slack is for AUTH responses and ESMTP parameters
	maxPath    = 256  // §4.5.3.1.3, with the angle brackets
	maxLocal   = 64   // §4.5.3.1.1
	maxDomain  = 255  // §4.5.3.1.2
	maxVerb    = 16   // no SMTP verb is longer; longer is garbage
)

// Syntax errors, as the replies they become.
var (
	errSyntax     = smtp.Replyf(500, "5.5.1", "illegal command or bad syntax")
	errLineLong   = smtp.Replyf(500, "5.5.2", "line too long")
	errArgs       = smtp.Replyf(501, "5.5.4", "syntax error in parameters or arguments")
	errPathSyntax = smtp.Replyf(501, "5.1.3", "bad address syntax")
	errPathLong   = smtp.Replyf(501, "5.1.3", "path too long")
	errLocalLong  = smtp.Replyf(501, "5.1.3", "local part too long")
	errDomainLong = smtp.Replyf(501, "5.1.3", "domain too long")
	errParam      = smtp.Replyf(555, "5.5.4", "unsupported MAIL or RCPT parameter")
	errPathDash   = smtp.Replyf(501, "5.1.3", "bad address syntax: no part of an address may begin with '-'")
)

// A command is one command line, split into its verb and the rest.
type command struct {
	verb string // upper case
	arg  string // the text after the verb and its spaces, trailing blanks removed
}

// parseCommand splits a command line (without its line end) into verb and
// argument. A line with a control character (other than tab) or a DEL is
// refused whole: such bytes in a command are garbage or an attack (RFC
// 5321 §2.3.8, §4.1.1); so is one with 8-bit bytes unless utf8Command
// takes them (MAIL and RCPT, for SMTPUTF8).
func parseCommand(line []byte) (command, *smtp.Reply) {
	high := false
	for _, c := range line {
		if c < ' ' && c != '\t' || c == 0x7f {
			return command{}, errSyntax
		}
		high = high || c >= 0x80
	}
	s := strings.TrimRight(string(line), " \t")
	verb, arg, _ := strings.Cut(s, " ")
	if verb == "" || len(verb) > maxVerb {
		return command{}, errSyntax
	}
	for i := 0; i < len(verb); i++ {
		if !isAlpha(verb[i]) {
			return command{}, errSyntax
		}
	}
	verb = strings.ToUpper(verb)
	if high && !utf8Command(verb, line) {
		return command{}, errSyntax
	}
	return command{verb: verb, arg: strings.TrimLeft(arg, " \t")}, nil
}

// A mailPath is a reverse-path or forward-path of RFC 5321 §4.1.2, with upas's
// extension that the domain may be missing (a local name). A source route
// is checked for syntax and dropped, as §4.1.1.3 and Appendix C allow.
type mailPath struct {
	Local  string // the local part, unquoted
	Quoted bool   // the local part was a quoted string
	Domain string // lower case, no final dot; "[192.0.2.1]", "[IPv6:...]", "[]" for upas's loopback; "" if none
	Null   bool   // <>
	// UDomain is the domain as written, lower case, when it has U-labels
	// (SMTPUTF8); Domain is then its A-label, for routing (utf8.go).
	UDomain string
}

// shownDomain is the domain as the address shows it: as written.
func (p mailPath) shownDomain() string {
	if p.UDomain != "" {
		return p.UDomain
	}
	return p.Domain
}

// Addr returns the path as local@domain, the local part quoted if it must
// be; "" for the null path; the local part alone when there is no domain.
func (p mailPath) Addr() string {
	if p.Null {
		return ""
	}
	l := quoteLocal(p.Local)
	if p.Domain == "" {
		return l
	}
	return l + "@" + p.shownDomain()
}

// Bang returns upas's form of the path: domain!local, "/dev/null" for <>.
func (p mailPath) Bang() string {
	switch {
	case p.Null:
		return "/dev/null"
	case p.Domain == "":
		return quoteLocal(p.Local)
	}
	return p.shownDomain() + "!" + quoteLocal(p.Local)
}

// quoteLocal returns a local part as RFC 5321 writes it: a dot-string as
// it is, anything else as a quoted string.
func quoteLocal(l string) string {
	if isDotString(l) {
		return l
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}

// A param is one ESMTP parameter of MAIL or RCPT (RFC 5321 §4.1.2
// esmtp-param): KEYWORD or KEYWORD=value.
type param struct {
	key, value string // key upper case
}

// parsePathArg parses the argument of MAIL (prefix "FROM:") or RCPT
// ("TO:"): the prefix in any case, optional blanks (upas allows them,
// many clients send them), a path in angle brackets, then ESMTP parameters
// separated by spaces.
func parsePathArg(arg, prefix string) (mailPath, []param, *smtp.Reply) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return mailPath{}, nil, errArgs
	}
	rest := strings.TrimLeft(arg[len(prefix):], " \t")
	end := pathEnd(rest)
	if end < 0 {
		return mailPath{}, nil, errPathSyntax
	}
	if end > maxPath {
		return mailPath{}, nil, errPathLong
	}
	p, err := parsePath(rest[:end])
	if err != nil {
		return mailPath{}, nil, err
	}
	ps, err := parseParams(rest[end:])
	return p, ps, err
}

// pathEnd returns the length of the <...> at the start of s, skipping
// quoted strings, or -1.
func pathEnd(s string) int {
	if s == "" || s[0] != '<' {
		return -1
	}
	quoted := false
	for i := 1; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && s[i] == '>':
			return i + 1
		}
	}
	return -1
}

func parseParams(s string) ([]param, *smtp.Reply) {
	if s != "" && s[0] != ' ' && s[0] != '\t' {
		return nil, errArgs
	}
	var ps []param
	for _, f := range strings.Fields(s) {
		k, v, hasv := strings.Cut(f, "=")
		if k == "" || hasv && v == "" || len(ps) == 16 {
			return nil, errArgs
		}
		for i := 0; i < len(k); i++ {
			if !isAlpha(k[i]) && !isDigit(k[i]) && k[i] != '-' {
				return nil, errArgs
			}
		}
		ps = append(ps, param{strings.ToUpper(k), v})
	}
	return ps, nil
}

// parsePath parses <...> (RFC 5321 §4.1.2 mailPath, plus <> and upas's
// domainless <local>).
func parsePath(s string) (mailPath, *smtp.Reply) {
	if len(s) > maxPath {
		return mailPath{}, errPathLong
	}
	if len(s) < 2 || s[0] != '<' || s[len(s)-1] != '>' {
		return mailPath{}, errPathSyntax
	}
	s = s[1 : len(s)-1]
	if s == "" {
		return mailPath{Null: true}, nil
	}
	if s[0] == '@' { // A-d-l ":" Mailbox
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return mailPath{}, errPathSyntax
		}
		for _, ad := range strings.Split(s[:i], ",") {
			if len(ad) < 2 || ad[0] != '@' || !validDomain(ad[1:]) {
				return mailPath{}, errPathSyntax
			}
		}
		s = s[i+1:]
	}
	p, err := parseMailbox(s)
	if err == nil && dashed(p.Local) {
		return mailPath{}, errPathDash
	}
	return p, err
}

// dashed reports whether a part of a local part begins with '-': the
// whole, or what follows a '!' (bang path), '%' (percent hack), '@', ':'
// or ',' (a route hidden in quotes), or blanks or quotes. Such an address
// is refused at MAIL and RCPT: handed to a mailer (-m) as an argument, or
// by upas send to the next one, it would be taken for an option
// (<-X/tmp/log!host!user> is sendmail's -X logfile). Domains cannot begin
// with '-' (RFC 1035 §2.3.1, validDomain).
func dashed(local string) bool {
	start := true
	for i := 0; i < len(local); i++ {
		switch c := local[i]; {
		case c == '-' && start:
			return true
		case strings.IndexByte("!%@:, \t\"", c) >= 0:
			start = true
		default:
			start = false
		}
	}
	return false
}

// parseMailbox parses Local-part ["@" (Domain / address-literal)].
func parseMailbox(s string) (mailPath, *smtp.Reply) {
	var p mailPath
	var rest string
	if strings.HasPrefix(s, `"`) {
		local, n, ok := unquote(s)
		if !ok {
			return mailPath{}, errPathSyntax
		}
		p.Local, p.Quoted, rest = local, true, s[n:]
	} else {
		i := strings.IndexByte(s, '@')
		if i < 0 {
			i = len(s)
		}
		p.Local, rest = s[:i], s[i:]
		if !isDotString(p.Local) {
			return mailPath{}, errPathSyntax
		}
	}
	if len(s)-len(rest) > maxLocal {
		return mailPath{}, errLocalLong
	}
	if rest == "" {
		if p.Local == "" {
			return mailPath{}, errPathSyntax
		}
		return p, nil
	}
	if rest[0] != '@' {
		return mailPath{}, errPathSyntax
	}
	if len(rest)-1 > maxDomain {
		return mailPath{}, errDomainLong
	}
	if !isASCII(rest[1:]) {
		a, u, err := parseUDomain(rest[1:])
		p.Domain, p.UDomain = a, u
		return p, err
	}
	d, err := parseDomain(rest[1:])
	if err != nil {
		return mailPath{}, err
	}
	p.Domain = d
	return p, nil
}

// unquote parses the quoted string at the start of s (RFC 5321
// Quoted-string: qtextSMTP and quoted-pairSMTP, printable ASCII, and
// UTF-8 in qtextSMTP, RFC 6531 §3.3, which parseCommand let through only
// well-formed) and returns its content and length.
func unquote(s string) (string, int, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1, true
		case c == '\\':
			if i+1 == len(s) || s[i+1] < ' ' || s[i+1] > '~' {
				return "", 0, false
			}
			i++
			b.WriteByte(s[i])
		case c < ' ' || c == 0x7f:
			return "", 0, false
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

// parseDomain parses a Domain (one final dot allowed and dropped) or an
// address literal, and returns it in lower case.
func parseDomain(s string) (string, *smtp.Reply) {
	if len(s) > maxDomain {
		return "", errDomainLong
	}
	if strings.HasPrefix(s, "[") {
		a, ok := parseLiteral(s)
		if !ok {
			return "", errPathSyntax
		}
		return smtp.FormatLiteral(a), nil
	}
	s = strings.TrimSuffix(s, ".")
	if !validDomain(s) {
		return "", errPathSyntax
	}
	return strings.ToLower(s), nil
}

// parseLiteral parses an address literal, [a.b.c.d] or [IPv6:...], or
// upas's empty [] (returned as the zero Addr, ok). An IPv6 zone
// (fe80::1%eth0) is refused: RFC 5321 §4.1.3 has none, and it names an
// interface of the sender's, nothing another host could reach.
func parseLiteral(s string) (addr netip.Addr, ok bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return netip.Addr{}, false
	}
	in := s[1 : len(s)-1]
	if in == "" {
		return netip.Addr{}, true
	}
	if v6, found := cutPrefixFold(in, "IPv6:"); found {
		a, err := netip.ParseAddr(v6)
		return a, err == nil && a.Is6() && !a.Is4In6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(in)
	return a, err == nil && a.Is4()
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// validDomain checks RFC 5321 Domain syntax: labels of letters, digits
// and hyphens (and underscores, which real names have), neither starting
// nor ending with a hyphen, at most 63 octets each (RFC 1035 §2.3.4).
func validDomain(s string) bool {
	if s == "" || len(s) > maxDomain {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

// isDotString reports whether s is an RFC 5321 Dot-string: atoms of atext
// (RFC 5322 §3.2.3) joined by single dots.
func isDotString(s string) bool {
	if s == "" {
		return false
	}
	for a := range strings.SplitSeq(s, ".") {
		if a == "" {
			return false
		}
		for i := 0; i < len(a); i++ {
			if !isAtext(a[i]) {
				return false
			}
		}
	}
	return true
}

// isAtext: RFC 5322 §3.2.3 atext, and the bytes of RFC 6531 §3.3's
// UTF8-non-ascii (well-formed: parseCommand checked the line).
func isAtext(c byte) bool {
	return isAlpha(c) || isDigit(c) || c >= 0x80 || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseSize parses the value of SIZE= (RFC 1870: 1*20DIGIT).
func parseSize(v string) (int64, bool) {
	if v == "" || len(v) > 20 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		n = 1<<63 - 1 // a valid, absurd size: refuse it as too big
	}
	return n, true
}
