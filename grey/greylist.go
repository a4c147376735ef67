package grey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Settings are the greylist's knobs, the greywindow and greyprefix verbs
// of smtpd.conf. They may change while the server runs (SetSettings).
type Settings struct {
	// A retry passes when it comes at least Min and at most Max after the
	// first attempt (greywindow; upas: 5 minutes and 14 hours).
	Min, Max time.Duration
	// Prefix4 and Prefix6 are the sizes of a sender's pool of addresses,
	// which count as one client (greyprefix; 32 and 128: each address on
	// its own, as upas does).
	Prefix4, Prefix6 int
	// MaxTriplets bounds the triplet files on disk (greytriplets). Past
	// it, new triplets are not registered (those clients get 451 until
	// expiry makes room), so that a flood of made-up recipients or IPv6
	// addresses cannot fill the disk. The count is known after the first
	// Expire.
	MaxTriplets int
	// PerClient bounds the triplets of one client (greyperclient), its
	// pool and for IPv6 its /64 at least, so that one client cannot fill
	// the greylist and lock the others out; PerMessage bounds those one
	// message registers (greypermsg). See tally.
	PerClient, PerMessage int
}

// DefaultSettings are upas's window, each address on its own, room for a
// million triplets (a million empty files: a few hundred MB of inodes),
// 100 of them for one client, and 5 new ones a message: a client passes
// with the first retry that comes in the window, and is whitelisted, so a
// real sender never needs more than a few.
var DefaultSettings = Settings{Min: 5 * time.Minute, Max: 14 * time.Hour, Prefix4: 32, Prefix6: 128,
	MaxTriplets: 1_000_000, PerClient: 100, PerMessage: 5}

func (s Settings) check() error {
	if s.Min < 0 || s.Max <= s.Min || s.Prefix4 < 0 || s.Prefix4 > 32 || s.Prefix6 < 0 || s.Prefix6 > 128 || s.MaxTriplets <= 0 || s.PerClient <= 0 || s.PerMessage <= 0 {
		return fmt.Errorf("invalid greylist settings: window %v..%v, prefixes /%d /%d, %d triplets, %d per client, %d per message",
			s.Min, s.Max, s.Prefix4, s.Prefix6, s.MaxTriplets, s.PerClient, s.PerMessage)
	}
	return nil
}

// A Greylist decides, at DATA, whether a client that is neither trusted
// nor authenticated may deliver now, with the algorithm of upas smtpd -g
// described in the package documentation. It is safe for concurrent use.
type Greylist struct {
	// Now is the clock; nil means time.Now. Set it before the first Check.
	Now func() time.Time
	// Name, if not nil, gives the host name written after an address the
	// greylist adds to the whitelist (upas asks ndb/cs; a reverse DNS
	// lookup with a short timeout does here). "" means none.
	Name func(netip.Addr) string

	tmp      string // <root>/grey/tmp
	white    *Whitelist
	log      *log.Logger
	tally    tally      // triplet files, in all and per client
	expiring sync.Mutex // one Expire at a time

	mu  sync.Mutex
	set Settings
}

// NewGreylist returns a greylist keeping its triplets under root/grey/tmp
// and whitelisting through white, with DefaultSettings. logger (which may
// be nil) receives every decision.
func NewGreylist(root string, white *Whitelist, logger *log.Logger) *Greylist {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	return &Greylist{tmp: filepath.Join(root, "grey", "tmp"), white: white, log: logger, set: DefaultSettings}
}

// Open opens the whitelist of the mail root, root/grey/whitelist, and
// returns a greylist using it, with DefaultSettings.
func Open(root string, logger *log.Logger) (*Greylist, error) {
	w, err := OpenWhitelist(filepath.Join(root, "grey", "whitelist"), logger)
	if err != nil {
		return nil, err
	}
	return NewGreylist(root, w, logger), nil
}

// Whitelist returns the whitelist the greylist uses.
func (g *Greylist) Whitelist() *Whitelist { return g.white }

// SetSettings replaces the settings; the next Check uses them. A zero
// MaxTriplets, PerClient or PerMessage means DefaultSettings'. Invalid
// settings are refused and the old ones kept.
func (g *Greylist) SetSettings(s Settings) error {
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&s.MaxTriplets, DefaultSettings.MaxTriplets},
		{&s.PerClient, DefaultSettings.PerClient},
		{&s.PerMessage, DefaultSettings.PerMessage},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if err := s.check(); err != nil {
		return err
	}
	g.mu.Lock()
	g.set = s
	g.mu.Unlock()
	return nil
}

// Settings returns the settings in use.
func (g *Greylist) Settings() Settings {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.set
}

func (g *Greylist) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// outcome is what one triplet says.
type outcome int

const (
	registered outcome = iota // first sight: file made
	early                     // seen less than Min ago
	late                      // seen more than Max ago: clock restarted
	recent                    // seen within the window: pass
	full                      // not registered: MaxTriplets reached
	clientFull                // not registered: the client has PerClient
	enough                    // not registered: the message registered PerMessage
)

// Check reports whether the client at remote, talking to our address
// local, may send a message from the sender from to rcpts now. The
// caller asks at DATA, after all recipients, only for clients that are
// neither trusted nor authenticated; on false it replies
// "451 please try again soon from the same IP." and hangs up. from is not
// part of the key: senders that vary their envelope sender on each attempt
// (VERP, SRS) would never pass.
//
// Every recipient is looked up, in order, until one passes; new ones are
// registered within the bounds of the settings (tally), and those left
// out are logged once for each bound.
func (g *Greylist) Check(local, remote netip.Addr, from string, rcpts []string) (pass bool) {
	return g.check(local, remote, "", rcpts)
}

// check is Check, keyed by the sender domain when it is not "" (sender.go).
func (g *Greylist) check(local, remote netip.Addr, domain string, rcpts []string) (pass bool) {
	remote = canon(remote)
	if !remote.IsValid() {
		g.log.Printf("greylist: no remote address; not greylisting")
		return true
	}
	if g.white != nil && g.white.Contains(remote) {
		g.log.Printf("%s whitelisted", remote)
		return true
	}
	s := g.Settings()
	now := g.now()
	pool := poolOf(remote, s)
	tr := tripletRun{dir: filepath.Join(g.tmp, dirName(local), pool.Addr().String()), now: now, s: s,
		client: clientOf(remote, s)}
	if domain != "" {
		tr.dir, tr.sender = filepath.Join(g.tmp, senderDir(local, domain)), domain
		g.log.Printf("%s passed SPF for %s: greylisting its domain's triplets", domain, remote)
	}
	var left [enough + 1]unregistered // by outcome: full, clientFull, enough
	for _, rcpt := range rcpts {
		name := fileName(rcpt)
		if name == "" {
			continue
		}
		o, age, err := g.triplet(&tr, name)
		if err != nil {
			// Greylisting only delays spam; a broken disk must not turn
			// away every message for days, so fail open, loudly.
			g.log.Printf("greylist: %v; letting %s through", err, remote)
			return true
		}
		switch o {
		case registered:
			g.log.Printf("no call registered for %s/%s; registering", remote, rcpt)
		case early:
			g.log.Printf("call for %s/%s was just minutes ago or long ago (%v ago: too soon)", remote, rcpt, age.Round(time.Second))
		case late:
			g.log.Printf("call for %s/%s was just minutes ago or long ago (%v ago: too late; registering again)", remote, rcpt, age.Round(time.Second))
		case full, clientFull, enough:
			left[o].add(rcpt)
		case recent:
			g.log.Printf("%s/%s was grey; adding IP to white", remote, rcpt)
			pass = true
		}
		if pass {
			break // whitelisted: the others need no triplets
		}
	}
	for _, o := range []outcome{full, clientFull, enough} {
		if u := left[o]; u.n > 0 {
			g.log.Printf("%s: not registering %s/%s%s", tr.why(o), remote, u.first, u.more())
		}
	}
	if !pass {
		g.log.Printf("no recent call from %s for a rcpt; rejecting with temporary failure", remote)
		return false
	}
	g.whitelist(remote, pool)
	return true
}

// whitelist appends the client's address, or its pool when pools are
// bigger than one address, to the whitelist, in upas's form "ip name",
// unless a concurrent session did it first.
func (g *Greylist) whitelist(remote netip.Addr, pool netip.Prefix) {
	if g.white == nil {
		return
	}
	line := formatPrefix(pool)
	if g.Name != nil {
		if name := g.Name(remote); isHostName(name) {
			line += " " + name
		}
	}
	if err := g.white.append(line+"\n", pool); err != nil {
		g.log.Printf("greylist: adding %s to the whitelist: %v", line, err)
	}
}

// An unregistered is the recipients of a Check left unregistered for one
// reason: the first is named in the log, the others counted.
type unregistered struct {
	first string
	n     int
}

func (u *unregistered) add(rcpt string) {
	if u.n == 0 {
		u.first = rcpt
	}
	u.n++
}

func (u unregistered) more() string {
	if u.n > 1 {
		return fmt.Sprintf(" and %d more", u.n-1)
	}
	return ""
}

// why says which bound left a triplet unregistered, for the log.
func (tr *tripletRun) why(o outcome) string {
	switch o {
	case full:
		return fmt.Sprintf("greylist full (%d triplets)", tr.s.MaxTriplets)
	case clientFull:
		return fmt.Sprintf("%s has %d triplets, greyperclient's limit", tr.clientName(), tr.s.PerClient)
	}
	return fmt.Sprintf("%d new recipients of the message registered, greypermsg's limit", tr.s.PerMessage)
}

// A tripletRun is what the triplets of one Check share: the client's
// directory, the time, the settings, the client's unit (clientOf) and how
// many triplets the Check registered.
type tripletRun struct {
	dir    string
	now    time.Time
	s      Settings
	client netip.Prefix
	sender string // the sender domain whose triplets these are (sender.go), or ""
	made   int
}

// triplet registers or consults the triplet file tr.dir/name: its mtime
// is the first attempt. A file that is already there and older than Max
// is reset to now, so a sender that comes back after the window starts
// afresh; a retry that comes too soon does not move the clock (postgrey's
// rule: upas refreshed it on every attempt, which keeps a sender that
// retries every minute out for ever). A new file is made only within the
// bounds (tally): the tally is asked first, and told when the file is not
// made after all.
func (g *Greylist) triplet(tr *tripletRun, name string) (outcome, time.Duration, error) {
	path, now, s := filepath.Join(tr.dir, name), tr.now, tr.s
	for range 3 {
		fi, err := os.Stat(path)
		if err == nil {
			switch age := now.Sub(fi.ModTime()); {
			case age >= s.Min && age <= s.Max:
				return recent, age, nil
			case age >= 0 && age < s.Min:
				return early, age, nil
			default: // long ago, or in the future: the clock moved back
				return late, age, os.Chtimes(path, now, now)
			}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return 0, 0, err
		}
		if tr.made >= s.PerMessage {
			return enough, 0, nil
		}
		key := tr.key()
		if o := g.tally.reserve(key, s, func() int { return countDir(tr.dir, s.PerClient) }); o != registered {
			return o, 0, nil
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			f.Close()
			tr.made++
			return registered, 0, os.Chtimes(path, now, now)
		}
		g.tally.release(key)
		switch {
		case errors.Is(err, fs.ErrExist):
			// made by a concurrent Check: look again
		case errors.Is(err, fs.ErrNotExist):
			if err := os.MkdirAll(tr.dir, 0o700); err != nil {
				return 0, 0, err
			}
		default:
			return 0, 0, err
		}
	}
	return 0, 0, fmt.Errorf("cannot make %s", path)
}

// poolOf is the network of the sender's pool that remote belongs to.
func poolOf(remote netip.Addr, s Settings) netip.Prefix {
	bits := s.Prefix6
	if remote.Is4() {
		bits = s.Prefix4
	}
	p, _ := remote.Prefix(bits)
	return p
}

// dirName is the directory for our address: its text, or "unknown".
func dirName(a netip.Addr) string {
	if a = canon(a); a.IsValid() {
		return a.String()
	}
	return "unknown"
}

// maxName bounds a triplet file name, well under NAME_MAX (255).
const maxName = 128

// fileName makes a recipient into a file name that stays where it is
// put: ASCII lower case; bytes other than letters, digits and !@.+-_= as
// %XX (so the name holds no / or NUL, and different recipients get
// different names); a leading dot as %2E (no ".", ".." or hidden files);
// names longer than maxName cut and followed by ~ and a hash of the whole
// (~ is otherwise always escaped, so a cut name never equals another
// recipient's). The empty recipient has no name.
func fileName(rcpt string) string {
	const hexd = "0123456789ABCDEF"
	lower := []byte(rcpt)
	var b strings.Builder
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			lower[i] = c
		}
		if 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("!@+-_=", c) >= 0 || c == '.' && i > 0 {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&15])
		}
	}
	name := b.String()
	if len(name) > maxName {
		sum := sha256.Sum256(lower)
		name = name[:maxName-33] + "~" + hex.EncodeToString(sum[:16])
	}
	return name
}

// isHostName reports whether s may follow an address in the whitelist.
func isHostName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Expire removes the triplet files whose first attempt is older than the
// window's end, Max, and the directories it leaves empty, and returns how
// many files it removed and kept; the tally of triplets becomes what it
// kept. It reads directories in batches, so its memory is bounded by the
// tally's whatever the number of triplets, and stops early when ctx is
// done. The daemon calls it at start and then periodically (Sweep).
func (g *Greylist) Expire(ctx context.Context) (removed, kept int, err error) {
	g.expiring.Lock()
	defer g.expiring.Unlock()
	s := g.Settings()
	cutoff := g.now().Add(-s.Max)
	per := newWalkCounter(s)
	g.tally.beginWalk()
	err = walkDir(ctx, g.tmp, 2, func(path string, fi fs.FileInfo) {
		if fi.ModTime().Before(cutoff) {
			if os.Remove(path) == nil {
				removed++
				return
			}
		}
		kept++
		per.add(path)
	})
	g.tally.endWalk(per.per, kept, err == nil)
	return removed, kept, err
}

// walkDir calls fn for each plain file depth levels of directories below
// dir, reading directories 256 entries at a time, and removes the
// directories below dir that are empty afterwards (a Check that races it
// remakes them).
func walkDir(ctx context.Context, dir string, depth int, fn func(string, fs.FileInfo)) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, rerr := d.ReadDir(256)
		for _, e := range ents {
			path := filepath.Join(dir, e.Name())
			switch {
			case depth > 0 && e.IsDir():
				if err := walkDir(ctx, path, depth-1, fn); err != nil {
					return err
				}
				os.Remove(path) // only if empty
			case depth == 0 && e.Type().IsRegular():
				if fi, err := e.Info(); err == nil {
					fn(path, fi)
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// Tidy is Expire, logging what it removed, or why it failed unless ctx
// ended it.
func (g *Greylist) Tidy(ctx context.Context) {
	removed, kept, err := g.Expire(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		g.log.Printf("greylist: expiring triplets: %v", err)
	case removed > 0:
		g.log.Printf("greylist: expired %d triplets, %d left", removed, kept)
	}
}

// Sweep calls Tidy every period until ctx is done. It is the background
// sweep the daemon starts once.
func (g *Greylist) Sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		g.Tidy(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
