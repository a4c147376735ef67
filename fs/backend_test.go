package fs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/fs"
	"smtpfs/smtp/queue"
	"smtpfs/smtpd/conf"
)

// The backends the daemon will plug in, faked: ctl is the real grammar
// (conf.Apply and Dump, as the daemon wires it); the others keep what they
// are given in memory and validate the way the real ones do.

type ctlBackend struct {
	mu   sync.Mutex
	c    *conf.Config
	acts []conf.Action
}

func (b *ctlBackend) Ctl(text string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, acts, err := conf.Apply(b.c, "ctl", text)
	if err != nil {
		return err
	}
	b.c = c
	b.acts = append(b.acts, acts...)
	return nil
}

func (b *ctlBackend) Config() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c.Dump()
}

func (b *ctlBackend) actions() []conf.Action {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]conf.Action(nil), b.acts...)
}

func (b *ctlBackend) greylist() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c.Greylist
}

// listBackend is a whitelist: `ip[/len] [name]` lines.
type listBackend struct {
	mu   sync.Mutex
	text string
}

func (l *listBackend) Text() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return []byte(l.text)
}

func (l *listBackend) Add(text string) error {
	var add string
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if _, err := netip.ParsePrefix(f[0]); err != nil {
			if _, err := netip.ParseAddr(f[0]); err != nil {
				return fmt.Errorf("invalid whitelist line %d %s: not an address", i+1, f[0])
			}
		}
		add += strings.Join(f, " ") + "\n"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.text += add
	return nil
}

// queueBackend lists the items it is given and records what is submitted.
type queueBackend struct {
	mu        sync.Mutex
	items     []queue.Item
	submitted []string
	checked   int   // calls of Check
	fail      error // of Submit
	full      error // of Check, whatever the header (the queue's disk is full)
}

func (q *queueBackend) List() []queue.Item {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items
}

// Check takes the envelope the way queue.ParseEnvelope does: an optional
// upas From line, recipients from To, Cc and Bcc.
func (q *queueBackend) Check(header []byte) error {
	q.mu.Lock()
	q.checked++
	full := q.full
	q.mu.Unlock()
	if full != nil {
		return full
	}
	if bytes.HasPrefix(header, []byte("From ")) {
		_, header, _ = bytes.Cut(header, []byte("\n"))
	}
	m, err := mail.ReadMessage(bytes.NewReader(append(bytes.Clone(header), '\n')))
	if err != nil {
		return fmt.Errorf("bad header: %v", err)
	}
	n := 0
	for _, h := range []string{"To", "Cc", "Bcc"} {
		l, err := m.Header.AddressList(h)
		if err != nil && !errors.Is(err, mail.ErrHeaderNotPresent) {
			return fmt.Errorf("invalid address in %s: %v", h, err)
		}
		n += len(l)
	}
	if n == 0 {
		return errors.New("no recipients")
	}
	return nil
}

func (q *queueBackend) Submit(ctx context.Context, msg []byte) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return "", q.fail
	}
	q.submitted = append(q.submitted, string(msg))
	return fmt.Sprintf("q%04d", len(q.submitted)), nil
}

func (q *queueBackend) set(items []queue.Item, fail error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items, q.fail = items, fail
}

func (q *queueBackend) got() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.submitted...)
}

func (q *queueBackend) checks() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.checked
}

type statsBackend []fs.Stat

func (s statsBackend) Stats() []fs.Stat { return s }

// env is a tree served with the fake backends on a Unix socket.
type env struct {
	srv  *fs.Server
	ctl  *ctlBackend
	wl   *listBackend
	q    *queueBackend
	hub  *fs.Log
	sock string // path of the socket
	ds   string // its dial string
}

var testNow = time.Date(2025, 11, 24, 15, 23, 1, 0, time.UTC)

// newEnv serves a tree; edit changes its configuration first.
func newEnv(t testing.TB, edit ...func(*fs.Config)) *env {
	t.Helper()
	e := &env{
		ctl: &ctlBackend{c: conf.Default()},
		wl:  &listBackend{text: "# whitelist\n192.0.2.7 mx.example.net\n"},
		q:   &queueBackend{},
		hub: fs.NewLog(0),
	}
	cfg := fs.Config{
		Control:   e.ctl,
		Whitelist: e.wl,
		Queue:     e.q,
		Stats:     statsBackend{{"connections", 12}, {"messages.accepted", 3}},
		Version:   "smtpfs test",
		Log:       e.hub,
		Owner:     "glenda",
		Now:       func() time.Time { return testNow },
	}
	for _, f := range edit {
		f(&cfg)
	}
	e.srv = fs.New(cfg)
	dir, err := os.MkdirTemp("", "fs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.sock = filepath.Join(dir, "smtpfs")
	e.ds, err = e.srv.Listen("unix!" + e.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Close() })
	return e
}
