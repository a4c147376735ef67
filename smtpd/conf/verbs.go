package conf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"smtpfs/internal/regfile"
	"smtpfs/smtp"
)

// A verb is one entry of the table: its name, how many words it takes, and
// how to set, render and reset the setting it names. Action verbs have no
// setting; Apply hands them back to the caller.
type verb struct {
	name     string
	usage    string
	min, max int // number of arguments; max -1 means no limit
	action   bool
	set      func(c *Config, args []string) error
	get      func(c *Config) []string // nil result: not rendered
	reset    func(c *Config)          // for clear; nil: reset from Default
	check    func(args []string) error
	// actionIf, when set, says whether the arguments make an action of a
	// verb that is otherwise a setting (dkim newkey).
	actionIf func(args []string) bool

	// lines, instead of get: a setting of many lines (listen, sendas, dkim).
	lines func(c *Config) [][]string
}

// verbs is the table, in the order Dump renders settings. It is filled in
// by init because clear refers back to it.
var verbs []*verb

func init() {
	verbs = []*verb{
		str("defaultdomain", "domain", func(c *Config) *string { return &c.DefaultDomain }, checkDomain),
		str("hostname", "name", func(c *Config) *string { return &c.Hostname }, checkDomain),
		onoff("norelay", func(c *Config) *bool { return &c.NoRelay }),
		onoff("verifysenderdom", func(c *Config) *bool { return &c.VerifySenderDom }),
		onoff("saveblockedmsg", func(c *Config) *bool { return &c.SaveBlockedMsg }),
		onoff("requireauth", func(c *Config) *bool { return &c.RequireAuth }),
		onoff("plaintextauth", func(c *Config) *bool { return &c.PlaintextAuth }),
		onoff("debug", func(c *Config) *bool { return &c.Debug }),
		onoff("tarpit", func(c *Config) *bool { return &c.Tarpit }),
		onoff("greylist", func(c *Config) *bool { return &c.Greylist }),
		onoff("helocheck", func(c *Config) *bool { return &c.HeloCheck }),
		onoff("mkbox", func(c *Config) *bool { return &c.MkBox }),
		count("mkboxperhour", 1, 1<<30, func(c *Config) *int { return &c.MkBoxPerHour }),
		nets("ournets", func(c *Config) *[]netip.Prefix { return &c.OurNets }),
		{name: "ourdomains", usage: "domain|*.domain...", min: 1, max: -1,
			set: setOurDomains, get: func(c *Config) []string { return orNil(c.OurDomains) },
			reset: func(c *Config) { c.OurDomains = nil }},
		nets("evil", func(c *Config) *[]netip.Prefix { return &c.Evil }),
		{name: "tlscert", usage: "certfile [keyfile]", min: 1, max: 2, set: setTLSCert,
			get: func(c *Config) []string {
				if c.TLSCertFile == "" {
					return nil
				}
				return orNil(slices.DeleteFunc([]string{c.TLSCertFile, c.TLSKeyFile}, isEmpty))
			},
			reset: func(c *Config) { c.TLSCertFile, c.TLSKeyFile, c.TLSCert = "", "", nil }},
		{name: "mailer", usage: "command [arg...]", min: 1, max: -1, set: setMailer,
			get:   func(c *Config) []string { return orNil(c.Mailer) },
			reset: func(c *Config) { c.Mailer = nil }},
		str("smarthost", "dialstring", func(c *Config) *string { return &c.SmartHost }, checkDial),
		str("resolver", "host:port", func(c *Config) *string { return &c.Resolver }, checkHostPort),
		{name: "maxsize", usage: "bytes", min: 1, max: 1, set: func(c *Config, a []string) error {
			n, err := parseSize(a[0])
			c.MaxSize = n
			return err
		}, get: func(c *Config) []string { return []string{formatSize(c.MaxSize)} }},
		{name: "minfree", usage: "bytes|off", min: 1, max: 1, set: func(c *Config, a []string) error {
			if a[0] == "off" || a[0] == "0" {
				c.MinFree = 0
				return nil
			}
			n, err := parseSize(a[0])
			c.MinFree = n
			return err
		}, get: func(c *Config) []string {
			if c.MinFree == 0 {
				return []string{"off"}
			}
			return []string{formatSize(c.MinFree)}
		}},
		count("maxrcpts", 100, maxRcpts, func(c *Config) *int { return &c.MaxRcpts }), // RFC 5321 §4.5.3.1.8: at least 100
		count("maxconns", 1, 1<<30, func(c *Config) *int { return &c.MaxConns }),
		count("maxperip", 1, 1<<30, func(c *Config) *int { return &c.MaxPerIP }),
		count("maxerrors", 1, 1<<30, func(c *Config) *int { return &c.MaxErrors }),
		durations("cmdtimeout", "duration", 1, func(c *Config) []*time.Duration { return []*time.Duration{&c.CmdTimeout} }),
		durations("datatimeout", "duration", 1, func(c *Config) []*time.Duration { return []*time.Duration{&c.DataTimeout} }),
		durations("greywindow", "min max", 2, func(c *Config) []*time.Duration { return []*time.Duration{&c.GreyMin, &c.GreyMax} }),
		{name: "greyprefix", usage: "ipv4-len ipv6-len", min: 2, max: 2, set: setGreyPrefix,
			get: func(c *Config) []string {
				return []string{strconv.Itoa(c.GreyPrefix4), strconv.Itoa(c.GreyPrefix6)}
			}},
		count("greytriplets", 1, 1<<30, func(c *Config) *int { return &c.GreyTriplets }),
		count("greyperclient", 1, 1<<30, func(c *Config) *int { return &c.GreyPerClient }),
		count("greypermsg", 1, maxRcpts, func(c *Config) *int { return &c.GreyPerMsg }),
		str("greystore", "file|redis://[user:password@]host[:port][/db]|rediss://...", func(c *Config) *string { return &c.GreyStore }, checkGreyStore),
		{name: "greyfail", usage: "open|closed", min: 1, max: 1, set: setGreyFail, get: func(c *Config) []string {
			if c.GreyFailClosed {
				return []string{"closed"}
			}
			return []string{"open"}
		}},
		durations("tarpitdelay", "normal long", 2, func(c *Config) []*time.Duration { return []*time.Duration{&c.TarpitShort, &c.TarpitLong} }),
		{name: "backoff", usage: "duration...", min: 1, max: 32, set: setBackoff,
			get: func(c *Config) []string {
				var s []string
				for _, d := range c.Backoff {
					s = append(s, FormatDuration(d))
				}
				return s
			}},
		durations("lifetime", "duration", 1, func(c *Config) []*time.Duration { return []*time.Duration{&c.Lifetime} }),
		{name: "delaywarn", usage: "duration|off", min: 1, max: 1, set: func(c *Config, a []string) error {
			if a[0] == "off" {
				c.DelayWarn = 0
				return nil
			}
			d, err := ParseDuration(a[0])
			c.DelayWarn = d
			return err
		}, get: func(c *Config) []string {
			if c.DelayWarn == 0 {
				return []string{"off"}
			}
			return []string{FormatDuration(c.DelayWarn)}
		}},
		count("deliveries", 1, 1<<30, func(c *Config) *int { return &c.Deliveries }),
		count("destconcurrency", 1, 1<<30, func(c *Config) *int { return &c.DestConcurrency }),
		durations("deliverytimeout", "duration", 1, func(c *Config) []*time.Duration { return []*time.Duration{&c.DeliveryTimeout} }),
		count("sessionmsgs", 1, 10000, func(c *Config) *int { return &c.SessionMsgs }),
		durations("sessionidle", "duration", 1, func(c *Config) []*time.Duration { return []*time.Duration{&c.SessionIdle} }),
		count("loopbackrcpts", 0, maxRcpts, func(c *Config) *int { return &c.LoopbackRcpts }),
		{name: "loopbackrate", usage: "messages recipients duration", min: 3, max: 3, set: setLoopbackRate,
			get: func(c *Config) []string {
				return []string{strconv.Itoa(c.LoopbackRateMsgs), strconv.Itoa(c.LoopbackRateRcpts), FormatDuration(c.LoopbackRateWindow)}
			}},
		{name: "listen", usage: "dialstring [smtp|submission|submissions]", min: 1, max: 2, set: setListen,
			lines: getListen, reset: func(c *Config) { c.Listen = nil }},
		{name: "sendas", usage: "user address...", min: 2, max: -1, set: setSendAs,
			lines: getSendAs, reset: func(c *Config) { c.SendAs = nil }},
		{name: "tlspolicy", usage: "domain dane|mta-sts|verify|encrypt|may|none|default", min: 2, max: 2, set: setTLSPolicy,
			lines: getTLSPolicy, reset: func(c *Config) { c.TLSPolicy = nil }},
		str("daneresolver", "ip:port", func(c *Config) *string { return &c.DANEResolver }, checkDANEResolver),
		onoff("submitterip", func(c *Config) *bool { return &c.SubmitterIP }),
		count("maxmails", 1, 1<<30, func(c *Config) *int { return &c.MaxMails }), // RFC 9422 MAILMAX
		policy("spf", func(c *Config) *AuthPolicy { return &c.SPF }),
		policy("dmarc", func(c *Config) *AuthPolicy { return &c.DMARC }),
		{name: "dkim", usage: "domain selector... | dkim newkey domain selector [rsa|ed25519]", min: 2, max: -1,
			set: setDKIM, lines: dkimLines, reset: func(c *Config) { c.DKIM = nil },
			actionIf: func(a []string) bool { return strings.EqualFold(a[0], "newkey") }, check: checkNewKey},
		{name: "clear", usage: "verb", min: 1, max: 1, set: clearVerb},

		{name: "reload", usage: "", action: true},
		{name: "kick", usage: "", action: true},
		{name: "retry", usage: "id...", min: 1, max: -1, action: true, check: checkIDs},
		{name: "delete", usage: "id...", min: 1, max: -1, action: true, check: checkIDs},
		{name: "hold", usage: "id...", min: 1, max: -1, action: true, check: checkIDs},
		{name: "release", usage: "id...", min: 1, max: -1, action: true, check: checkIDs},
		{name: "unwhitelist", usage: "ip[/len]...", min: 1, max: -1, action: true, check: func(a []string) error {
			for _, s := range a {
				if _, err := parseNet(s); err != nil {
					return err
				}
			}
			return nil
		}},
		{name: "exportwhitelist", usage: "[file]", min: 0, max: 1, action: true, check: checkExportFile},
	}
}

func lookup(name string) *verb {
	for _, v := range verbs {
		if v.name == name {
			return v
		}
	}
	return nil
}

// Verbs returns the names of the settings and actions, in table order.
func Verbs() []string {
	var s []string
	for _, v := range verbs {
		s = append(s, v.name)
	}
	return s
}

func onoff(name string, f func(*Config) *bool) *verb {
	return &verb{name: name, usage: "on|off", min: 1, max: 1,
		set: func(c *Config, a []string) error {
			switch strings.ToLower(a[0]) {
			case "on":
				*f(c) = true
			case "off":
				*f(c) = false
			default:
				return fmt.Errorf("%s takes on or off, not %s", name, quote(a[0]))
			}
			return nil
		},
		get: func(c *Config) []string {
			if *f(c) {
				return []string{"on"}
			}
			return []string{"off"}
		}}
}

func str(name, usage string, f func(*Config) *string, check func(string) (string, error)) *verb {
	return &verb{name: name, usage: usage, min: 1, max: 1,
		set: func(c *Config, a []string) error {
			s, err := check(a[0])
			if err != nil {
				return err
			}
			*f(c) = s
			return nil
		},
		get: func(c *Config) []string {
			if *f(c) == "" {
				return nil
			}
			return []string{*f(c)}
		},
		reset: func(c *Config) { *f(c) = *f(Default()) }}
}

// maxRcpts bounds maxrcpts: a session checks each recipient against the
// transaction's others, and the queue's envelope holds at most 50,000
// (smtp/queue.MaxRcpts).
const maxRcpts = 50000

func count(name string, least, most int, f func(*Config) *int) *verb {
	return &verb{name: name, usage: "number", min: 1, max: 1,
		set: func(c *Config, a []string) error {
			n, err := strconv.Atoi(a[0])
			if err != nil || n < least || n > most {
				return fmt.Errorf("%s takes a number from %d to %d, not %s", name, least, most, quote(a[0]))
			}
			*f(c) = n
			return nil
		},
		get: func(c *Config) []string { return []string{strconv.Itoa(*f(c))} }}
}

func durations(name, usage string, n int, f func(*Config) []*time.Duration) *verb {
	return &verb{name: name, usage: usage, min: n, max: n,
		set: func(c *Config, a []string) error {
			ds := f(c)
			for i, s := range a {
				d, err := ParseDuration(s)
				if err != nil {
					return err
				}
				*ds[i] = d
			}
			if n == 2 && *ds[0] > *ds[1] {
				return fmt.Errorf("%s: %s is more than %s", name, a[0], a[1])
			}
			return nil
		},
		get: func(c *Config) []string {
			var s []string
			for _, d := range f(c) {
				s = append(s, FormatDuration(*d))
			}
			return s
		}}
}

func nets(name string, f func(*Config) *[]netip.Prefix) *verb {
	return &verb{name: name, usage: "ip[/len]...", min: 1, max: -1,
		set: func(c *Config, a []string) error {
			l := f(c)
			for _, s := range a {
				p, err := ParsePrefix(s)
				if err != nil {
					return err
				}
				if !slices.Contains(*l, p) {
					*l = append(*l, p)
				}
			}
			return nil
		},
		get: func(c *Config) []string {
			var s []string
			for _, p := range *f(c) {
				s = append(s, FormatPrefix(p))
			}
			return s
		},
		reset: func(c *Config) { *f(c) = nil }}
}

func clearVerb(c *Config, a []string) error {
	v := lookup(strings.ToLower(a[0]))
	if v == nil || v.action || v.get == nil && v.lines == nil {
		return fmt.Errorf("clear: %s is not a setting", quote(a[0]))
	}
	if v.reset != nil {
		v.reset(c)
		return nil
	}
	// Restore the default by rendering it and setting it again, which keeps
	// the knowledge of each field in its verb alone.
	return v.set(c, v.get(Default()))
}

func setOurDomains(c *Config, a []string) error {
	for _, s := range a {
		s = strings.TrimSuffix(strings.ToLower(s), ".")
		if _, err := checkDomain(strings.TrimPrefix(s, "*.")); err != nil {
			return err
		}
		if !slices.Contains(c.OurDomains, s) {
			c.OurDomains = append(c.OurDomains, s)
		}
	}
	return nil
}

func setTLSCert(c *Config, a []string) error {
	certf, keyf := a[0], ""
	if len(a) > 1 {
		keyf = a[1]
	}
	cert, err := LoadCert(certf, keyf)
	if err != nil {
		return err
	}
	c.TLSCertFile, c.TLSKeyFile, c.TLSCert = certf, keyf, cert
	return nil
}

// MaxPEM bounds each file tlscert reads: a chain of a few certificates
// and a key take a few KiB.
const MaxPEM = 1 << 20

// LoadCert loads a PEM certificate chain and its key. The key is read from
// keyfile if given, else from certfile itself, else from the file beside it
// with the extension .key instead of .pem or .crt. Each file must be a
// regular file of at most MaxPEM bytes (regfile.Read): a FIFO, /dev/zero
// or a link to them is refused at once, "invalid tlscert '/dev/zero': not
// a regular file", and never waited on or read without end.
func LoadCert(certfile, keyfile string) (*tls.Certificate, error) {
	certPEM, err := readPEM(certfile)
	if err != nil {
		return nil, err
	}
	tries := []string{keyfile}
	if keyfile == "" {
		base := strings.TrimSuffix(strings.TrimSuffix(certfile, ".pem"), ".crt")
		tries = []string{certfile, base + ".key"}
	}
	for _, k := range tries {
		keyPEM, names := certPEM, quote(certfile)
		if k != certfile {
			if keyPEM, err = readPEM(k); err != nil {
				continue
			}
			names += " " + quote(k)
		}
		cert, perr := tls.X509KeyPair(certPEM, keyPEM)
		if perr == nil {
			return &cert, nil
		}
		err = fmt.Errorf("invalid tlscert %s: %v", names, perr)
	}
	return nil, err
}

// readPEM reads a file of tlscert.
func readPEM(name string) ([]byte, error) {
	b, err := regfile.Read(name, MaxPEM)
	if err != nil {
		return nil, fmt.Errorf("invalid tlscert %s: %v", quote(name), regfile.Reason(err))
	}
	return b, nil
}

func setMailer(c *Config, a []string) error {
	if _, err := exec.LookPath(a[0]); err != nil {
		return fmt.Errorf("mailer: %v", err)
	}
	c.Mailer = append([]string(nil), a...)
	return nil
}

func setGreyPrefix(c *Config, a []string) error {
	v4, err1 := strconv.Atoi(a[0])
	v6, err2 := strconv.Atoi(a[1])
	if err1 != nil || err2 != nil || v4 < 8 || v4 > 32 || v6 < 16 || v6 > 128 {
		return errors.New("greyprefix takes an IPv4 length from 8 to 32 and an IPv6 length from 16 to 128")
	}
	c.GreyPrefix4, c.GreyPrefix6 = v4, v6
	return nil
}

func setLoopbackRate(c *Config, a []string) error {
	msgs, err1 := strconv.Atoi(a[0])
	rcpts, err2 := strconv.Atoi(a[1])
	if err1 != nil || err2 != nil || msgs < 0 || rcpts < 0 || msgs > 1<<30 || rcpts > 1<<30 {
		return fmt.Errorf("loopbackrate takes two numbers from 0 to %d and a duration, not %s %s", 1<<30, quote(a[0]), quote(a[1]))
	}
	d, err := ParseDuration(a[2])
	if err != nil {
		return err
	}
	c.LoopbackRateMsgs, c.LoopbackRateRcpts, c.LoopbackRateWindow = msgs, rcpts, d
	return nil
}

func setBackoff(c *Config, a []string) error {
	c.Backoff = c.Backoff[:0]
	for _, s := range a {
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		c.Backoff = append(c.Backoff, d)
	}
	return nil
}

// policy is a verb of mail authentication: off, tag or enforce.
func policy(name string, f func(*Config) *AuthPolicy) *verb {
	return &verb{name: name, usage: "off|tag|enforce", min: 1, max: 1,
		set: func(c *Config, a []string) error {
			switch p := AuthPolicy(strings.ToLower(a[0])); p {
			case PolicyOff, PolicyTag, PolicyEnforce:
				*f(c) = p
				return nil
			}
			return fmt.Errorf("%s takes off, tag or enforce, not %s", name, quote(a[0]))
		},
		get: func(c *Config) []string { return []string{string(*f(c))} }}
}

// maxDKIMDomains and maxSelectors bound the dkim lines: lib/dkim holds at
// most 1000 keys (smtp/mailauth).
const (
	maxDKIMDomains = 1000
	maxSelectors   = 10
)

// setDKIM is the dkim verb: the selectors that sign for a domain, in
// place of those named for it before (a line names all of a domain's
// signing selectors, so that a rotation is one line). Whether each has a
// key is for the daemon to check: the configuration knows no files.
func setDKIM(c *Config, a []string) error {
	d, err := checkDomain(a[0])
	if err != nil {
		return fmt.Errorf("dkim: %v", err)
	}
	sels := a[1:]
	if len(sels) > maxSelectors {
		return fmt.Errorf("dkim: more than %d selectors for %s", maxSelectors, d)
	}
	var list []string
	for _, s := range sels {
		s = strings.ToLower(s)
		if !validSelector(s) {
			return fmt.Errorf("dkim: bad selector %s (RFC 6376 3.1: labels of letters, digits and hyphens)", quote(s))
		}
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	for i := range c.DKIM {
		if c.DKIM[i].Domain == d {
			c.DKIM[i].Selectors = list
			return nil
		}
	}
	if len(c.DKIM) >= maxDKIMDomains {
		return fmt.Errorf("dkim: more than %d domains", maxDKIMDomains)
	}
	c.DKIM = append(c.DKIM, DKIMSigns{Domain: d, Selectors: list})
	return nil
}

func dkimLines(c *Config) [][]string {
	var l [][]string
	for _, d := range c.DKIM {
		l = append(l, append([]string{d.Domain}, d.Selectors...))
	}
	return l
}

// checkNewKey checks "dkim newkey domain selector [rsa|ed25519]".
func checkNewKey(a []string) error {
	if len(a) < 3 || len(a) > 4 {
		return errors.New("usage: dkim newkey domain selector [rsa|ed25519]")
	}
	if _, err := checkDomain(a[1]); err != nil {
		return fmt.Errorf("dkim newkey: %v", err)
	}
	if !validSelector(strings.ToLower(a[2])) {
		return fmt.Errorf("dkim newkey: bad selector %s (RFC 6376 3.1: labels of letters, digits and hyphens)", quote(a[2]))
	}
	if len(a) == 4 && a[3] != "rsa" && a[3] != "ed25519" {
		return fmt.Errorf("dkim newkey: algorithm %s, want rsa or ed25519", quote(a[3]))
	}
	return nil
}

// validSelector reports whether s is a DKIM selector (RFC 6376 §3.1):
// dot-separated labels of letters, digits, hyphens (and underscores, as
// smtp/mailauth allows), at most 63 octets in all.
func validSelector(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func checkIDs(a []string) error {
	for _, id := range a {
		if id == "" || len(id) > 64 || strings.ContainsAny(id, "/\\.") {
			return fmt.Errorf("bad message id %s", quote(id))
		}
	}
	return nil
}

// checkDomain validates a host or domain name (RFC 1035 §2.3.4: 255 octets,
// labels of 63) and returns it in lower case without a final dot.
func checkDomain(s string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(s), ".")
	if d == "" || len(d) > 255 {
		return "", fmt.Errorf("bad domain %s", quote(s))
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("bad domain %s", quote(s))
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("bad domain %s", quote(s))
			}
		}
	}
	return d, nil
}

func checkDial(s string) (string, error) {
	d, err := smtp.ParseDialString(s)
	if err != nil {
		return "", err
	}
	if d.Net != "tcp" {
		return "", fmt.Errorf("smarthost must be a tcp dial string, not %s", quote(s))
	}
	return s, nil
}

func checkHostPort(s string) (string, error) {
	h, p, err := net.SplitHostPort(s)
	if err == nil {
		_, err = netip.ParseAddr(h)
	}
	if n, perr := strconv.Atoi(p); err == nil && (perr != nil || n <= 0 || n > 65535) {
		err = errors.New("bad port")
	}
	if err != nil {
		return "", fmt.Errorf("resolver takes ip:port, not %s", quote(s))
	}
	return s, nil
}

// ParsePrefix parses an address or network for ournets and evil: a.b.c.d/n
// or an IPv6 prefix; a bare address is that one host; as the smtpd(6) man
// page says, two or three octets mean a /16 or /24 network. IPv4-mapped
// IPv6 forms are taken as IPv4.
//
// A prefix with host bits set is refused rather than widened: the network
// the operator meant is a guess (10.0.0.0/1 masked is 0.0.0.0/1, half the
// IPv4 Internet trusted to relay; 10.0.0.0/8 is likelier), so the error
// names the masked form and the operator decides. The whitelist's
// grammar (grey.ParsePrefix, which unwhitelist follows) clears host bits
// instead: an entry there only spares a client the greylist.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := parseNet(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("invalid address %s: host bits set; did you mean %s?", quote(s), FormatPrefix(m))
	}
	return p, nil
}

// parseNet parses what ParsePrefix does, host bits left as they are.
func parseNet(s string) (netip.Prefix, error) {
	bad := fmt.Errorf("invalid address %s", quote(s))
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, bad
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	parts := strings.Split(s, ".")
	if len(parts) == 2 || len(parts) == 3 {
		full := s + strings.Repeat(".0", 4-len(parts))
		if a, err := netip.ParseAddr(full); err == nil && a.Is4() {
			return netip.PrefixFrom(a, 8*len(parts)), nil
		}
	}
	return netip.Prefix{}, bad
}

// FormatPrefix renders p as ParsePrefix reads it: a bare address for one host.
func FormatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// ParseDuration parses a Go duration with one more unit, d for 24 hours
// (e.g. "5d", "1d12h"). The result must be positive.
func ParseDuration(s string) (time.Duration, error) {
	var days int64
	rest := s
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseInt(s[:i], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("bad duration %s", quote(s))
		}
		days, rest = n, s[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil {
			return 0, fmt.Errorf("bad duration %s", quote(s))
		}
	}
	d += time.Duration(days) * 24 * time.Hour
	if d <= 0 || days > 3650 {
		return 0, fmt.Errorf("bad duration %s", quote(s))
	}
	return d, nil
}

// FormatDuration renders d as ParseDuration reads it, as briefly as it can
// (5d, 14h, 1h30m, 90s).
func FormatDuration(d time.Duration) string {
	if d%time.Second != 0 || d <= 0 {
		return d.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.unit {
			fmt.Fprintf(&b, "%d%s", d/u.unit, u.name)
			d %= u.unit
		}
	}
	return b.String()
}

var sizeUnits = []struct {
	suffix string
	n      int64
}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := strings.ToLower(s)
	for _, u := range sizeUnits {
		if t, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = t, u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("bad size %s", quote(s))
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func orNil(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func isEmpty(s string) bool { return s == "" }
