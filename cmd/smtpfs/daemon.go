package main

import (
	"fmt"
	"io"
	"log"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"smtpfs/cmd/internal/setup"
	"smtpfs/smtp/mlog"
	"smtpfs/smtpd"
	"smtpfs/smtpd/conf"
)

// A daemon is the running smtpfs: the live configuration and secrets, and
// the engines that read them. The 9P tree, the queue runner and the
// greylist plug in here: the tree calls Ctl, ConfigText and reads
// srv.Stats; the queue and the greylist set srv.Queue, srv.Greylister and
// srv.Classifier, register their ctl actions in actions, and follow
// configuration changes through onChange.
type daemon struct {
	root     string
	confFile string
	verbs    []string // from the environment and the flags: applied after the file, so they win
	ninep    []string // the -9 dial strings, for the 9P tree to listen on
	logs     *mlog.Log
	log      *log.Logger // facility smtpd
	srv      *smtpd.Server

	// actions are the runtime ctl verbs that can be carried out, by verb;
	// reload is always there. Until the queue and the greylist are wired
	// in, their verbs (kick, retry, delete, hold, release, unwhitelist)
	// are refused as not available, and nothing in the write is applied.
	actions map[string]func(args []string) error
	// onChange is called with the new configuration after every change
	// (ctl, reload), outside the lock.
	onChange []func(*conf.Config)

	debug atomic.Bool // cfg.Debug, for the log tee, which may not take mu

	mu      sync.Mutex
	cfg     *conf.Config
	secrets *smtpd.Secrets
}

// newDaemon loads the configuration and secrets and makes the server. Its
// log goes to <root>/log, and also to stderr while debug is on.
func newDaemon(root, confFile string, verbs []string, stderr io.Writer) (*daemon, error) {
	cfg, sec, err := setup.Load(root, confFile, verbs)
	if err != nil {
		return nil, err
	}
	d := &daemon{root: root, confFile: confFile, verbs: verbs, cfg: cfg, secrets: sec}
	d.debug.Store(cfg.Debug)
	d.logs = mlog.New(filepath.Join(root, "log"), &debugTee{d: d, w: stderr})
	d.log = d.logs.Logger("smtpd")
	d.srv = &smtpd.Server{
		Root:     root,
		Config:   d.Config,
		Secrets:  d.Secrets,
		Log:      d.log,
		Resolver: &setup.Resolver{Config: d.Config},
	}
	d.actions = map[string]func([]string) error{"reload": func([]string) error { return d.Reload() }}
	return d, nil
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

// Ctl applies the lines of text written to ctl, all or none: a bad line,
// or an action that is not available, fails the write (the error names the
// line) and changes nothing. Every line that changes a setting is logged.
// The actions (reload, ...) run after the settings, in order; reload
// builds the configuration again from the file and the flags, so it
// undoes the settings of earlier ctl writes.
func (d *daemon) Ctl(text string) error {
	d.mu.Lock()
	old := d.cfg
	cfg, acts, err := conf.Apply(old, "ctl", text)
	if err == nil {
		err = d.available(text, acts)
	}
	if err != nil {
		d.mu.Unlock()
		d.log.Printf("ctl: %v", err)
		return err
	}
	d.logChanges(old, text)
	d.cfg = cfg
	d.mu.Unlock()
	d.changed(cfg)
	for _, a := range acts {
		d.log.Printf("ctl: %s", strings.TrimSpace(a.Verb+" "+strings.Join(a.Args, " ")))
		if err := d.actions[a.Verb](a.Args); err != nil {
			return fmt.Errorf("%s: %w", a.Verb, err)
		}
	}
	return nil
}

// available checks that every action of a ctl write can be carried out.
func (d *daemon) available(text string, acts []conf.Action) error {
	for _, a := range acts {
		if d.actions[a.Verb] == nil {
			n := 0
			for i, l := range strings.Split(text, "\n") {
				if w, _ := conf.Tokenize(l); len(w) > 0 && strings.EqualFold(w[0], a.Verb) {
					n = i + 1
					break
				}
			}
			return &conf.LineError{Source: "ctl", Line: n, Text: a.Verb, Err: fmt.Errorf("%s is not available: its engine is not wired in", a.Verb)}
		}
	}
	return nil
}

// logChanges logs each line of a ctl write that changes a setting.
func (d *daemon) logChanges(old *conf.Config, text string) {
	cur := old
	for line := range strings.SplitSeq(text, "\n") {
		next, acts, err := conf.Apply(cur, "ctl", line)
		if err != nil || len(acts) > 0 {
			continue
		}
		if next.Dump() != cur.Dump() {
			d.log.Printf("ctl: %s", strings.TrimSpace(line))
		}
		cur = next
	}
}

// Reload builds the configuration again, from smtpd.conf and the flags,
// re-reads lib/secrets and reopens the log files (SIGHUP, ctl reload). A
// bad file keeps the old configuration, and the error says why.
func (d *daemon) Reload() error {
	cfg, sec, err := setup.Load(d.root, d.confFile, d.verbs)
	if err != nil {
		d.log.Printf("reload: %v; keeping the old configuration", err)
		return err
	}
	d.logs.Reopen()
	d.mu.Lock()
	d.cfg, d.secrets = cfg, sec
	d.mu.Unlock()
	d.changed(cfg)
	d.log.Printf("reloaded %s and lib/secrets (%d users)", d.confFile, sec.Len())
	return nil
}

func (d *daemon) changed(cfg *conf.Config) {
	d.debug.Store(cfg.Debug)
	for _, f := range d.onChange {
		f(cfg)
	}
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
