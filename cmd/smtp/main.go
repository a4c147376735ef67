// Command smtp sends one message by SMTP, as upas smtp does:
//
//	smtp [-aAdfiopst] [-b busted-mx]... [-g gateway] [-h host] [-u user] [-P level] [-D daneresolver] [-R root] [-N notify] [-E ret] [-V envid] [-O] [-T] [.domain] destaddr sender rcpt-list
//
// The message comes on standard input, an upas "From sender date" line
// first if it likes. It is converted as upas converts it (Message-ID, Date,
// From and To added when missing, bang paths to user@domain, bare names
// qualified; -f shows the result) and sent to destaddr, a dial string: a
// domain (its MX hosts, or the domain itself), an address literal
// ([192.0.2.1]), or a host with a port. The exit status is 0 when the
// message was delivered to every recipient (for -p: every recipient was
// accepted), 2 when it should be tried again later, 1 when it failed for
// good; standard error then says why, in upas's words.
//
// Flags, as in upas:
//
//	-a  AUTH PLAIN, LOGIN or CRAM-MD5 with the password of the netrc entry
//	    for destaddr's host ($NETRC, else ~/.netrc); only over TLS unless
//	    -i; implies -s
//	-A  send NOOP at once to provoke a greeting from a server that waits
//	-b  never use this MX host (repeatable)
//	-d  the conversation on standard error, AUTH payloads masked, the
//	    message body left out
//	-f  write the converted message on standard output as it would go
//	    after DATA (CRLF line ends, dot-stuffed, no final dot), and send
//	    nothing
//	-g  dial this gateway when nothing else can be dialled
//	-h  our host name (EHLO, Message-ID, bare names); default the system's
//	-i  with -a, authenticate without TLS too
//	-o  with -s or -t, accept a certificate that cannot be verified
//	-p  ping: ask for each recipient, then QUIT without sending
//	-s  STARTTLS when the server offers it; the certificate must be pinned
//	    in root/lib/tls/smtp or verify against the system's CAs
//	-t  TLS from the first byte (port 465)
//	-u  the login to look for in netrc; default the entry's own
//	-R  the mail root, for lib/tls/smtp and the logs log/smtp and
//	    log/smtp.fail (written only if the root exists); default ./mail
//
// and, beyond upas, the TLS policy the queue follows (smtp/tlspolicy):
//
//	-P  the TLS policy of destaddr, when it is a domain: dane, mta-sts,
//	    verify, encrypt, may, none, or default (what the queue gives a
//	    domain without a tlspolicy line: DANE, else MTA-STS, else may);
//	    it decides STARTTLS and the certificate check instead of -s, -o
//	    and the pins; MTA-STS policies are cached in root/lib/mta-sts.
//	    A level other than default for a destaddr with a port or an
//	    address literal is an error: the policy cannot apply there
//	-D  the validating resolver (ip:port) whose AD bit DANE believes;
//	    implies -P default; without it there is no DANE
//
// With -P and -p, the policy found is written on standard output first:
// a line for the domain, one per MX host ("tls policy: ..."). The
// environment settings of smtpfs(8) for tests, $SMTPFS_TLS_CA and
// $SMTPFS_MTASTS_PORT, apply.
//
// For DSN (RFC 3461), sent to a server that offers it (sendmail's
// letters where upas leaves them free):
//
//	-N  NOTIFY for every recipient: NEVER, or a comma list of SUCCESS,
//	    FAILURE and DELAY
//	-E  RET: FULL or HDRS, what a failure report returns of the message
//	-V  ENVID: an identifier the reports quote back, printable ASCII, at
//	    most 100 characters
//	-O  ORCPT for every recipient: its address as converted,
//	    rfc822;user@domain (utf-8; when it is not ASCII)
//
// and REQUIRETLS (RFC 8689):
//
//	-T  REQUIRETLS: send only to an MX host the TLS policy authenticates,
//	    over verified TLS, to a server that offers REQUIRETLS, else fail
//	    for good (5.7.30); needs -P or -D, without which it always fails
//
// $SMTPFS_RESOLVER (host:port) names the DNS server, else /etc/resolv.conf.
// $SMTPFS_SMTP_PORT sets the port of MX hosts (default 25), for tests and
// for sites whose mail exchangers listen elsewhere.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"smtpfs/cmd/internal/arg"
	"smtpfs/cmd/internal/setup"
	"smtpfs/smtp"
	"smtpfs/smtp/mlog"
	"smtpfs/smtp/queue"
	"smtpfs/smtp/tlspolicy"
	"smtpfs/smtpd/conf"
)

const usage = "smtp [-aAdfiopst] [-b busted-mx]... [-g gateway] [-h host] [-u user] [-P level] [-D daneresolver] [-R root] [-N notify] [-E ret] [-V envid] [-O] [-T] [.domain] destaddr sender rcpt-list"

// Exit statuses.
const (
	exitOK        = 0
	exitPermanent = 1
	exitRetry     = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// flags are the command line.
type flags struct {
	auth, provoke, debug, filter, insecureAuth, insecure, ping, starttls, implicit bool

	busted              []string
	gateway, host, user string
	policy, daneRes     string // -P, -D
	root                string
	notify, ret, envid  string // DSN's NOTIFY, RET and ENVID (-N, -E, -V)
	orcpt, requireTLS   bool   // -O: ORCPT for each recipient; -T: REQUIRETLS
	domain              string // .domain, without the dot
	dest, sender        string
	rcpts               []string
}

func parse(args []string) (*flags, error) {
	f := &flags{root: "mail"}
	rest, err := argSet(f).Parse(args)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 && len(rest[0]) > 1 && rest[0][0] == '.' {
		f.domain, rest = rest[0][1:], rest[1:]
	}
	if len(rest) < 3 {
		return nil, fmt.Errorf("missing arguments")
	}
	f.dest, f.sender, f.rcpts = rest[0], rest[1], rest[2:]
	f.notify, f.ret = strings.ToUpper(f.notify), strings.ToUpper(f.ret)
	if err := queue.CheckRet(f.ret); err != nil {
		return nil, fmt.Errorf("-E: %v", err)
	}
	if err := queue.CheckEnvID(f.envid); err != nil {
		return nil, fmt.Errorf("-V: %v", err)
	}
	if err := queue.CheckRcptParams(smtp.RcptParams{Notify: f.notify}); err != nil {
		return nil, fmt.Errorf("-N: %v", err)
	}
	return f, nil
}

// mail is the envelope with the DSN parameters and REQUIRETLS of the
// flags. ORCPT (RFC 3461 §4.2) is each recipient as converted, the
// address the sender meant in RFC 822 form: type rfc822, or utf-8 for a
// non-ASCII one (RFC 6533 §3); the engine writes it as xtext.
func (f *flags) mail(from string, rcpts []string) smtp.Mail {
	m := smtp.Mail{From: from, Rcpts: rcpts, Params: smtp.Params{Ret: f.ret, EnvID: f.envid, RequireTLS: f.requireTLS}}
	if f.notify == "" && !f.orcpt {
		return m
	}
	for _, r := range rcpts {
		p := smtp.RcptParams{Notify: f.notify}
		if f.orcpt {
			p.ORcpt = "rfc822;" + r
			if !isASCII(r) {
				p.ORcpt = "utf-8;" + r
			}
		}
		m.Rcpt = append(m.Rcpt, p)
	}
	return m
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// argSet is smtp's table of flags: upas smtp's, and ours (-R, -P, -D,
// -N, -E, -V, -O, -T).
func argSet(f *flags) *arg.Set {
	set := arg.New(usage)
	for c, p := range map[byte]*bool{'a': &f.auth, 'A': &f.provoke, 'd': &f.debug, 'f': &f.filter,
		'i': &f.insecureAuth, 'o': &f.insecure, 'p': &f.ping, 's': &f.starttls, 't': &f.implicit,
		'O': &f.orcpt, 'T': &f.requireTLS} {
		set.Bool(c, p)
	}
	set.List('b', &f.busted)
	set.String('g', &f.gateway)
	set.String('h', &f.host)
	set.String('u', &f.user)
	set.String('R', &f.root)
	set.String('P', &f.policy)
	set.String('D', &f.daneRes)
	set.String('N', &f.notify)
	set.String('E', &f.ret)
	set.String('V', &f.envid)
	return set
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f, err := parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "smtp: %v\nusage: %s\n", err, usage)
		return exitPermanent
	}
	ds, err := smtp.ParseDialString(f.dest)
	if err != nil {
		return failed(stderr, err)
	}
	host := f.host
	if host == "" {
		host, _ = os.Hostname()
	}
	ad := smtp.Addresser{HostDomain: smtp.Domainify(host, f.domain), Domain: f.domain}
	from := ad.Convert(f.sender, "")
	var rcpts []string
	for _, r := range f.rcpts {
		rcpts = append(rcpts, ad.Convert(r, rcptDomain(ds)))
	}
	var msg io.Reader
	if !f.ping || f.filter { // a ping reads no message
		msg, err = smtp.Convert(stdin, smtp.Conversion{Addresser: ad, From: from, Rcpts: rcpts})
		if err != nil {
			return failed(stderr, fmt.Errorf("reading the message: %v", err))
		}
	}
	if f.filter {
		if err := smtp.WriteData(stdout, msg); err != nil {
			fmt.Fprintf(stderr, "smtp: %v\n", err)
			return exitPermanent
		}
		return exitOK
	}
	c, err := f.client(ds, ad.HostDomain, stderr)
	if err != nil {
		return failed(stderr, err)
	}
	var rcptErrs []error
	if f.ping {
		if lines, err := c.DescribePolicy(ctx, f.dest); err == nil {
			for _, l := range lines {
				fmt.Fprintf(stdout, "tls policy: %s\n", l)
			}
		}
		rcptErrs, err = c.Ping(ctx, f.dest, from, rcpts)
	} else {
		m := f.mail(from, rcpts)
		m.Params.SMTPUTF8, msg = needsUTF8(msg, from, rcpts)
		rcptErrs, err = c.Send(ctx, f.dest, m, msg)
	}
	return report(stderr, time.Now(), f.dest, rcpts, rcptErrs, err, f.ping)
}

// needsUTF8 reports whether the message needs SMTPUTF8 (UTF-8 in its
// header or addresses: smtp.NeedsSMTPUTF8), looking at its first 64 KB,
// and returns the message to send, unread.
func needsUTF8(msg io.Reader, from string, rcpts []string) (bool, io.Reader) {
	br := bufio.NewReaderSize(msg, 64<<10)
	head, _ := br.Peek(64 << 10) // shorter at the end of the message; an error comes back at the reading
	return smtp.NeedsSMTPUTF8(head, append([]string{from}, rcpts...)...), br
}

// rcptDomain is the domain of bare recipient names: the destination's
// host (upas used the owner name of the first DNS answer, the same in
// practice), in brackets when it is an address.
func rcptDomain(ds smtp.DialString) string {
	return cmp.Or(smtp.AddressLiteral(ds.Host), ds.Host)
}

// client configures the engine from the flags, the environment and the
// mail root.
func (f *flags) client(ds smtp.DialString, hostdomain string, stderr io.Writer) (*smtp.Client, error) {
	c := &smtp.Client{
		Hello:       hostdomain,
		Port:        os.Getenv("SMTPFS_SMTP_PORT"),
		DNS:         smtp.NewResolver(os.Getenv("SMTPFS_RESOLVER")),
		Gateway:     f.gateway,
		Busted:      f.busted,
		ImplicitTLS: f.implicit,
		Insecure:    f.insecure,
		Provoke:     f.provoke,
	}
	if f.starttls || f.auth {
		c.StartTLS = smtp.TryTLS
	}
	if f.debug {
		c.Transcript = stderr
	}
	pins, err := smtp.LoadPins(filepath.Join(f.root, "lib", "tls", "smtp"))
	if err != nil {
		return nil, err
	}
	c.Pins = pins
	if fi, err := os.Stat(f.root); err == nil && fi.IsDir() {
		l := mlog.New(filepath.Join(f.root, "log"), nil)
		c.Log, c.FailLog = l.Logger("smtp"), l.Logger("smtp.fail")
	}
	if err := f.tlsPolicy(c, ds); err != nil {
		return nil, err
	}
	if f.auth {
		a, err := netrcAuth(ds.Host, f.user)
		if err != nil {
			return nil, err
		}
		c.Auth, c.AuthWithoutTLS = a, f.insecureAuth
	}
	return c, nil
}

// netrcAuth finds the credentials for machine in $NETRC or ~/.netrc.
func netrcAuth(machine, user string) (*smtp.Auth, error) {
	file := os.Getenv("NETRC")
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		file = filepath.Join(home, ".netrc")
	}
	entries, err := smtp.ReadNetrc(file)
	if err != nil {
		return nil, err
	}
	e, ok := smtp.LookupNetrc(entries, machine, user)
	if !ok || e.Password == "" {
		return nil, fmt.Errorf("no password for machine %s in %s", machine, file)
	}
	return &smtp.Auth{User: cmp.Or(e.Login, user, os.Getenv("USER")), Password: e.Password}, nil
}

// tlsPolicy gives the client the policy engine of -P and -D, as the
// queue's (setup.TLSPolicy) but for the one destination; its MTA-STS
// cache is root/lib/mta-sts only if the root exists.
func (f *flags) tlsPolicy(c *smtp.Client, ds smtp.DialString) error {
	if f.policy == "" && f.daneRes == "" {
		return nil
	}
	cfg := conf.Default()
	cfg.Resolver = os.Getenv("SMTPFS_RESOLVER")
	if f.daneRes != "" {
		var err error
		if cfg, _, err = conf.Apply(cfg, "-D", "daneresolver "+conf.Quote(f.daneRes)); err != nil {
			return errors.Unwrap(err)
		}
	}
	if f.policy != "" && f.policy != "default" {
		l, err := tlspolicy.ParseLevel(f.policy)
		if err != nil {
			return fmt.Errorf("-P: %v", err)
		}
		// The policy applies to a domain's MX hosts; a level asked
		// for a destination it cannot apply to is refused rather than
		// dropped, so that -P verify never sends in the clear.
		if ds.Port != "" || smtp.AddressLiteral(ds.Host) != "" {
			return fmt.Errorf("-P %s: %s is not a domain routed by MX; the TLS policy does not apply (use -s)", f.policy, f.dest)
		}
		cfg.TLSPolicy = map[string]tlspolicy.Level{strings.ToLower(strings.TrimSuffix(ds.Host, ".")): l}
	}
	e, err := setup.TLSPolicy(cfg, f.root, c.Log)
	if fi, serr := os.Stat(f.root); serr != nil || !fi.IsDir() {
		e.CacheDir = ""
	}
	c.Policy = e
	return err
}
