package setup

import (
	"context"
	"errors"
	"io/fs"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"smtpfs/grey"
	"smtpfs/grey/redisstore"
	"smtpfs/smtp"
	"smtpfs/smtp/mlog"
	"smtpfs/smtp/queue"
	"smtpfs/smtpd"
	"smtpfs/smtpd/authfail"
	"smtpfs/smtpd/conf"
)

// This file adapts the engines to one another, for both programs: the
// greylist and lib/blocked (package grey) and the DNS resolver (package
// smtp) to the server's seams, and the configuration to the queue's and
// the client's settings.

// A Resolver answers the server's sender and HELO checks through the
// client engine's resolver, asking the DNS server of the resolver setting
// ($SMTPFS_RESOLVER) or else the first of /etc/resolv.conf.
type Resolver struct {
	Config func() *conf.Config

	mu     sync.Mutex
	server string
	res    *smtp.Resolver
}

// DomainExists reports whether domain has an MX, A or AAAA record; a null
// MX says it takes no mail, so as a sender it does not exist.
func (r *Resolver) DomainExists(ctx context.Context, domain string) (bool, error) {
	return r.resolver().DomainExists(ctx, domain)
}

func (r *Resolver) resolver() *smtp.Resolver {
	server := r.Config().Resolver
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.res == nil || server != r.server {
		r.server, r.res = server, smtp.NewResolver(server)
	}
	return r.res
}

// Classifier gives the server lib/blocked's verdicts.
type Classifier struct{ Blocked *grey.Blocked }

// Classify maps grey's actions to the server's verdicts: no line, or an
// allow line, accepts.
func (c Classifier) Classify(ip netip.Addr, sender string) smtpd.Verdict {
	switch c.Blocked.Classify(ip, sender) {
	case grey.Block:
		return smtpd.Block
	case grey.Deny:
		return smtpd.Deny
	case grey.Dial:
		return smtpd.Dial
	case grey.Delay:
		return smtpd.Delay
	}
	return smtpd.Accept
}

// OpenBlocked loads <root>/lib/blocked. A missing file blocks nothing; a
// bad one is an error, as a bad smtpd.conf is, and so is one that is not a
// regular file (CheckRegular).
func OpenBlocked(root string, logger *log.Logger) (*grey.Blocked, error) {
	b := grey.NewBlocked(filepath.Join(root, "lib", "blocked"), logger)
	if err := CheckRegular(b.Path()); err != nil {
		return nil, err
	}
	return b, b.Reload()
}

// GreySettings returns the greylist's settings of the configuration.
func GreySettings(c *conf.Config) grey.Settings {
	return grey.Settings{Min: c.GreyMin, Max: c.GreyMax, Prefix4: c.GreyPrefix4, Prefix6: c.GreyPrefix6,
		MaxTriplets: c.GreyTriplets, PerClient: c.GreyPerClient, PerMessage: c.GreyPerMsg, FailClosed: c.GreyFailClosed}
}

// SessionRedis opens, for the smtpd program, the Redis store greystore
// names, without a local index of the whitelist (one session has no use
// for one: the Check script asks Redis), to be shared by the greylist
// (LazyGreylist.Redis) and the AUTH limiter. Opening connects to
// nothing. It returns nil for the file store, and for a URL it cannot
// use, which it logs: the session then goes on with the files.
func SessionRedis(cfg *conf.Config, logger *log.Logger) *redisstore.Store {
	if cfg.GreyStore == "file" {
		return nil
	}
	s, err := redisstore.Open(cfg.GreyStore, redisstore.Options{Log: logger})
	if err != nil {
		logger.Printf("greystore: %v; using the files of the mail root", err)
		return nil
	}
	return s
}

// RedisAuthLimiter is the Redis store's count of failed AUTH, with
// package authfail's policy.
func RedisAuthLimiter(s *redisstore.Store) smtpd.AuthLimiter {
	return s.AuthLimiter(authfail.Max, authfail.Window, authfail.Lockout)
}

// A LazyGreylist opens the greylist at its first Check: the smtpd program
// serves one session, and most sessions never need the whitelist, whose
// loading takes a while when it is large.
type LazyGreylist struct {
	Root   string
	Config func() *conf.Config
	Log    *log.Logger
	Redis  *redisstore.Store // the store of greystore (SessionRedis); nil: the files

	once sync.Once
	g    *grey.Greylist
}

// Check opens the greylist if need be and asks it. If it cannot be opened,
// the message passes (fail open, as grey does with storage errors) and
// the reason is logged.
func (l *LazyGreylist) Check(local, remote netip.Addr, from string, rcpts []string) bool {
	l.open()
	return l.g == nil || l.g.Check(local, remote, from, rcpts)
}

// open opens the greylist once.
func (l *LazyGreylist) open() {
	l.once.Do(func() {
		var g *grey.Greylist
		var err error
		if l.Redis != nil {
			g = grey.New(l.Redis, l.Log)
		} else {
			g, err = grey.Open(l.Root, l.Log)
		}
		if err == nil {
			err = g.SetSettings(GreySettings(l.Config()))
		}
		if err != nil {
			l.Log.Printf("greylist: %v; letting mail through", err)
			return
		}
		l.g = g
	})
}

// CheckSender is Check keyed by the sender domain (grey.CheckSender).
func (l *LazyGreylist) CheckSender(local, remote netip.Addr, domain, from string, rcpts []string) bool {
	l.open()
	return l.g == nil || l.g.CheckSender(local, remote, domain, from, rcpts)
}

// sweepEvery is how often SweepIfDue expires triplets.
const sweepEvery = time.Hour

// SweepIfDue expires old greylist triplets and the directories they
// leave (grey.Greylist.Expire, with the window of cfg) when the last sweep
// of the mail root, recorded as the modification time of
// <root>/grey/swept, is more than an hour old or never happened. The smtpd
// program has no background sweeper, so it calls this after its session,
// when the client has gone: a mail root served only by smtpd sessions is
// swept as smtpfs sweeps its own. The stamp is written before the sweep,
// so sessions ending meanwhile do not start another; two that race both
// sweep, which is harmless. A store in Redis expires its triplets by
// itself: nothing to sweep.
func SweepIfDue(root string, cfg *conf.Config, logger *log.Logger) {
	if cfg.GreyStore != "file" {
		return
	}
	stamp := filepath.Join(root, "grey", "swept")
	now := time.Now()
	if fi, err := os.Stat(stamp); err == nil && now.Sub(fi.ModTime()) < sweepEvery && !fi.ModTime().After(now) {
		return
	}
	if err := os.WriteFile(stamp, nil, 0600); err != nil {
		if !errors.Is(err, fs.ErrNotExist) { // no grey/: nothing to sweep
			logger.Printf("greylist: sweep: %v", err)
		}
		return
	}
	g := grey.NewGreylist(root, nil, logger)
	if err := g.SetSettings(GreySettings(cfg)); err != nil {
		logger.Printf("greylist: sweep: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if g.Tidy(ctx); ctx.Err() != nil {
		logger.Printf("greylist: sweep cut short after a minute; the next one goes on")
	}
}

// QueueSettings returns the queue's settings of the configuration (minfree
// is the room the queue keeps free). A recipient is local when its domain
// is ours. The user handed to the
// Maildir is the address itself, as the server hands it: the Maildir
// takes the box from the local part (and writes the address in
// Delivered-To: when the message goes to one box only).
func QueueSettings(c *conf.Config) queue.Settings {
	return queue.Settings{
		Backoff:    c.Backoff,
		Lifetime:   c.Lifetime,
		DelayWarn:  c.DelayWarn,
		Deliveries: c.Deliveries,
		SmartHost:  c.SmartHost,
		Hostname:   c.Hostname,
		Domain:     c.DefaultDomain,
		MinFree:    c.MinFree,

		DestConcurrency: c.DestConcurrency,
		DeliveryTimeout: c.DeliveryTimeout,
		SessionMsgs:     c.SessionMsgs,
		SessionIdle:     c.SessionIdle,
		IsLocal: func(addr string) (string, bool) {
			at := strings.LastIndexByte(addr, '@')
			if at < 0 {
				return addr, addr != ""
			}
			return addr, c.OurDomain(addr[at+1:])
		},
	}
}

// NewClient returns the client engine the queue delivers with: EHLO with
// our host name, DNS from the resolver setting, STARTTLS whenever the
// server offers it without insisting on a verifiable certificate (as
// Postfix's "may" level: encryption against passive eavesdropping, never a
// reason to lose mail). $SMTPFS_SMTP_PORT sets the port of MX hosts, for
// tests and unusual networks. The daemon adds the TLS policy of MX
// destinations (TLSPolicy), which decides for them instead.
func NewClient(c *conf.Config, logs *mlog.Log) *smtp.Client {
	return &smtp.Client{
		Hello:    c.Hostname,
		Port:     os.Getenv("SMTPFS_SMTP_PORT"),
		DNS:      smtp.NewResolver(c.Resolver),
		StartTLS: smtp.TryTLS,
		Insecure: true,
		Log:      logs.Logger("smtp"),
		FailLog:  logs.Logger("smtp.fail"),
	}
}

// AuthLimiter returns the count of failed AUTH: in the Redis store rs,
// shared by every host, or with rs nil in the mail root's
// <root>/grey/authfail, which the smtpd program, run once per session,
// and smtpfs on the same root share, so that a guesser is locked out
// whichever of them it calls.
func AuthLimiter(root string, rs *redisstore.Store) smtpd.AuthLimiter {
	if rs != nil {
		return RedisAuthLimiter(rs)
	}
	return authfail.NewFile(filepath.Join(root, "grey", "authfail"))
}
