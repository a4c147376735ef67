package setup

import (
	"context"
	"io"
	"log"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"

	"smtpfs/smtp/mailauth"
	"smtpfs/smtpd/conf"
)

// Mail authentication (smtp/mailauth) plugged into the server and the
// queue: the checker of what arrives, asking the DNS server of the
// resolver setting through a cache, and the signer of what leaves, with
// the keys of lib/dkim that the dkim lines choose.

// An AuthChecker is the server's MailAuth: a mailauth.Checker asking the
// DNS server of the resolver setting ($SMTPFS_RESOLVER), else the first
// of /etc/resolv.conf, as the sender check and the queue's client do,
// through a Cache that keeps answers for their TTL. A change of resolver
// or host name makes a new checker and an empty cache. Each lookup waits
// 5 s at most (two tries), an SPF check 20 s in all, the DKIM and DMARC
// lookups of a message as long.
type AuthChecker struct {
	Config func() *conf.Config

	mu     sync.Mutex
	server string
	host   string
	c      *mailauth.Checker
	cache  *mailauth.Cache
}

func (a *AuthChecker) checker() *mailauth.Checker {
	cfg := a.Config()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.c == nil || cfg.Resolver != a.server || cfg.Hostname != a.host {
		a.server, a.host = cfg.Resolver, cfg.Hostname
		a.cache = mailauth.NewCache(mailauth.NewDNS(cfg.Resolver), 0)
		a.c = &mailauth.Checker{Resolver: a.cache, Hostname: cfg.Hostname}
	}
	return a.c
}

// CheckSPF implements smtpd.MailAuth.
func (a *AuthChecker) CheckSPF(ctx context.Context, ip netip.Addr, helo, mailfrom string) mailauth.SPFResult {
	return a.checker().CheckSPF(ctx, ip, helo, mailfrom)
}

// VerifyDKIM implements smtpd.MailAuth.
func (a *AuthChecker) VerifyDKIM(ctx context.Context, msg io.Reader) []mailauth.DKIMResult {
	return a.checker().VerifyDKIM(ctx, msg)
}

// EvalDMARC implements smtpd.MailAuth.
func (a *AuthChecker) EvalDMARC(ctx context.Context, header []byte, spf mailauth.SPFResult, dkim []mailauth.DKIMResult) mailauth.DMARCResult {
	return a.checker().EvalDMARC(ctx, header, spf, dkim)
}

// OpenKeys opens the DKIM keys of the mail root, <root>/lib/dkim, and
// chooses those that cfg's dkim lines name. A key that cannot be read, or
// that others may read, or a dkim line naming a selector without a key, is
// an error, as a bad smtpd.conf is.
func OpenKeys(root string, cfg *conf.Config) (*mailauth.KeyStore, error) {
	ks, err := mailauth.OpenKeyStore(filepath.Join(root, "lib", "dkim"))
	if err != nil {
		return nil, err
	}
	if err := ks.Select(cfg.DKIMSelection()); err != nil {
		return nil, err
	}
	return ks, nil
}

// A Signer signs outgoing mail, for the server (what trusted clients
// queue) and the queue (the queue file, DSNs): with the keys chosen for the
// message's From domain, when the dkim lines choose any, and logs each
// message it signs, by domain and selector.
type Signer struct {
	Keys   *mailauth.KeyStore
	Config func() *conf.Config
	Log    *log.Logger
}

// Sign implements smtpd.Signer and queue.Signer.
func (s *Signer) Sign(msg io.Reader) ([]byte, error) {
	if len(s.Config().DKIM) == 0 { // nothing signs: spare reading the message
		return nil, nil
	}
	sigs, err := (&mailauth.Signer{Keys: s.Keys}).Sign(msg)
	if err == nil && len(sigs) > 0 && s.Log != nil {
		s.Log.Printf("dkim: signed %s", signedBy(sigs))
	}
	return sigs, err
}

// signedBy describes DKIM-Signature fields for the log: the domain,
// selector and algorithm of each ("d=example.org s=s2026 a=rsa-sha256,
// ...").
func signedBy(fields []byte) string {
	var out []string
	for _, f := range strings.Split(string(fields), "DKIM-Signature:")[1:] {
		f = strings.NewReplacer("\r", "", "\n", "", "\t", "", " ", "").Replace(f)
		tags := map[string]string{}
		for _, tag := range strings.Split(f, ";") {
			if k, v, ok := strings.Cut(tag, "="); ok {
				tags[k] = v
			}
		}
		out = append(out, "d="+tags["d"]+" s="+tags["s"]+" a="+tags["a"])
	}
	return strings.Join(out, ", ")
}
