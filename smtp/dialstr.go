package smtp

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// A DialString is a parsed Plan 9 dial string (net!host!service) or its Unix
// spelling (host:port). Port is empty when the string named none, which for
// a mail destination means "look up MX records".
type DialString struct {
	Net  string // "tcp" (also for "net"), or "unix"
	Host string // host name or IP address; "*" or "" means every address; a path for unix
	Port string // decimal port, "" if none was given
}

// services maps the service names that dial strings use to ports.
var services = map[string]string{
	"smtp":       "25",
	"submission": "587",
	"smtps":      "465",
	"9fs":        "564",
}

// ParseDialString parses s in one of the forms host, net!host,
// net!host!service, host:port or [ipv6]:port. The network "net" means tcp.
// A service may be a port number or one of smtp, submission, smtps, 9fs.
func ParseDialString(s string) (DialString, error) {
	bad := func(why string) (DialString, error) {
		return DialString{}, fmt.Errorf("invalid dial string %q: %s", s, why)
	}
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return bad("empty or contains spaces")
	}
	d := DialString{Net: "tcp"}
	if strings.Contains(s, "!") {
		f := strings.Split(s, "!")
		switch len(f) {
		case 2:
			d.Net, d.Host = f[0], f[1]
		case 3:
			d.Net, d.Host, d.Port = f[0], f[1], f[2]
		default:
			return bad("too many ! elements")
		}
		if d.Net == "net" {
			d.Net = "tcp"
		}
		if d.Net == "unix" {
			if d.Host == "" || d.Port != "" {
				return bad("unix needs exactly one path")
			}
			return d, nil
		}
		if d.Net != "tcp" {
			return bad("network must be tcp, net or unix")
		}
		if len(f) == 3 && d.Port == "" {
			return bad("empty service")
		}
	} else if h, p, err := net.SplitHostPort(s); err == nil {
		d.Host, d.Port = h, p
		if p == "" {
			return bad("empty port")
		}
	} else if strings.Count(s, ":") == 1 {
		return bad(err.Error())
	} else {
		d.Host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	}
	if d.Port != "" {
		p, err := lookupService(d.Port)
		if err != nil {
			return bad(err.Error())
		}
		d.Port = p
	}
	if d.Host == "" {
		return bad("empty host")
	}
	return d, nil
}

func lookupService(s string) (string, error) {
	if p, ok := services[s]; ok {
		return p, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("unknown service %q", s)
	}
	return strconv.Itoa(n), nil
}

// Address returns the address for net.Dial or net.Listen: host:port for tcp
// (an empty or "*" host means every address), the path for unix. It uses
// defport when the string named no port.
func (d DialString) Address(defport string) string {
	if d.Net == "unix" {
		return d.Host
	}
	host := d.Host
	if host == "*" {
		host = ""
	}
	port := d.Port
	if port == "" {
		port = defport
	}
	return net.JoinHostPort(host, port)
}

// String returns the dial string in Plan 9 form, net!host!port.
func (d DialString) String() string {
	if d.Net == "unix" || d.Port == "" {
		return d.Net + "!" + d.Host
	}
	return d.Net + "!" + d.Host + "!" + d.Port
}
