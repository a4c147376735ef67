package main

import (
	"fmt"
	"net"
	"strconv"

	"smtpfs/fs"
	"smtpfs/smtp"
	"smtpfs/smtpd"
	"smtpfs/smtpd/conf"
)

// An smtpListener is one open SMTP listener: its dial string as the
// listen verb names it, its socket, and its policy and counters.
type smtpListener struct {
	dial string
	l    net.Listener
	pol  *smtpd.Listener
}

// withListen returns cfg with the default listener when it names none
// (no listen verb, no -l): the configuration shows what listens.
func withListen(cfg *conf.Config) *conf.Config {
	if len(cfg.Listen) > 0 {
		return cfg
	}
	c := cfg.Clone()
	c.Listen = []conf.Listen{conf.DefaultListen}
	return c
}

// syncListeners makes the open SMTP listeners those of cfg: it opens the
// new ones and serves them, closes those no longer named (their sessions
// go on to their end), and gives the others their role of now. It returns
// the listeners it opened; an error leaves the ones opened before it
// open, and names the listener that failed.
func (d *daemon) syncListeners(cfg *conf.Config) ([]*smtpListener, error) {
	d.lmu.Lock()
	defer d.lmu.Unlock()
	want := map[string]conf.Role{}
	for _, l := range cfg.Listen {
		want[l.Dial] = l.Role
	}
	var kept []*smtpListener
	for _, sl := range d.listeners {
		r, ok := want[sl.dial]
		if !ok {
			sl.l.Close()
			d.log.Printf("listen %s: closed", sl.dial)
			continue
		}
		if sl.pol.Role() != r {
			d.log.Printf("listen %s: now %s", sl.dial, r)
			sl.pol.SetRole(r)
		}
		kept = append(kept, sl)
	}
	d.listeners = kept
	var opened []*smtpListener
	for _, l := range cfg.Listen {
		if d.listening(l.Dial) {
			continue
		}
		nl, err := listenSMTP(l.Dial)
		if err != nil {
			return opened, fmt.Errorf("listen %s %s: %v", l.Dial, l.Role, err)
		}
		sl := &smtpListener{dial: l.Dial, l: nl, pol: smtpd.NewListener(d.listenerName(nl.Addr()), l.Role)}
		d.listeners = append(d.listeners, sl)
		opened = append(opened, sl)
		d.log.Printf("listen %s: %s listening on %s", l.Dial, l.Role, dialString(nl.Addr()))
		go d.srv.ServeListener(nl, sl.pol)
	}
	return opened, nil
}

// listening reports whether dial is open; lmu is held.
func (d *daemon) listening(dial string) bool {
	for _, sl := range d.listeners {
		if sl.dial == dial {
			return true
		}
	}
	return false
}

// listenerName names a listener in the stats file: its port, or its
// address and port when another listener has that port already
// (listener.587.connections, listener.127.0.0.2!587.connections).
func (d *daemon) listenerName(a net.Addr) string {
	t, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	name := strconv.Itoa(t.Port)
	for _, sl := range d.listeners {
		if sl.pol.Name == name {
			return t.IP.String() + "!" + name
		}
	}
	return name
}

// listenerStats returns the counters of each open listener, prefixed
// listener.<name>., with its role (listener.587.submission 1).
func (d *daemon) listenerStats() []fs.Stat {
	d.lmu.Lock()
	defer d.lmu.Unlock()
	var st []fs.Stat
	for _, sl := range d.listeners {
		p := "listener." + sl.pol.Name + "."
		st = append(st, fs.Stat{Name: p + sl.pol.Role().String(), Value: 1})
		for _, s := range sl.pol.Stats.Values() {
			st = append(st, fs.Stat{Name: p + s.Name, Value: s.Value})
		}
	}
	return st
}

// listenSMTP listens on a dial string; without a port, on 25.
func listenSMTP(s string) (net.Listener, error) {
	ds, err := smtp.ParseDialString(s)
	if err != nil {
		return nil, err
	}
	if ds.Net != "tcp" {
		return nil, fmt.Errorf("listen %s: smtp listens on tcp only", s)
	}
	return net.Listen("tcp", ds.Address("25"))
}
