// Package conf is the one grammar of smtpfs's configuration: the lines of
// lib/smtpd.conf, the flags of smtpd and smtpfs (each flag is a verb), and
// the commands written to the 9P ctl file are all verbs of one table.
//
// A Config is a plain value. Apply never changes the Config it is given: it
// applies every line to a copy and returns the copy only if every line was
// good, so a bad line changes nothing. Dump renders a Config as verbs that
// Apply reads back to the same Config.
//
// The effective configuration is built in this order, later steps winning:
// Default, then lib/smtpd.conf, then $SMTPFS_RESOLVER, then the command
// line flags. Lines written to ctl apply on top of it until the next
// reload, which builds it again from the start.
package conf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"strings"
	"time"

	"smtpfs/internal/regfile"
	"smtpfs/smtp"
	"smtpfs/smtp/tlspolicy"
)

// Config is the effective configuration of the server, the queue runner
// and the greylist. Its fields are set only through the verbs of this
// package; the comment on each field names its verb.
type Config struct {
	DefaultDomain   string // defaultdomain: our domain, in the greeting and replies
	Hostname        string // hostname: our system name, in Received: and EHLO
	NoRelay         bool   // norelay (-f)
	VerifySenderDom bool   // verifysenderdom (-r)
	SaveBlockedMsg  bool   // saveblockedmsg (-s)
	RequireAuth     bool   // requireauth (-a)
	PlaintextAuth   bool   // plaintextauth (-p)
	Debug           bool   // debug (-d)
	Tarpit          bool   // tarpit (-D)
	Greylist        bool   // greylist (-g)
	HeloCheck       bool   // helocheck: upas's "Liar!" checks of HELO names
	MkBox           bool   // mkbox: make a Maildir for a new local user on first delivery
	MkBoxPerHour    int    // mkboxperhour: boxes an untrusted client may make in an hour

	OurNets    []netip.Prefix // ournets: trusted client networks
	OurDomains []string       // ourdomains: "dom" or "*.dom", lower case
	Evil       []netip.Prefix // evil (-k): dropped at connect, silently

	TLSCertFile string           // tlscert (-c): PEM certificate
	TLSKeyFile  string           // tlscert: PEM key, "" if in TLSCertFile
	TLSCert     *tls.Certificate // loaded from the files above, nil if none

	Mailer []string // mailer (-m): command and arguments; nil: deliver ourselves

	SmartHost string // smarthost: dial string for all outbound mail, "" for MX
	Resolver  string // resolver: DNS server host:port, "" for /etc/resolv.conf

	MaxSize     int64         // maxsize: largest message accepted, bytes (SIZE)
	MinFree     int64         // minfree: refuse mail (452) when the mail root has less free space
	MaxRcpts    int           // maxrcpts: recipients per transaction
	MaxConns    int           // maxconns: concurrent SMTP sessions in all
	MaxPerIP    int           // maxperip: concurrent sessions per untrusted IP
	MaxErrors   int           // maxerrors: errors before a session is closed
	CmdTimeout  time.Duration // cmdtimeout: wait for a command
	DataTimeout time.Duration // datatimeout: wait for each block of DATA

	GreyMin, GreyMax         time.Duration // greywindow: retry window
	GreyPrefix4, GreyPrefix6 int           // greyprefix: sender pool size
	GreyTriplets             int           // greytriplets: greylist triplets in all
	GreyPerClient            int           // greyperclient: triplets of one client (pool, IPv6 /64)
	GreyPerMsg               int           // greypermsg: triplets one message registers
	GreyStore                string        // greystore: "file", or a redis:// or rediss:// URL (the state shared by MX hosts)
	GreyFailClosed           bool          // greyfail: closed refuses (451) what the store could not check; open lets it through
	TarpitShort, TarpitLong  time.Duration // tarpitdelay: normal, spammy class A

	Backoff    []time.Duration // backoff: retry delays; the last repeats
	Lifetime   time.Duration   // lifetime: give up and bounce after this
	DelayWarn  time.Duration   // delaywarn: warn the sender after this, 0 off
	Deliveries int             // deliveries: outbound sessions at once

	DestConcurrency int           // destconcurrency: outbound sessions at once per destination
	DeliveryTimeout time.Duration // deliverytimeout: bound on one message's outbound delivery
	SessionMsgs     int           // sessionmsgs: messages one outbound session carries at most
	SessionIdle     time.Duration // sessionidle: an outbound session is kept open this long for the next message

	// What a client neither trusted nor authenticated may send to its own
	// address (upas's user@[]): loopbackrcpts per message, loopbackrate
	// messages and recipients per window and client.
	LoopbackRcpts      int
	LoopbackRateMsgs   int
	LoopbackRateRcpts  int
	LoopbackRateWindow time.Duration
	Listen             []Listen            // listen: SMTP listeners and their roles (smtpfs; -l adds smtp ones)
	SendAs             map[string][]string // sendas: the addresses a submission user may send as
	SubmitterIP        bool                // submitterip: a submission's Received: names the client's address
	MaxMails           int                 // maxmails: transactions of one session (LIMITS MAILMAX)

	SPF   AuthPolicy  // spf: SPF (RFC 7208) at MAIL for untrusted clients
	DMARC AuthPolicy  // dmarc: DKIM and DMARC (RFC 6376, RFC 7489) after DATA for untrusted clients
	DKIM  []DKIMSigns // dkim: the selectors that sign each domain's outgoing mail

	TLSPolicy    map[string]tlspolicy.Level // tlspolicy: outbound TLS level by domain (lower case)
	DANEResolver string                     // daneresolver: validating resolver ip:port for DANE, "" for no DANE
}

// An AuthPolicy says what a check of mail authentication does (the spf
// and dmarc verbs): nothing, record its result in the
// Authentication-Results field, or also refuse what fails.
type AuthPolicy string

// The policies.
const (
	PolicyOff     AuthPolicy = "off"
	PolicyTag     AuthPolicy = "tag"
	PolicyEnforce AuthPolicy = "enforce"
)

// DKIMSigns is one line of the dkim verb: the selectors whose keys sign
// the mail of Domain, in order.
type DKIMSigns struct {
	Domain    string
	Selectors []string
}

// DKIMSelection returns the dkim lines as a map, domain: selectors, as
// mailauth.KeyStore.Select takes it.
func (c *Config) DKIMSelection() map[string][]string {
	m := map[string][]string{}
	for _, d := range c.DKIM {
		m[d.Domain] = append([]string(nil), d.Selectors...)
	}
	return m
}

// Default returns the built-in configuration.
func Default() *Config {
	host, _ := os.Hostname()
	host = strings.ToLower(host)
	if host == "" {
		host = "localhost"
	}
	return &Config{
		DefaultDomain: host,
		Hostname:      host,
		NoRelay:       true, // upas's default is off: an open relay
		MkBox:         true,
		MkBoxPerHour:  20,
		MaxSize:       32 << 20,
		MinFree:       64 << 20,
		MaxRcpts:      1000,
		MaxConns:      20000,
		MaxPerIP:      100,
		MaxErrors:     10,
		CmdTimeout:    5 * time.Minute,  // RFC 5321 §4.5.3.2.7: at least 5 min
		DataTimeout:   10 * time.Minute, // RFC 5321 §4.5.3.2.6: 10 min for the final dot
		GreyMin:       5 * time.Minute,
		GreyMax:       14 * time.Hour,
		GreyPrefix4:   32,
		GreyPrefix6:   128,
		GreyTriplets:  1_000_000,
		GreyPerClient: 100,
		GreyPerMsg:    5,
		GreyStore:     "file",
		TarpitShort:   15 * time.Second,
		TarpitLong:    60 * time.Second,
		Backoff: []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
			time.Hour, 2 * time.Hour, 4 * time.Hour},
		Lifetime:   5 * 24 * time.Hour,
		DelayWarn:  4 * time.Hour,
		Deliveries: 20,

		DestConcurrency:    10,               // smtp/queue.DefaultSettings says why
		DeliveryTimeout:    15 * time.Minute, // the same
		SessionMsgs:        100,              // the same
		SessionIdle:        2 * time.Second,  // the same
		LoopbackRcpts:      10,
		LoopbackRateMsgs:   20,
		LoopbackRateRcpts:  100,
		LoopbackRateWindow: time.Hour,
		MaxMails:           1000,
		SPF:                PolicyTag,
		DMARC:              PolicyTag,
	}
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	n := *c
	n.OurNets = append([]netip.Prefix(nil), c.OurNets...)
	n.OurDomains = append([]string(nil), c.OurDomains...)
	n.Evil = append([]netip.Prefix(nil), c.Evil...)
	n.Mailer = append([]string(nil), c.Mailer...)
	n.Backoff = append([]time.Duration(nil), c.Backoff...)
	n.DKIM = nil
	for _, d := range c.DKIM {
		n.DKIM = append(n.DKIM, DKIMSigns{d.Domain, append([]string(nil), d.Selectors...)})
	}
	n.Listen = append([]Listen(nil), c.Listen...)
	n.TLSPolicy = maps.Clone(c.TLSPolicy)
	if c.SendAs != nil {
		n.SendAs = map[string][]string{}
		for u, l := range c.SendAs {
			n.SendAs[u] = append([]string(nil), l...)
		}
	}
	return &n
}

// An Action is a runtime verb (reload, kick, retry, delete, hold, release,
// unwhitelist, exportwhitelist, dkim newkey): something to do rather than a setting. Apply returns the
// actions of a ctl write, in order, for the daemon to carry out.
type Action struct {
	Verb string
	Args []string
	Line int    // the line of the text that asked for it, 1-based
	Text string // that line, for errors (a *LineError)
}

// A LineError reports a bad line. Its text starts with "invalid", which
// 9pfuse maps to EINVAL, and quotes the line.
type LineError struct {
	Source string // file name, or "ctl"
	Line   int    // 1-based
	Text   string
	Err    error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("invalid %s line %d %s: %v", e.Source, e.Line, quote(e.Text), e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// Apply applies the lines of text to a copy of c and returns the copy and
// the actions the lines asked for. source names the text in errors ("ctl"
// or a file name); runtime verbs are refused unless source is "ctl". If any
// line is bad, Apply returns a *LineError for the first and c is unchanged.
func Apply(c *Config, source, text string) (*Config, []Action, error) {
	n := c.Clone()
	var acts []Action
	for i, line := range strings.Split(text, "\n") {
		act, err := n.applyLine(line, source == "ctl")
		if err != nil {
			return c, nil, &LineError{Source: source, Line: i + 1, Text: Redact(strings.TrimRight(line, "\r")), Err: err}
		}
		if act != nil {
			act.Line, act.Text = i+1, strings.TrimRight(line, "\r")
			acts = append(acts, *act)
		}
	}
	return n, acts, nil
}

func (c *Config) applyLine(line string, ctl bool) (*Action, error) {
	w, err := Tokenize(line)
	if err != nil || len(w) == 0 {
		return nil, err
	}
	name, args := strings.ToLower(w[0]), w[1:]
	v := lookup(name)
	if v == nil {
		return nil, fmt.Errorf("unknown verb %s", quote(name))
	}
	if len(args) < v.min || v.max >= 0 && len(args) > v.max {
		return nil, fmt.Errorf("usage: %s %s", v.name, v.usage)
	}
	if v.action || v.actionIf != nil && v.actionIf(args) {
		if !ctl {
			name := v.name
			if !v.action {
				name += " " + strings.ToLower(args[0])
			}
			return nil, fmt.Errorf("%s is a ctl command, not a setting", name)
		}
		if v.check != nil {
			if err := v.check(args); err != nil {
				return nil, err
			}
		}
		return &Action{Verb: v.name, Args: args}, nil
	}
	return nil, v.set(c, args)
}

// Dump renders c as lines of verbs, one setting per line, in the order of
// the verb table. Empty lists are left out.
func (c *Config) Dump() string {
	var b strings.Builder
	for _, v := range verbs {
		var lines [][]string
		switch {
		case v.lines != nil:
			lines = v.lines(c)
		case v.get != nil:
			if args := v.get(c); args != nil {
				lines = [][]string{args}
			}
		}
		for _, args := range lines {
			b.WriteString(v.name)
			for _, a := range args {
				b.WriteByte(' ')
				b.WriteString(Quote(a))
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// MaxFile bounds the configuration file: a configuration is a few
// hundred lines; long lists of networks belong in lib/blocked.
const MaxFile = 1 << 20

// Load builds the effective configuration: Default, then the file (if it
// exists), then the lines in over (the environment and the command-line
// flags, turned into verbs by the caller). The file must be a regular
// file of at most MaxFile bytes (regfile.Read): one replaced by a FIFO or
// a link to /dev/zero fails the start or the reload at once, and is never
// waited on or read without end.
func Load(file string, over []string) (*Config, error) {
	c := Default()
	data, err := regfile.Read(file, MaxFile)
	switch {
	case errors.Is(err, regfile.ErrNotRegular) || errors.Is(err, regfile.ErrTooLarge):
		return nil, fmt.Errorf("invalid %s: %v", file, err)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if c, _, err = Apply(c, file, string(data)); err != nil {
		return nil, err
	}
	c, _, err = Apply(c, "command-line", strings.Join(over, "\n"))
	return c, err
}

// Trusted reports whether ip is in one of our networks.
func (c *Config) Trusted(ip netip.Addr) bool { return inPrefixes(c.OurNets, ip) }

// IsEvil reports whether connections from ip are to be dropped at once.
func (c *Config) IsEvil(ip netip.Addr) bool { return inPrefixes(c.Evil, ip) }

func inPrefixes(l []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range l {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// OurDomain reports whether the domain d (any case, an optional final dot,
// U-labels or A-labels; ourdomains lists A-labels) is one of ours, so that mail to it is delivered here: a name without a
// dot, defaultdomain, hostname, or a name matching an ourdomains pattern
// ("dom" exactly, "*.dom" for dom and every name under it).
func (c *Config) OurDomain(d string) bool {
	d = strings.TrimSuffix(strings.ToLower(d), ".")
	d, err := smtp.ALabel(d) // a U-label domain is ours by its A-label (RFC 6531 §3.2)
	if err != nil {
		return false
	}
	if d == "" || d[0] == '[' { // address literals are the engine's business
		return false
	}
	if !strings.Contains(d, ".") || d == c.DefaultDomain || d == c.Hostname {
		return true
	}
	for _, p := range c.OurDomains {
		if base, ok := strings.CutPrefix(p, "*."); ok {
			if d == base || strings.HasSuffix(d, "."+base) {
				return true
			}
		} else if d == p {
			return true
		}
	}
	return false
}
