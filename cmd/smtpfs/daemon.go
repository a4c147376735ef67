package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"smtpfs/cmd/internal/setup"
	"smtpfs/fs"
	"smtpfs/grey"
	"smtpfs/smtp"
	"smtpfs/smtp/mailauth"
	"smtpfs/smtp/mlog"
	"smtpfs/smtp/queue"
	"smtpfs/smtpd"
	"smtpfs/smtpd/conf"
)

// A daemon is the running smtpfs: the live configuration and secrets, and
// the engines that follow them: the SMTP server, the greylist and
// lib/blocked, the queue and its runner, the client it delivers with, and
// the 9P tree that shows and steers them all.
type daemon struct {
	root     string
	confFile string
	verbs    []string // from the environment and the flags: applied after the file, so they win
	hub      *fs.Log  // every log line, for the 9P log file
	logs     *mlog.Log
	log      *log.Logger // facility smtpd

	confNamed bool // confFile is -C's: it must be there at each reload too

	srv     *smtpd.Server
	grey    *grey.Greylist
	stores  stores // the greylist's: the files, and Redis with greystore redis://
	blocked *grey.Blocked
	queue   *queue.Queue
	client  atomic.Pointer[smtp.Client]
	tlsStat smtp.PolicyStats // the TLS policy's counters, across clients
	tree    *fs.Server
	keys    *mailauth.KeyStore // lib/dkim, chosen by the dkim lines

	// actions are the runtime ctl verbs, by verb.
	actions map[string]action

	debug   atomic.Bool // cfg.Debug, for the log tee, which may not take mu
	started atomic.Bool // the listeners were opened: changes of listen open and close them

	beforeChange func() // test hook: called as changed starts

	// cmu serialises the changes of configuration, a ctl write's settings
	// or a reload, from taking the new configuration to handing it to the
	// engines: otherwise two of them could reach the greylist, the queue,
	// the client and the tree in the other order, and leave them with the
	// older settings while ctl shows the newer. It is taken before mu.
	cmu sync.Mutex

	mu      sync.Mutex
	cfg     *conf.Config
	secrets *smtpd.Secrets

	lmu       sync.Mutex      // guards listeners
	listeners []*smtpListener // the open SMTP listeners, in the order opened
}

// newDaemon loads the configuration, secrets, whitelist, lib/blocked and
// the queue, and builds the engines and the tree; nothing listens yet.
// The log goes to <root>/log, to the 9P log file, and to stderr while
// debug is on.
func newDaemon(root, confFile string, verbs []string, stderr io.Writer) (*daemon, error) {
	cfg, sec, err := setup.Load(root, confFile, verbs)
	if err != nil {
		return nil, err
	}
	cfg = withListen(cfg)
	d := &daemon{root: root, confFile: confFile, verbs: verbs, cfg: cfg, secrets: sec, hub: fs.NewLog(0)}
	d.debug.Store(cfg.Debug)
	d.logs = mlog.New(filepath.Join(root, "log"), io.MultiWriter(d.hub, &debugTee{d: d, w: stderr}))
	d.log = d.logs.Logger("smtpd")
	if err := d.openEngines(cfg); err != nil {
		d.logs.Close()
		return nil, err
	}
	d.actions = map[string]action{
		"reload":      {run: func([]string) error { return d.Reload() }},
		"kick":        {run: func([]string) error { d.queue.Kick(); return nil }},
		"retry":       {d.queued, func(ids []string) error { return queueError(d.queue.Retry(ids...)) }},
		"delete":      {d.queued, func(ids []string) error { return queueError(d.queue.Delete(ids...)) }},
		"hold":        {d.queued, func(ids []string) error { return queueError(d.queue.Hold(ids...)) }},
		"release":     {d.queued, func(ids []string) error { return queueError(d.queue.Release(ids...)) }},
		"unwhitelist": {d.whitelisted, d.unwhitelist},
		"dkim":        {run: d.newKey}, // dkim newkey: the one action of the verb

		"exportwhitelist": {run: d.exportWhitelist},
	}
	d.tree = fs.New(fs.Config{
		Control:    control{d},
		Whitelist:  whitelistFile{d.grey},
		Blocked:    blockedFile{d.blocked},
		Queue:      queueFile{d.queue},
		Stats:      d,
		Version:    version,
		DKIM:       d.keys,
		Log:        d.hub,
		Logger:     redacting(d.logs.Logger("9p")),
		MaxMessage: cfg.MaxSize,
	})
	return d, nil
}

// openEngines makes the engines of the daemon for the configuration cfg.
func (d *daemon) openEngines(cfg *conf.Config) error {
	var err error
	if d.blocked, err = setup.OpenBlocked(d.root, d.log); err != nil {
		return err
	}
	if err := d.openStores(); err != nil {
		return err
	}
	if err := d.grey.SetSettings(setup.GreySettings(cfg)); err != nil {
		return err
	}
	if d.keys, err = setup.OpenKeys(d.root, cfg); err != nil {
		return err
	}
	maildir := smtpd.NewMaildir(filepath.Join(d.root, "box"))
	maildir.MkBox = func() bool { return d.Config().MkBox }
	d.client.Store(d.newClient(cfg))
	d.queue, err = queue.Open(filepath.Join(d.root, "queue"), setup.QueueSettings(cfg),
		deliverer{&d.client}, maildir, d.logs.Logger("runq"))
	if err != nil {
		return err
	}
	d.queue.SetSigner(&setup.Signer{Keys: d.keys, Config: d.Config, Log: d.logs.Logger("runq")})
	d.srv = &smtpd.Server{
		Root:       d.root,
		Config:     d.Config,
		Secrets:    d.Secrets,
		Log:        d.log,
		Queue:      d.queue,
		Greylister: d.grey,
		Classifier: setup.Classifier{Blocked: d.blocked},
		Resolver:   &setup.Resolver{Config: d.Config},
		Maildir:    maildir,
		MailAuth:   &setup.AuthChecker{Config: d.Config},
		Signer:     &setup.Signer{Keys: d.keys, Config: d.Config, Log: d.log},
	}
	d.srv.AuthLimiter = &d.stores.auth // the store's of the moment
	d.useStore(cfg)
	return nil
}

// run runs the queue and the greylist's sweeper until ctx is done.
func (d *daemon) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := d.queue.Run(ctx); err != nil && ctx.Err() == nil {
			d.log.Printf("queue runner: %v", err)
		}
	}()
	go func() {
		defer wg.Done()
		d.grey.Sweep(ctx, time.Hour)
	}()
	wg.Wait()
}

// Config returns the live configuration; the caller must not change it.
func (d *daemon) Config() *conf.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Secrets returns the AUTH users of lib/secrets.
func (d *daemon) Secrets() *smtpd.Secrets {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.secrets
}

// ConfigText returns the effective configuration as ctl lines, for
// reading the 9P ctl file.
func (d *daemon) ConfigText() string { return d.Config().Dump() }

// An action is a runtime ctl verb: check says whether its arguments name
// things that are there (nil: always), and run does it.
type action struct {
	check func(args []string) error
	run   func(args []string) error
}

// Ctl applies the lines of text written to ctl, all or none: a bad line
// fails the write with a *conf.LineError naming it, and changes nothing.
// That holds for the actions too: an id that is not queued (`delete
// nosuchid`), or an entry that is not in the whitelist, fails the write
// before any setting is changed. The actions (reload, kick, ...) run after
// the settings, in order; reload builds the configuration again from the
// file and the flags, so it undoes the settings of earlier ctl writes. An
// action that fails all the same (the message was delivered between the
// check and the action) fails the write, after the settings took effect.
// The 9P tree logs each line that took effect, and each error.
func (d *daemon) Ctl(text string) error {
	acts, err := d.ctlSettings(text)
	if err != nil {
		return err
	}
	for _, a := range acts {
		if err := d.actions[a.Verb].run(a.Args); err != nil {
			return &conf.LineError{Source: "ctl", Line: a.Line, Text: a.Text, Err: err}
		}
	}
	return nil
}

// ctlSettings applies the settings of a ctl write, once its actions are
// checked, and returns the actions.
//
// Every new session takes mu (Config), so mu is held for nothing but the
// swap of the configuration: the write is applied, and the files its
// verbs name are read (tlscert), under cmu alone, which only other
// changes of configuration wait for. cmu keeps d.cfg from changing
// meanwhile. The reading itself is bounded (conf reads through regfile):
// a FIFO, /dev/zero or a huge file fails the write at once.
func (d *daemon) ctlSettings(text string) ([]conf.Action, error) {
	d.cmu.Lock()
	defer d.cmu.Unlock()
	old := d.Config()
	cfg, acts, err := conf.Apply(old, "ctl", text)
	if err == nil {
		err = cfg.CheckListen()
	}
	if err == nil {
		cfg, err = withListen(cfg), d.checkActions(acts)
	}
	if err == nil && !slices.EqualFunc(cfg.DKIM, d.cfg.DKIM, sameSigns) {
		err = d.selectKeys(cfg, text)
	}
	if err != nil {
		return nil, err
	}
	changed := cfg.Dump() != old.Dump()
	d.mu.Lock()
	d.cfg = cfg
	d.mu.Unlock()
	if changed {
		d.changed(cfg)
	}
	return acts, nil
}

// checkActions checks the arguments of acts.
func (d *daemon) checkActions(acts []conf.Action) error {
	for _, a := range acts {
		if check := d.actions[a.Verb].check; check != nil {
			if err := check(a.Args); err != nil {
				return &conf.LineError{Source: "ctl", Line: a.Line, Text: a.Text, Err: err}
			}
		}
	}
	return nil
}

// queued checks that each id is queued ("all" always is).
func (d *daemon) queued(ids []string) error {
	in := map[string]bool{"all": true}
	for _, it := range d.queue.List() {
		in[it.ID] = true
	}
	for _, id := range ids {
		if !in[id] {
			return fmt.Errorf("%w: %s", fs.ErrNotFound, id)
		}
	}
	return nil
}

// whitelisted checks that each argument is an entry of the whitelist,
// exactly (192.0.2.0/24 is not 192.0.2.7).
func (d *daemon) whitelisted(args []string) error {
	ps, err := prefixes(args)
	if err != nil {
		return err
	}
	text, err := d.grey.Whitelist().Bytes()
	if err != nil {
		return storeError(err)
	}
	in := map[netip.Prefix]bool{} // of those asked for
	for _, p := range ps {
		in[p] = false
	}
	for line := range bytes.Lines(text) {
		if f := bytes.Fields(line); len(f) > 0 {
			if p, err := grey.ParsePrefix(string(f[0])); err == nil {
				if _, asked := in[p]; asked {
					in[p] = true
				}
			}
		}
	}
	for i, p := range ps {
		if !in[p] {
			return fmt.Errorf("%w: %s", fs.ErrNotFound, args[i])
		}
	}
	return nil
}

// unwhitelist removes whitelist entries (the ctl verb): each argument
// must match an entry exactly.
func (d *daemon) unwhitelist(args []string) error {
	ps, err := prefixes(args)
	if err != nil {
		return err
	}
	n, err := d.grey.Whitelist().Remove(ps...)
	switch {
	case err != nil:
		return storeError(err)
	case n == 0:
		return fmt.Errorf("%w: %s", fs.ErrNotFound, strings.Join(args, " "))
	}
	return nil
}

// storeError is the error of a whitelist that could not be read or
// written (a file store's file, Redis down): the daemon could not do it,
// whatever the line asked (EIO under 9pfuse, fs.ErrIO).
func storeError(err error) error {
	if err == nil || errors.Is(err, fs.ErrIO) {
		return err
	}
	return fmt.Errorf("%w: whitelist: %v", fs.ErrIO, err)
}

// queueError tells the tree that a queue action failed on an id that
// was queued when the line was checked, and no longer is (delivered
// meanwhile): the queue's "not found: id" (ENOENT, fs.ErrNotFound).
func queueError(err error) error {
	if err != nil && strings.HasPrefix(err.Error(), "not found") {
		return fs.WithKind(err, fs.ErrNotFound)
	}
	return err
}

func sameSigns(a, b conf.DKIMSigns) bool {
	return a.Domain == b.Domain && slices.Equal(a.Selectors, b.Selectors)
}

// selectKeys chooses the DKIM keys that sign, as the dkim lines of cfg,
// the configuration a ctl write of text makes, say. If one names a
// selector without a key, the write fails naming the first line whose
// choice fails, and the keys chosen before still sign.
func (d *daemon) selectKeys(cfg *conf.Config, text string) error {
	err := d.keys.Select(cfg.DKIMSelection())
	if err == nil {
		return nil
	}
	lines := strings.Split(text, "\n")
	for i := range lines {
		part, _, perr := conf.Apply(d.cfg, "ctl", strings.Join(lines[:i+1], "\n"))
		if perr != nil {
			continue
		}
		if e := d.keys.Select(part.DKIMSelection()); e != nil {
			err = &conf.LineError{Source: "ctl", Line: i + 1, Text: strings.TrimRight(lines[i], "\r"),
				Err: errors.New(strings.TrimPrefix(e.Error(), "invalid "))}
			break
		}
	}
	d.keys.Select(d.cfg.DKIMSelection())
	return err
}

// newKey is "dkim newkey domain selector [rsa|ed25519]": it makes a key
// in lib/dkim, which signs once a dkim line chooses it, and logs the
// record to publish first.
func (d *daemon) newKey(args []string) error {
	dom, sel, alg := strings.TrimSuffix(strings.ToLower(args[1]), "."), strings.ToLower(args[2]), "rsa" // as conf's checkDomain
	if len(args) == 4 {
		alg = args[3]
	}
	k, err := d.keys.NewKey(dom, sel, alg)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "invalid ") { // lib/dkim could not be written: EIO
			err = fmt.Errorf("%w: dkim newkey: %v", fs.ErrIO, err)
		}
		return err
	}
	d.log.Printf("dkim: new %s key lib/dkim/%s/%s.key; publish its record (cat dkim/%s), then sign with it: dkim %s %s", k.Algorithm, dom, sel, dom, dom, sel)
	for _, l := range strings.Split(d.keys.DNSRecords(dom), "\n") {
		if strings.HasPrefix(l, sel+"._domainkey.") {
			d.log.Printf("dkim: %s", l)
		}
	}
	return nil
}

// prefixes parses whitelist entries, as ctl's unwhitelist names them: in
// the whitelist's own grammar, which clears host bits (192.0.2.7/24 is
// the entry 192.0.2.0/24).
func prefixes(args []string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for _, a := range args {
		p, err := grey.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("invalid address %s: %v", a, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Reload builds the configuration again from smtpd.conf and the flags, and
// re-reads lib/secrets, lib/blocked, lib/dkim and the whitelist, and reopens the log
// files (SIGHUP, ctl reload). A bad file keeps the old configuration, and
// the error says why; so does one that is not a regular file (a FIFO
// would hang the reload, and every ctl write after it).
func (d *daemon) Reload() error {
	d.cmu.Lock()
	defer d.cmu.Unlock()
	var (
		cfg *conf.Config
		sec *smtpd.Secrets
		err error
	)
	if d.confNamed {
		err = setup.NamedConf(d.confFile)
	}
	if err == nil {
		cfg, sec, err = setup.Load(d.root, d.confFile, d.verbs)
	}
	if err == nil {
		cfg = withListen(cfg)
		err = setup.CheckRegular(d.blocked.Path())
	}
	if err == nil {
		err = d.blocked.Reload()
	}
	if err == nil {
		err = d.keys.Reload()
	}
	if err == nil {
		err = d.keys.Select(cfg.DKIMSelection())
	}
	if err != nil {
		d.log.Printf("reload: %v; keeping the old configuration", err)
		return err
	}
	// The file store opens the whitelist as a regular file only (a FIFO
	// there is refused, not waited on); a shared store has no file.
	if err := d.grey.Whitelist().Reload(); err != nil {
		d.log.Printf("reload: whitelist: %v", err)
	}
	d.logs.Reopen()
	d.mu.Lock()
	d.cfg, d.secrets = cfg, sec
	d.mu.Unlock()
	d.changed(cfg)
	d.log.Printf("reloaded %s, lib/secrets (%d users), lib/blocked, lib/dkim and the whitelist", d.confFile, sec.Len())
	return nil
}

// changed hands a new configuration to the engines that keep their own
// settings.
func (d *daemon) changed(cfg *conf.Config) {
	if d.beforeChange != nil {
		d.beforeChange()
	}
	d.debug.Store(cfg.Debug)
	if err := d.grey.SetSettings(setup.GreySettings(cfg)); err != nil {
		d.log.Printf("greylist settings: %v", err)
	}
	d.useStore(cfg)
	// The client first: SetSettings ends the reuse of the sessions
	// opened before, and those opened after it must use the new one.
	d.client.Store(d.newClient(cfg))
	d.queue.SetSettings(setup.QueueSettings(cfg))
	d.tree.SetMaxMessage(cfg.MaxSize)
	if d.started.Load() {
		if _, err := d.syncListeners(cfg); err != nil {
			d.log.Printf("%v", err)
		}
	}
}

// Stats returns the counters of the server and the queue, for the 9P
// stats file.
func (d *daemon) Stats() []fs.Stat {
	var st []fs.Stat
	for _, s := range d.srv.Stats.Values() {
		st = append(st, fs.Stat{Name: s.Name, Value: s.Value})
	}
	st = append(st, d.listenerStats()...)
	q := d.queue.Stats()
	for _, s := range []struct {
		name string
		v    int64
	}{
		{"queue.length", int64(q.Length)}, {"queue.rcpts", int64(q.Rcpts)}, {"queue.held", int64(q.Held)},
		{"queue.active", int64(q.Active)}, {"queue.queued", q.Queued}, {"queue.delivered", q.Delivered},
		{"queue.deferred", q.Deferred}, {"queue.bounced", q.Bounced}, {"queue.dsns", q.DSNs},
		{"queue.deleted", q.Deleted}, {"queue.damaged", q.Damaged},
		{"whitelist.entries", int64(d.grey.Whitelist().Len())},
	} {
		st = append(st, fs.Stat{Name: s.name, Value: s.v})
	}
	for _, c := range d.srv.AuthStats.Snapshot() {
		st = append(st, fs.Stat{Name: c.Name, Value: c.Value})
	}
	for _, s := range d.tlsStat.Values() {
		st = append(st, fs.Stat{Name: s.Name, Value: s.Value})
	}
	return append(st, d.storeStats()...)
}

// newClient is the queue's client for cfg, with its TLS policy
// (setup.TLSPolicy) and the daemon's counters of it.
func (d *daemon) newClient(cfg *conf.Config) *smtp.Client {
	c := setup.NewClient(cfg, d.logs)
	p, err := setup.TLSPolicy(cfg, d.root, d.logs.Logger("smtp"))
	if err != nil {
		d.log.Printf("tls policy: %v", err)
	}
	c.Policy, c.PolicyStats = p, &d.tlsStat
	return c
}

// close closes what newDaemon opened, after run has returned.
func (d *daemon) close() {
	d.tree.Close()
	d.closeStores()
	if err := d.queue.Close(); err != nil {
		d.log.Printf("closing the queue: %v", err)
	}
	d.logs.Close()
}

// A deliverer delivers through the client of the moment: a change of
// configuration makes a new client, and deliveries under way finish with
// the old one.
type deliverer struct{ p *atomic.Pointer[smtp.Client] }

var _ queue.Opener = deliverer{}

func (d deliverer) Send(ctx context.Context, dest string, m smtp.Mail, msg io.Reader) ([]error, error) {
	return d.p.Load().Send(ctx, dest, m, msg)
}

// Open makes the deliverer a queue.Opener: the queue's sessions carry
// several messages. A session opened before a reload keeps the client
// it was opened with for the message it carries, and no further: the
// queue's SetSettings ends its reuse.
func (d deliverer) Open(ctx context.Context, dest string, first smtp.Mail) (*smtp.Conn, error) {
	return d.p.Load().Open(ctx, dest, first)
}

// SendOutcome makes the queue an OutcomeSender: it learns whether the
// next hop took DSN.
func (d deliverer) SendOutcome(ctx context.Context, dest string, m smtp.Mail, msg io.Reader) ([]error, smtp.Outcome, error) {
	return d.p.Load().SendOutcome(ctx, dest, m, msg)
}

// A debugTee copies log lines to w while debug is on.
type debugTee struct {
	d *daemon
	w io.Writer
}

func (t *debugTee) Write(p []byte) (int, error) {
	if t.d.debug.Load() {
		return t.w.Write(p)
	}
	return len(p), nil
}
