// Package setup holds what the smtpd and smtpfs programs share: upas
// smtpd's flags, each turned into the smtpd.conf verb it stands for; the
// mail root; the configuration and secrets; the adapters that plug the
// engines into one another.
package setup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"smtpfs/cmd/internal/arg"
	"smtpfs/internal/regfile"
	"smtpfs/smtpd"
	"smtpfs/smtpd/conf"
)

// Flags are upas smtpd's flags and smtpfs's -R and -C.
type Flags struct {
	Root, Conf string
	bools      map[byte]*bool
	strs       map[byte]*string
	evil       []string
}

// boolVerbs and strVerbs name the verb of each flag (SPEC §4).
var (
	boolVerbs = map[byte]string{'a': "requireauth", 'd': "debug", 'D': "tarpit", 'f': "norelay",
		'g': "greylist", 'p': "plaintextauth", 'r': "verifysenderdom", 's': "saveblockedmsg"}
	strVerbs = map[byte]string{'c': "tlscert", 'h': "defaultdomain", 'm': "mailer"}
)

// Register defines the flags in s.
func (f *Flags) Register(s *arg.Set) {
	f.bools, f.strs = map[byte]*bool{}, map[byte]*string{}
	for c := range boolVerbs {
		f.bools[c] = new(bool)
		s.Bool(c, f.bools[c])
	}
	for c := range strVerbs {
		f.strs[c] = new(string)
		s.String(c, f.strs[c])
	}
	s.List('k', &f.evil)
	s.String('R', &f.Root)
	s.String('C', &f.Conf)
}

// Verbs returns the configuration lines the flags stand for, and the
// environment's ($SMTPFS_RESOLVER) before them: they are applied after
// smtpd.conf, so they win.
func (f *Flags) Verbs() []string {
	var v []string
	if r := os.Getenv("SMTPFS_RESOLVER"); r != "" {
		v = append(v, "resolver "+conf.Quote(r))
	}
	for _, c := range []byte("adDfgprs") {
		if *f.bools[c] {
			v = append(v, boolVerbs[c]+" on")
		}
	}
	for _, c := range []byte("chm") {
		if *f.strs[c] != "" {
			v = append(v, strVerbs[c]+" "+conf.Quote(*f.strs[c]))
		}
	}
	for _, k := range f.evil {
		v = append(v, "evil "+conf.Quote(k))
	}
	return v
}

// CheckConf fails when -C names a file that is not there, or cannot be
// read: lib/smtpd.conf, the default, may be missing (the defaults hold),
// but a file asked for by name must be there.
func (f *Flags) CheckConf() error {
	if f.Conf == "" {
		return nil
	}
	return NamedConf(f.Conf)
}

// NamedConf checks a configuration file named by -C, at start and at
// each reload. It is opened as conf.Load reads it (regfile.Open), so that
// a FIFO named there is refused at once, not waited on.
func NamedConf(file string) error {
	fd, _, err := regfile.Open(file)
	if err != nil {
		return fmt.Errorf("-C %s: %v", file, regfile.Reason(err))
	}
	return fd.Close()
}

// RootDir returns the mail root, absolute: -R, else ./mail.
func (f *Flags) RootDir() (string, error) {
	r := f.Root
	if r == "" {
		r = "mail"
	}
	return filepath.Abs(r)
}

// ConfFile returns the configuration file: -C, else <root>/lib/smtpd.conf.
func (f *Flags) ConfFile(root string) string {
	if f.Conf != "" {
		return f.Conf
	}
	return filepath.Join(root, "lib", "smtpd.conf")
}

// rootDirs are made by MakeRoot, with their modes. What says who mails
// whom is private: the queue, saved messages and spool (0700), the
// greylist's triplets and whitelist (0700), the logs (0750: the daemon's
// group may read them, as syslog's adm group does). Each user's Maildir
// is made 0700 by the delivery.
var rootDirs = []struct {
	name    string
	mode    os.FileMode
	private bool // an existing directory more open than mode is made mode
}{
	{".", 0755, false}, {"lib", 0755, false}, {"box", 0755, false},
	{"log", 0750, true}, {"grey", 0700, true},
	{"queue", 0700, true}, {"queue.dump", 0700, true}, {"tmp", 0700, true},
}

// MakeRoot makes the mail root and its directories where missing. A
// private directory that an older smtpfs made open to others (grey/ and
// log/ were 0755) loses the permissions its mode does not have, which
// hides the files in it too.
func MakeRoot(root string) error {
	for _, d := range rootDirs {
		dir := filepath.Join(root, d.name)
		if err := os.MkdirAll(dir, d.mode); err != nil {
			return err
		}
		if !d.private {
			continue
		}
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&^d.mode != 0 {
			if err := os.Chmod(dir, perm&d.mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// Load reads the configuration (the file, then verbs) and lib/secrets.
func Load(root, file string, verbs []string) (*conf.Config, *smtpd.Secrets, error) {
	cfg, err := conf.Load(file, verbs)
	if err == nil {
		err = cfg.CheckListen()
	}
	if err != nil {
		return nil, nil, err
	}
	secrets := filepath.Join(root, "lib", "secrets")
	if err := CheckRegular(secrets); err != nil {
		return nil, nil, err
	}
	sec, err := smtpd.LoadSecrets(secrets)
	if err != nil {
		return nil, nil, err
	}
	return cfg, sec, nil
}

// CheckRegular refuses, at once, a file of the mail root that is there but
// is not a regular file: a FIFO, a device, a directory (regfile.Open). It
// is asked before the loaders of lib/secrets and lib/blocked, which open
// their files themselves, and would wait for ever on a FIFO. A missing or
// unreadable file is left to them to judge.
func CheckRegular(name string) error {
	f, _, err := regfile.Open(name)
	switch {
	case err == nil:
		f.Close()
	case errors.Is(err, regfile.ErrNotRegular):
		return fmt.Errorf("invalid %s: %v", name, err)
	}
	return nil
}

// Usage prints err, after the program's name (the usage line's first
// word), and the usage line, and exits 1.
func Usage(s *arg.Set, err error) {
	if err != nil {
		name, _, _ := strings.Cut(s.Usage, " ")
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	}
	fmt.Fprintf(os.Stderr, "usage: %s\n", s.Usage)
	os.Exit(1)
}
