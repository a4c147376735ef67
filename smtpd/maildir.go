package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"smtpfs/internal/durable"
	"smtpfs/smtp"
)

// A Maildir delivers messages to local users: <Dir>/<user>/ is a Maildir
// (tmp/, new/, cur/; https://cr.yp.to/proto/maildir.html). A message is
// written to tmp/ (or, for one box on Linux, to an unnamed file in new/),
// made durable, renamed (linked) into new/, and new/ is made durable
// before Deliver returns, so a delivered message survives a crash and a
// reader never sees it half-written. The syncs are shared (group commit): whatever the sessions
// delivering at once wait for, message files or new/ directories, is
// made durable together by one durable.Flush (one syncfs), so a message
// costs a share of two syncs however many arrive together. A Maildir is
// safe for concurrent use, and by several processes.
type Maildir struct {
	Dir string // the directory of the boxes, <root>/box
	// MkBox reports whether a missing box is made at its first delivery;
	// nil means always. postmaster's box is always made (RFC 5321 §4.5.1).
	MkBox func() bool
	Now   func() time.Time // the clock, for file names

	host  string                      // for unique file names
	fsync func(dir string) error      // syncPath, for new boxes; tests count it
	flush func(f []*os.File) error    // durable.Flush; tests count and stall it
	link  func(old, new string) error // os.Link
	// unnamed opens an unnamed file in a directory (openUnnamed); tests
	// make it fail with errNoUnnamed to take the path through tmp/.
	unnamed     func(dir string) (*os.File, error)
	linkUnnamed func(f *os.File, path string) error // linkUnnamed
	named       atomic.Bool                         // no unnamed files here: always write in tmp/
	seq         atomic.Uint64
	syncs       durable.Group // group commit of message files and new/ directories
}

// NewMaildir returns a Maildir for the boxes in dir.
func NewMaildir(dir string) *Maildir {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	return &Maildir{Dir: dir, Now: time.Now, host: host, fsync: syncPath, flush: durable.Flush, link: os.Link, unnamed: openUnnamed, linkUnnamed: linkUnnamed}
}

// BoxName returns the box of a local part: lower case, without a +tag.
// The local part must be at most 64 octets, a dot-string of letters,
// digits, '.', '-' and '_' not starting with '.' or '-', then optionally
// '+' and a tag of those and '+' and '='. Anything else is refused: the box
// becomes a directory, and the whole local part goes into Delivered-To:
// and To: lines, where a quoted "bob+x>, Boss <ceo>" would forge an
// address. A local part that is not ASCII (SMTPUTF8) maps as utf8BoxName
// says.
func BoxName(local string) (string, error) {
	if !isASCII(local) {
		return utf8BoxName(local)
	}
	box, tag, _ := strings.Cut(local, "+")
	if box == "" || len(local) > maxLocal || box[0] == '.' || box[0] == '-' || !isDotString(local) ||
		!onlyBytes(box, "._-") || !onlyBytes(tag, "._-+=") {
		return "", fmt.Errorf("invalid user name %q", local)
	}
	return strings.ToLower(box), nil
}

// onlyBytes reports whether s is made of letters, digits and the bytes
// of extra.
func onlyBytes(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && strings.IndexByte(extra, c) < 0 {
			return false
		}
	}
	return true
}

// HasBox reports whether user has a box.
func (m *Maildir) HasBox(user string) bool {
	fi, err := os.Stat(filepath.Join(m.Dir, user, "new"))
	return err == nil && fi.IsDir()
}

// Deliver stores msg (CRLF or LF line ends; stored with LF) in the box of
// each recipient, with Return-Path: <from> in front. from is "" for the
// null sender; each rcpt is local@domain or a bare local part, whose box
// is BoxName(local). Recipients sharing a box get one copy.
//
// The message is written once, whatever the number of boxes: the file is
// hard-linked into each box (copied only into a box where a link cannot
// go, on another file system), so a message for a thousand users costs its
// size once on disk. Maildir readers never change a message file in place
// (they rename it, or write a new one), so the boxes cannot see each
// other's changes. For that, one line must be the same in every box: a
// message for a single box starts with Delivered-To: <rcpt> as well, one
// for several has none, since a per-box line needs a per-box copy and a
// line naming them all would show each recipient the others (Bcc
// included).
//
// Deliver returns only when every copy is durable. It fails, delivering
// nothing, if a box is missing and may not be made (a *smtp.Reply 550
// 5.1.1, permanent) or on a disk error (temporary): what it had written,
// in tmp/ or already in new/, is removed, so that the message, sent again
// after the 451, does not arrive twice.
func (m *Maildir) Deliver(ctx context.Context, from string, rcpts []string, msg io.Reader) (err error) {
	type target struct{ rcpt, box, tmp, new string }
	var targets []target
	seen := map[string]bool{}
	for _, r := range rcpts {
		local := r
		if i := strings.LastIndexByte(r, '@'); i >= 0 {
			local = r[:i]
		}
		box, err := BoxName(strings.Trim(local, `"`))
		if err != nil {
			return errMailboxName(r)
		}
		if !seen[box] {
			seen[box] = true
			targets = append(targets, target{rcpt: r, box: box})
		}
	}
	if len(targets) == 0 {
		return nil
	}
	for _, t := range targets {
		if err := m.makeBox(t.box, t.rcpt); err != nil {
			return err
		}
	}
	defer func() {
		if err == nil {
			return
		}
		for _, t := range targets {
			for _, name := range []string{t.tmp, t.new} {
				if name != "" {
					os.Remove(name)
				}
			}
		}
	}()
	name := m.uniqueName()
	hdr := fmt.Sprintf("Return-Path: <%s>\n", from)
	if len(targets) == 1 {
		hdr += fmt.Sprintf("Delivered-To: %s\n", targets[0].rcpt)
	}
	if len(targets) == 1 && !m.named.Load() {
		var ok bool
		if ok, targets[0].new, err = m.deliverUnnamed(targets[0].box, name, hdr, msg); ok {
			return err
		}
	}
	for _, t := range targets {
		if err := m.makeTmp(t.box); err != nil {
			return err
		}
	}
	first := filepath.Join(m.Dir, targets[0].box, "tmp", name)
	f, err := m.writeFile(first, hdr, &lfReader{r: msg})
	if err != nil {
		return err
	}
	files := []*os.File{f} // to make durable: the message, and copies
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	targets[0].tmp = first
	for i := 1; i < len(targets); i++ {
		t := &targets[i]
		tmp := filepath.Join(m.Dir, t.box, "tmp", name)
		c, err := m.linkOrCopy(first, tmp)
		if err != nil {
			return err
		}
		if c != nil {
			files = append(files, c)
		}
		t.tmp = tmp
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := m.syncs.Do(files, m.flush); err != nil {
		return err
	}
	for i := range targets {
		t := &targets[i]
		t.new = filepath.Join(m.Dir, t.box, "new", name)
		if err := os.Rename(t.tmp, t.new); err != nil {
			t.new = ""
			return err
		}
		t.tmp = ""
	}
	var errs []error
	for _, t := range targets {
		errs = append(errs, m.syncDir(filepath.Join(m.Dir, t.box, "new")))
	}
	return errors.Join(errs...)
}

// deliverUnnamed delivers into one box without a name in tmp/: the
// message is written to an unnamed file in new/ (O_TMPFILE), made
// durable, then linked into new/ under its name, and new/ made durable.
// It spares the two directory changes of tmp/ (create, rename out),
// during which other deliveries to the box wait on the directory's lock.
// ok is false, with nothing read from msg, where the system has no
// unnamed files; the Maildir then names them in tmp/ from then on. path
// is the message's name in new/ once it has one, for the caller to remove
// on an error.
func (m *Maildir) deliverUnnamed(box, name, hdr string, msg io.Reader) (ok bool, path string, err error) {
	dir := filepath.Join(m.Dir, box, "new")
	f, err := m.unnamed(dir)
	if errors.Is(err, errNoUnnamed) {
		m.named.Store(true)
		return false, "", nil
	}
	if err != nil {
		return true, "", err
	}
	defer f.Close()
	if _, err := io.WriteString(f, hdr); err != nil {
		return true, "", err
	}
	if _, err := io.Copy(f, &lfReader{r: msg}); err != nil {
		return true, "", err
	}
	if err := m.syncs.Do([]*os.File{f}, m.flush); err != nil {
		return true, "", err
	}
	path = filepath.Join(dir, name)
	if err := m.linkUnnamed(f, path); err != nil {
		if errors.Is(err, errNoUnnamed) {
			m.named.Store(true) // /proc went away: say 451 this once
		}
		return true, "", err
	}
	// The link changed the file's link count as well as new/: both must
	// be on disk (a file system without a journal writes them apart).
	return true, path, m.syncDir(dir, f)
}

// linkOrCopy makes name another link to the file first, or, where no
// link can go (EXDEV, a file system without links), a copy, which it
// returns open and not yet durable.
func (m *Maildir) linkOrCopy(first, name string) (*os.File, error) {
	err := m.link(first, name)
	var le *os.LinkError
	if err == nil || !errors.As(err, &le) || errors.Is(err, os.ErrExist) {
		return nil, err
	}
	f, err := os.Open(first)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return m.writeFile(name, "", f)
}

// writeFile creates name with hdr and then body in it, and returns it
// open, for the caller to make durable and close. On an error it removes
// the file if it made it; a file already of that name is not its own.
func (m *Maildir) writeFile(name, hdr string, body io.Reader) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0600)
	if err != nil {
		return nil, err
	}
	_, err = io.WriteString(f, hdr)
	if err == nil {
		_, err = io.Copy(f, body)
	}
	if err != nil {
		f.Close()
		os.Remove(name)
		return nil, err
	}
	return f, nil
}

// makeTmp makes the box's tmp/ if it is missing: a box someone made by
// hand with new/ alone takes mail through unnamed files, and would refuse
// the rest (several boxes, no unnamed files) for ever.
func (m *Maildir) makeTmp(box string) error {
	dir := filepath.Join(m.Dir, box, "tmp")
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Mkdir(dir, 0700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return m.fsync(filepath.Join(m.Dir, box))
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

// syncDir makes dir durable, and the files also given, sharing the sync
// with concurrent callers.
func (m *Maildir) syncDir(dir string, also ...*os.File) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return m.syncs.Do(append([]*os.File{d}, also...), m.flush)
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
