package conf

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"smtpfs/smtp"
)

// A Role is what a listener is for.
//
//   - smtp: mail from the world to us, port 25 (RFC 5321): today's rules,
//     greylist, lib/blocked, tarpit, relaying only for our networks and
//     authenticated users.
//   - submission: mail from our users, port 587 (RFC 6409): AUTH before
//     MAIL, and AUTH only after STARTTLS; the envelope sender and the
//     From: header must be the user's (sendas); the message is completed
//     (Date:, Message-ID:) and its Received: line does not name the
//     client's address unless submitterip is on.
//   - submissions: submission over implicit TLS, port 465 (RFC 8314
//     §3.3): the TLS handshake comes first, then as submission.
type Role uint8

const (
	RoleSMTP Role = iota
	RoleSubmission
	RoleSubmissions
)

var roleNames = []string{"smtp", "submission", "submissions"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role%d", r)
}

// Submit reports whether the role is one of the two submission roles.
func (r Role) Submit() bool { return r == RoleSubmission || r == RoleSubmissions }

// ParseRole parses a role's name.
func ParseRole(s string) (Role, error) {
	if i := slices.Index(roleNames, strings.ToLower(s)); i >= 0 {
		return Role(i), nil
	}
	return 0, fmt.Errorf("listen: role %s is none of smtp, submission, submissions", quote(s))
}

// A Listen is one SMTP listener of the listen verb: a tcp dial string and
// its role.
type Listen struct {
	Dial string
	Role Role
}

// maxListen bounds the listen verb's list, and maxSendAs the sendas
// entries (users, and addresses of one user).
const (
	maxListen = 64
	maxSendAs = 10000
)

// setListen is the listen verb: `listen dial [role]`, one listener a line;
// a dial string said again takes the newer role.
func setListen(c *Config, a []string) error {
	d, err := smtp.ParseDialString(a[0])
	if err != nil {
		return fmt.Errorf("listen: %v", err)
	}
	if d.Net != "tcp" {
		return fmt.Errorf("listen: smtp listens on tcp only, not %s", quote(a[0]))
	}
	r := RoleSMTP
	if len(a) > 1 {
		if r, err = ParseRole(a[1]); err != nil {
			return err
		}
	}
	for i := range c.Listen {
		if c.Listen[i].Dial == a[0] {
			c.Listen[i].Role = r
			return nil
		}
	}
	if len(c.Listen) >= maxListen {
		return fmt.Errorf("listen: at most %d listeners", maxListen)
	}
	c.Listen = append(c.Listen, Listen{a[0], r})
	return nil
}

func getListen(c *Config) [][]string {
	var l [][]string
	for _, x := range c.Listen {
		l = append(l, []string{x.Dial, x.Role.String()})
	}
	return l
}

// setSendAs is the sendas verb: `sendas user address...`, where an
// address is local@domain, or @domain for every address of domain. The
// addresses of a user accumulate; a user with none may send as
// user@each of our domains (SendAs).
func setSendAs(c *Config, a []string) error {
	user := a[0]
	if strings.ContainsAny(user, " \t\r\n") {
		return fmt.Errorf("sendas: bad user name %s", quote(user))
	}
	if c.SendAs == nil {
		c.SendAs = map[string][]string{}
	}
	l := c.SendAs[user]
	for _, s := range a[1:] {
		addr, err := checkSendAs(s)
		if err != nil {
			return err
		}
		if !slices.Contains(l, addr) {
			l = append(l, addr)
		}
	}
	if len(l) > maxSendAs || len(c.SendAs) >= maxSendAs && c.SendAs[user] == nil {
		return fmt.Errorf("sendas: at most %d users of %d addresses", maxSendAs, maxSendAs)
	}
	c.SendAs[user] = l
	return nil
}

// checkSendAs validates one address of sendas and returns it with its
// domain in lower case.
func checkSendAs(s string) (string, error) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 || len(s) > 320 || strings.ContainsAny(s[:i], " \t\r\n<>") {
		return "", fmt.Errorf("sendas: bad address %s: local@domain or @domain", quote(s))
	}
	d, err := checkDomain(s[i+1:])
	if err != nil {
		return "", fmt.Errorf("sendas: bad address %s: %v", quote(s), err)
	}
	return s[:i] + "@" + d, nil
}

func getSendAs(c *Config) [][]string {
	users := make([]string, 0, len(c.SendAs))
	for u := range c.SendAs {
		users = append(users, u)
	}
	sort.Strings(users)
	var l [][]string
	for _, u := range users {
		l = append(l, append([]string{u}, c.SendAs[u]...))
	}
	return l
}

// MaySendAs reports whether the submission user may use addr
// (local@domain) as envelope sender or in From: and Sender:. The
// addresses sendas gives the user, if any; else user@d for each d of our
// domains (OurDomain), or, for a user whose name is an address
// (glenda@example.org), that address when its domain is ours. The
// domain is compared without case, the local part with it: mailbox
// names are case-sensitive (RFC 5321 §2.4) and the user's name is
// exactly what lib/secrets says.
func (c *Config) MaySendAs(user, addr string) bool {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return false
	}
	local, dom := addr[:i], strings.ToLower(strings.TrimSuffix(addr[i+1:], "."))
	if l, ok := c.SendAs[user]; ok && len(l) > 0 {
		for _, a := range l {
			j := strings.LastIndexByte(a, '@')
			if a[j+1:] == dom && (j == 0 || a[:j] == local) {
				return true
			}
		}
		return false
	}
	if j := strings.LastIndexByte(user, '@'); j >= 0 {
		return user[:j] == local && strings.EqualFold(user[j+1:], dom) && c.OurDomain(dom)
	}
	ours := dom == c.DefaultDomain || dom == c.Hostname || strings.Contains(dom, ".") && c.OurDomain(dom)
	return local == user && ours
}

// DefaultListen is the listener of a configuration that names none.
var DefaultListen = Listen{Dial: "tcp!127.0.0.1!2525", Role: RoleSMTP}

// CheckListen checks what the listen verbs need of the rest of the
// configuration, once all of it is read: a submission listener needs
// tlscert, for AUTH comes only after STARTTLS there, and a submissions
// one speaks TLS from the first byte.
func (c *Config) CheckListen() error {
	for _, l := range c.Listen {
		if l.Role.Submit() && c.TLSCert == nil {
			return fmt.Errorf("invalid configuration: listen %s %s needs tlscert (or -c)", l.Dial, l.Role)
		}
	}
	return nil
}
