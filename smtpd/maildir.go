package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"smtpfs/smtp"
)

// A Maildir delivers messages to local users: <Dir>/<user>/ is a Maildir
// (tmp/, new/, cur/; https://cr.yp.to/proto/maildir.html). A message is
// written to tmp/, fsynced, renamed into new/, and new/ is fsynced before
// Deliver returns, so a delivered message survives a crash. The fsyncs of
// new/ are shared: when many sessions deliver into one box at once, one
// fsync covers every rename made before it started (group commit). A
// Maildir is safe for concurrent use, and by several processes.
type Maildir struct {
	Dir string // the directory of the boxes, <root>/box
	// MkBox reports whether a missing box is made at its first delivery;
	// nil means always. postmaster's box is always made (RFC 5321 §4.5.1).
	MkBox func() bool
	Now   func() time.Time // the clock, for file names

	host  string                 // for unique file names
	fsync func(dir string) error // syncPath; tests count and stall it
	seq   atomic.Uint64
	mu    sync.Mutex
	dirs  map[string]*dirSync
}

// NewMaildir returns a Maildir for the boxes in dir.
func NewMaildir(dir string) *Maildir {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return &Maildir{Dir: dir, Now: time.Now, host: host, fsync: syncPath, dirs: map[string]*dirSync{}}
}

// BoxName returns the box of a local part: lower case, without a +tag,
// at most 64 octets of letters, digits, '.', '-' and '_', not starting
// with '.' or '-'. Anything else is refused: the name becomes a directory.
func BoxName(local string) (string, error) {
	u := strings.ToLower(local)
	if i := strings.IndexByte(u, '+'); i > 0 {
		u = u[:i]
	}
	if u == "" || len(u) > maxLocal || u[0] == '.' || u[0] == '-' {
		return "", fmt.Errorf("invalid user name %q", local)
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !(c >= 'a' && c <= 'z' || isDigit(c) || c == '.' || c == '-' || c == '_') {
			return "", fmt.Errorf("invalid user name %q", local)
		}
	}
	return u, nil
}

// HasBox reports whether user has a box.
func (m *Maildir) HasBox(user string) bool {
	fi, err := os.Stat(filepath.Join(m.Dir, user, "new"))
	return err == nil && fi.IsDir()
}

// Deliver stores msg (CRLF or LF line ends; stored with LF) in the box of
// each recipient, with Return-Path: <from> and Delivered-To: <rcpt> in
// front. from is "" for the null sender; each rcpt is local@domain or a
// bare local part, whose box is BoxName(local). Recipients sharing a box
// get one copy. Deliver returns only when every copy is durable. It
// fails, delivering nothing, if a box is missing and may not be made
// (a *smtp.Reply 550 5.1.1, permanent) or on a disk error (temporary).
func (m *Maildir) Deliver(ctx context.Context, from string, rcpts []string, msg io.Reader) error {
	type copy struct{ rcpt, box, tmp, name string }
	var copies []copy
	seen := map[string]bool{}
	for _, r := range rcpts {
		local := r
		if i := strings.LastIndexByte(r, '@'); i >= 0 {
			local = r[:i]
		}
		box, err := BoxName(strings.Trim(local, `"`))
		if err != nil {
			return smtp.Replyf(550, "5.1.1", "<%s> ... user unknown", r)
		}
		if !seen[box] {
			seen[box] = true
			copies = append(copies, copy{rcpt: r, box: box})
		}
	}
	for _, c := range copies {
		if err := m.makeBox(c.box, c.rcpt); err != nil {
			return err
		}
	}
	var first *os.File
	var bodyOff int64
	defer func() {
		for _, c := range copies {
			if c.tmp != "" {
				os.Remove(c.tmp) // left only when we failed
			}
		}
	}()
	for i := range copies {
		c := &copies[i]
		c.name = m.uniqueName()
		c.tmp = filepath.Join(m.Dir, c.box, "tmp", c.name)
		hdr := fmt.Sprintf("Return-Path: <%s>\nDelivered-To: %s\n", from, c.rcpt)
		var body io.Reader
		if first == nil {
			body = &lfReader{r: msg}
		} else {
			body = io.NewSectionReader(first, bodyOff, 1<<62)
		}
		f, err := m.writeFile(c.tmp, hdr, body)
		if err != nil {
			return err
		}
		if first == nil {
			first, bodyOff = f, int64(len(hdr))
			defer first.Close()
		} else {
			f.Close()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	for i := range copies {
		c := &copies[i]
		if err := os.Rename(c.tmp, filepath.Join(m.Dir, c.box, "new", c.name)); err != nil {
			return err
		}
		c.tmp = ""
	}
	var errs []error
	for _, c := range copies {
		errs = append(errs, m.syncDir(filepath.Join(m.Dir, c.box, "new")))
	}
	return errors.Join(errs...)
}

// writeFile writes hdr and body into a new file, fsyncs it, and returns it
// open for reading.
func (m *Maildir) writeFile(name, hdr string, body io.Reader) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0600)
	if err != nil {
		return nil, err
	}
	_, err = io.WriteString(f, hdr)
	if err == nil {
		_, err = io.Copy(f, body)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// makeBox makes <Dir>/<box>/{tmp,new,cur} if it is missing and may be
// made, and makes the new directories durable.
func (m *Maildir) makeBox(box, rcpt string) error {
	if m.HasBox(box) {
		return nil
	}
	if m.MkBox != nil && !m.MkBox() && box != "postmaster" {
		return smtp.Replyf(550, "5.1.1", "<%s> ... user unknown", rcpt)
	}
	dir := filepath.Join(m.Dir, box)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0700); err != nil {
			return err
		}
	}
	if err := m.fsync(dir); err != nil {
		return err
	}
	return m.fsync(m.Dir)
}

// uniqueName returns a Maildir file name, <sec>.M<usec>P<pid>Q<n>.<host>,
// unique to this process by its counter and across processes by the pid.
func (m *Maildir) uniqueName() string {
	now := m.Now()
	return fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), m.seq.Add(1), m.host)
}

func syncPath(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// syncDir fsyncs dir, sharing the fsync with concurrent callers.
func (m *Maildir) syncDir(dir string) error {
	m.mu.Lock()
	g := m.dirs[dir]
	if g == nil {
		g = &dirSync{dir: dir, fsync: m.fsync}
		g.cond = sync.NewCond(&g.mu)
		m.dirs[dir] = g
	}
	g.users++
	m.mu.Unlock()
	err := g.sync()
	m.mu.Lock()
	if g.users--; g.users == 0 {
		delete(m.dirs, dir)
	}
	m.mu.Unlock()
	return err
}

// A dirSync is the group commit of one directory. A caller takes a ticket;
// it is done when a completed fsync started after the ticket was taken.
// Whoever finds no fsync running starts one for every ticket so far, so
// while one fsync runs, the callers that arrive meanwhile wait and are all
// served by the next.
type dirSync struct {
	dir     string
	fsync   func(string) error
	users   int // callers between lookup and return, under Maildir.mu
	mu      sync.Mutex
	cond    *sync.Cond
	want    uint64 // tickets issued
	done    uint64 // tickets covered by a finished fsync
	running bool
	failed  uint64 // tickets up to this one ...
	failLo  uint64 // ... and from this one got err
	err     error
}

func (g *dirSync) sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.want++
	t := g.want
	for g.done < t {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		lo, hi := g.done+1, g.want
		g.mu.Unlock()
		err := g.fsync(g.dir)
		g.mu.Lock()
		g.running = false
		g.done = hi
		if err != nil {
			g.failLo, g.failed, g.err = lo, hi, err
		}
		g.cond.Broadcast()
	}
	if g.err != nil && t >= g.failLo && t <= g.failed {
		return g.err
	}
	return nil
}

// An lfReader turns CRLF line ends into LF.
type lfReader struct {
	r      io.Reader
	buf    [32 << 10]byte
	out    []byte
	heldCR bool // a CR ended the last chunk
	err    error
}

func (l *lfReader) Read(p []byte) (int, error) {
	for len(l.out) == 0 {
		if l.err != nil {
			if l.heldCR {
				l.heldCR = false
				l.out = append(l.buf[:0], '\r')
				break
			}
			return 0, l.err
		}
		n, err := l.r.Read(l.buf[1:])
		l.err = err
		in := l.buf[1 : 1+n]
		if l.heldCR && n > 0 {
			l.buf[0] = '\r'
			in = l.buf[:1+n]
			l.heldCR = false
		}
		if n > 0 && in[len(in)-1] == '\r' && err == nil {
			in, l.heldCR = in[:len(in)-1], true
		}
		l.out = crlfToLF(in)
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}

// crlfToLF rewrites b in place, every CRLF becoming LF.
func crlfToLF(b []byte) []byte {
	w := 0
	for i := 0; i < len(b); i++ {
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			continue
		}
		b[w] = b[i]
		w++
	}
	return b[:w]
}
