package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"smtpfs/cmd/internal/setup"
	"smtpfs/fs"
	"smtpfs/grey"
	"smtpfs/smtp"
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

	srv     *smtpd.Server
	grey    *grey.Greylist
	blocked *grey.Blocked
	queue   *queue.Queue
	client  atomic.Pointer[smtp.Client]
	tree    *fs.Server

	// actions are the runtime ctl verbs, by verb.
	actions map[string]func(args []string) error

	debug atomic.Bool // cfg.Debug, for the log tee, which may not take mu

	mu      sync.Mutex
	cfg     *conf.Config
	secrets *smtpd.Secrets
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
	d := &daemon{root: root, confFile: confFile, verbs: verbs, cfg: cfg, secrets: sec, hub: fs.NewLog(0)}
	d.debug.Store(cfg.Debug)
	d.logs = mlog.New(filepath.Join(root, "log"), io.MultiWriter(d.hub, &debugTee{d: d, w: stderr}))
	d.log = d.logs.Logger("smtpd")
	if err := d.openEngines(cfg); err != nil {
		d.logs.Close()
		return nil, err
	}
	d.actions = map[string]func([]string) error{
		"reload":      func([]string) error { return d.Reload() },
		"kick":        func([]string) error { d.queue.Kick(); return nil },
		"retry":       func(ids []string) error { return d.queue.Retry(ids...) },
		"delete":      func(ids []string) error { return d.queue.Delete(ids...) },
		"hold":        func(ids []string) error { return d.queue.Hold(ids...) },
		"release":     func(ids []string) error { return d.queue.Release(ids...) },
		"unwhitelist": d.unwhitelist,
	}
	d.tree = fs.New(fs.Config{
		Control:    control{d},
		Whitelist:  whitelistFile{d.grey.Whitelist()},
		Blocked:    blockedFile{d.blocked},
		Queue:      queueFile{d.queue},
		Stats:      d,
		Version:    version,
		Log:        d.hub,
		Logger:     d.logs.Logger("9p"),
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
	if d.grey, err = grey.Open(d.root, d.log); err != nil {
		return err
	}
	if err := d.grey.SetSettings(setup.GreySettings(cfg)); err != nil {
		return err
	}
	maildir := smtpd.NewMaildir(filepath.Join(d.root, "box"))
	maildir.MkBox = func() bool { return d.Config().MkBox }
	d.client.Store(setup.NewClient(cfg, d.logs))
	d.queue, err = queue.Open(filepath.Join(d.root, "queue"), setup.QueueSettings(cfg),
		deliverer{&d.client}, maildir, d.logs.Logger("runq"))
	if err != nil {
		return err
	}
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
	}
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

// Ctl applies the lines of text written to ctl, all or none: a bad line
// fails the write (the error names the line) and changes nothing. The
// actions (reload, kick, ...) run after the settings, in order; reload
// builds the configuration again from the file and the flags, so it
// undoes the settings of earlier ctl writes. The 9P tree logs each line
// that took effect, and each error.
func (d *daemon) Ctl(text string) error {
	d.mu.Lock()
	cfg, acts, err := conf.Apply(d.cfg, "ctl", text)
	if err != nil {
		d.mu.Unlock()
		return err
	}
	changed := cfg.Dump() != d.cfg.Dump()
	d.cfg = cfg
	d.mu.Unlock()
	if changed {
		d.changed(cfg)
	}
	for _, a := range acts {
		if err := d.actions[a.Verb](a.Args); err != nil {
			return fmt.Errorf("%s: %w", a.Verb, err)
		}
	}
	return nil
}

// unwhitelist removes whitelist entries (the ctl verb): each argument
// must match an entry exactly.
func (d *daemon) unwhitelist(args []string) error {
	var ps []netip.Prefix
	for _, a := range args {
		p, err := conf.ParsePrefix(a)
		if err != nil {
			return err
		}
		ps = append(ps, p)
	}
	n, err := d.grey.Whitelist().Remove(ps...)
	if err == nil && n == 0 {
		err = fmt.Errorf("not found: %s", strings.Join(args, " "))
	}
	return err
}

// Reload builds the configuration again from smtpd.conf and the flags, and
// re-reads lib/secrets, lib/blocked and the whitelist, and reopens the log
// files (SIGHUP, ctl reload). A bad file keeps the old configuration, and
// the error says why.
func (d *daemon) Reload() error {
	cfg, sec, err := setup.Load(d.root, d.confFile, d.verbs)
	if err == nil {
		err = d.blocked.Reload()
	}
	if err != nil {
		d.log.Printf("reload: %v; keeping the old configuration", err)
		return err
	}
	if err := d.grey.Whitelist().Reload(); err != nil {
		d.log.Printf("reload: whitelist: %v", err)
	}
	d.logs.Reopen()
	d.mu.Lock()
	d.cfg, d.secrets = cfg, sec
	d.mu.Unlock()
	d.changed(cfg)
	d.log.Printf("reloaded %s, lib/secrets (%d users), lib/blocked and the whitelist", d.confFile, sec.Len())
	return nil
}

// changed hands a new configuration to the engines that keep their own
// settings.
func (d *daemon) changed(cfg *conf.Config) {
	d.debug.Store(cfg.Debug)
	if err := d.grey.SetSettings(setup.GreySettings(cfg)); err != nil {
		d.log.Printf("greylist settings: %v", err)
	}
	d.queue.SetSettings(setup.QueueSettings(cfg))
	d.client.Store(setup.NewClient(cfg, d.logs))
}

// Stats returns the counters of the server and the queue, for the 9P
// stats file.
func (d *daemon) Stats() []fs.Stat {
	var st []fs.Stat
	for _, s := range d.srv.Stats.Values() {
		st = append(st, fs.Stat{Name: s.Name, Value: s.Value})
	}
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
	return st
}

// close closes what newDaemon opened, after run has returned.
func (d *daemon) close() {
	d.tree.Close()
	if err := d.queue.Close(); err != nil {
		d.log.Printf("closing the queue: %v", err)
	}
	d.logs.Close()
}

// A deliverer delivers through the client of the moment: a change of
// configuration makes a new client, and deliveries under way finish with
// the old one.
type deliverer struct{ p *atomic.Pointer[smtp.Client] }

func (d deliverer) Deliver(ctx context.Context, dest, from string, rcpts []string, msg io.Reader) ([]error, error) {
	return d.p.Load().Deliver(ctx, dest, from, rcpts, msg)
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
