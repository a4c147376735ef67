package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"smtpfs/cmd/internal/setup"
	"smtpfs/fs"
	"smtpfs/grey"
	"smtpfs/grey/redisstore"
	"smtpfs/internal/regfile"
	"smtpfs/smtpd"
	"smtpfs/smtpd/conf"
)

// The greylist's store follows greystore. The files of the mail root
// stay open whatever the store (grey/whitelist is what a switch to Redis
// imports, and what exportwhitelist writes); a switch opens the new
// store, hands it to the greylist and the AUTH limiter, and closes the
// old one: Checks under way on it finish with greyfail's answer if they
// needed it after that.

// stores are the daemon's stores: the files, always open, and Redis
// while greystore names it.
type stores struct {
	files    *grey.FileStore
	fileAuth smtpd.AuthLimiter
	redis    atomic.Pointer[redisstore.Store]
	url      string // greystore in use; changed under the daemon's cmu
	auth     switchLimiter
}

// openStores opens the files of the mail root and makes them the
// greylist's store; useStore then follows the configuration.
func (d *daemon) openStores() error {
	w, err := grey.OpenWhitelist(filepath.Join(d.root, "grey", "whitelist"), d.log)
	if err != nil {
		return err
	}
	d.stores.files = grey.NewFileStore(d.root, w)
	d.stores.fileAuth = setup.AuthLimiter(d.root, nil) // shared with smtpd on the root
	d.stores.auth.set(d.stores.fileAuth)
	d.stores.url = "file"
	d.grey = grey.New(d.stores.files, d.log)
	return nil
}

// useStore makes the store cfg names the greylist's and the AUTH
// limiter's, if it is not already. A Redis store is opened without
// waiting for Redis, mirrors the whitelist, and imports grey/whitelist
// once it answers (redisstore.Whitelist.Import: once by content). A URL
// go-redis refuses, though conf took it, keeps the store in use.
func (d *daemon) useStore(cfg *conf.Config) {
	s := &d.stores
	if cfg.GreyStore == s.url {
		return
	}
	var st grey.Store = s.files
	lim := s.fileAuth
	var rs *redisstore.Store
	if cfg.GreyStore != "file" {
		var err error
		rs, err = redisstore.Open(cfg.GreyStore, redisstore.Options{Log: d.log, Mirror: true, Import: s.files.Whitelist().Bytes})
		if err != nil {
			d.log.Printf("greystore: %v; keeping greystore %s", err, redisstore.Redact(s.url))
			return
		}
		st, lim = rs, setup.RedisAuthLimiter(rs)
	}
	d.grey.SetStore(st)
	s.auth.set(lim)
	old := s.redis.Swap(rs)
	s.url = cfg.GreyStore
	if old != nil {
		old.Close()
	}
	if rs != nil {
		d.log.Printf("greystore %s: the greylist, the whitelist and AUTH failures are kept there", rs.Name())
	} else {
		d.log.Printf("greystore file: the greylist, the whitelist and AUTH failures are kept in %s", filepath.Join(d.root, "grey"))
	}
}

// closeStores closes the Redis store, if any.
func (d *daemon) closeStores() {
	if rs := d.stores.redis.Swap(nil); rs != nil {
		rs.Close()
	}
}

// exportWhitelist writes the whitelist of the store in use to a file
// (the ctl verb exportwhitelist): args[0], or grey/whitelist, so that a
// switch back to greystore file keeps what the hosts whitelisted
// together. The file is written beside its old self, synced and renamed
// over it, mode 0600.
func (d *daemon) exportWhitelist(args []string) error {
	local := filepath.Join(d.root, "grey", "whitelist")
	path := local
	if len(args) > 0 {
		path = filepath.Clean(args[0])
	}
	if d.stores.redis.Load() == nil && path == local {
		return fmt.Errorf("greystore is file: the whitelist is %s already", local)
	}
	text, err := d.grey.Whitelist().Bytes()
	if err != nil {
		return storeError(err)
	}
	if err := writeFile(path, text); err != nil {
		return exportError(path, err)
	}
	if path == local {
		if err := d.stores.files.Whitelist().Reload(); err != nil {
			return storeError(err)
		}
	}
	d.log.Printf("exportwhitelist: %d bytes written to %s", len(text), path)
	return nil
}

// exportError is the error of an export that could not be written to
// path: a directory that is not there is ENOENT (fs.ErrNotFound), as the
// tree has it for what a line names and is missing; anything else is the
// daemon's failure to store it (EIO, fs.ErrIO).
func exportError(path string, err error) error {
	err = regfile.Reason(err)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s: %v", fs.ErrNotFound, filepath.Dir(path), err)
	}
	return fmt.Errorf("%w: %s: %v", fs.ErrIO, path, err)
}

// writeFile puts data in path durably: a temporary file beside it,
// synced, renamed over it, the directory synced.
func writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".export-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// storeStats are the store's counters for the stats file: whether it is
// up (the files always are), how many times it went down, and how many
// messages greyfail decided because it could not answer.
func (d *daemon) storeStats() []fs.Stat {
	up, outages := int64(1), int64(0)
	if rs := d.stores.redis.Load(); rs != nil {
		st := rs.State()
		if !st.Up {
			up = 0
		}
		outages = st.Outages
	}
	return []fs.Stat{{Name: "greystore.up", Value: up}, {Name: "greystore.outages", Value: outages},
		{Name: "greylist.unchecked", Value: d.grey.Unchecked()}}
}

// A switchLimiter is the AUTH limiter of the store in use: the server's
// AuthLimiter is set once, the store changes with greystore.
type switchLimiter struct{ p atomic.Pointer[limiterRef] }

type limiterRef struct{ l smtpd.AuthLimiter }

func (s *switchLimiter) set(l smtpd.AuthLimiter) { s.p.Store(&limiterRef{l}) }

func (s *switchLimiter) Locked(client netip.Prefix, now time.Time) (bool, error) {
	return s.p.Load().l.Locked(client, now)
}

func (s *switchLimiter) Failed(client netip.Prefix, now time.Time) (bool, error) {
	return s.p.Load().l.Failed(client, now)
}

// redacting returns a logger that writes to l's with the passwords of
// URLs shown as xxxxx (conf.Redact): the 9P tree logs every ctl line
// that took effect, a greystore line with a password among them.
func redacting(l *log.Logger) *log.Logger {
	return log.New(redactor{l.Writer()}, l.Prefix(), l.Flags())
}

type redactor struct{ w io.Writer }

func (r redactor) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, conf.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
