package grey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	// FailClosed refuses, with the greylist's temporary failure, the
	// messages of a Check the store could not answer (greyfail closed);
	// by default they pass (greyfail open).
	FailClosed bool
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
// described in the package documentation, on the state its Store keeps.
// It is safe for concurrent use.
type Greylist struct {
	// Now is the clock; nil means time.Now. Set it before the first Check.
	Now func() time.Time
	// Name, if not nil, gives the host name written after an address the
	// greylist adds to the whitelist (upas asks ndb/cs; a reverse DNS
	// lookup with a short timeout does here). "" means none.
	Name func(netip.Addr) string

	log       *log.Logger
	store     atomic.Pointer[storeRef]
	unchecked atomic.Int64 // decisions greyfail made: the store could not answer

	mu  sync.Mutex
	set Settings
}

// A storeRef holds a Store for an atomic.Pointer.
type storeRef struct{ s Store }

// NewGreylist returns a greylist keeping its triplets under root/grey/tmp
// and whitelisting through white (which may be nil: no whitelist), with
// DefaultSettings. logger (which may be nil) receives every decision.
func NewGreylist(root string, white *Whitelist, logger *log.Logger) *Greylist {
	return New(NewFileStore(root, white), logger)
}

// New returns a greylist on store, with DefaultSettings. logger (which
// may be nil) receives every decision.
func New(store Store, logger *log.Logger) *Greylist {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	g := &Greylist{log: logger, set: DefaultSettings}
	g.store.Store(&storeRef{store})
	return g
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

// Store returns the store in use.
func (g *Greylist) Store() Store { return g.store.Load().s }

// SetStore makes s the store of the next Checks and returns the one it
// replaces, which the caller closes: Checks under way finish with it.
func (g *Greylist) SetStore(s Store) (old Store) { return g.store.Swap(&storeRef{s}).s }

// Whitelist returns the whitelist of the store in use; nil for none.
func (g *Greylist) Whitelist() WhitelistStore { return g.Store().Whitelist() }

// Unchecked returns how many Checks the store could not answer, which
// Settings.FailClosed decided.
func (g *Greylist) Unchecked() int64 { return g.unchecked.Load() }

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

// Check reports whether the client at remote, talking to our address
// local, may send a message from the sender from to rcpts now. The
// caller asks at DATA, after all recipients, only for clients that are
// neither trusted nor authenticated; on false it replies "451 4.7.1
// please try again soon from the same IP." and hangs up. from is not part
// of the key: senders that vary their envelope sender on each attempt
// (VERP, SRS) would never pass.
//
// Every recipient is looked up, in order, until one passes; new ones are
// registered within the bounds of the settings (tally), and those left
// out are logged once for each bound. The store is asked once for all of
// them; if it cannot answer, Settings.FailClosed decides.
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
	st := g.Store()
	if w := st.Whitelist(); w != nil && w.Contains(remote) {
		g.log.Printf("%s whitelisted", remote)
		return true
	}
	s := g.Settings()
	q := &Query{Local: local, Remote: remote, Pool: poolOf(remote, s), Client: clientOf(remote, s), Now: g.now(), Settings: s,
		Sender: domain}
	if domain != "" {
		g.log.Printf("%s passed SPF for %s: greylisting its domain's triplets", domain, remote)
	}
	var named []string // the recipient of each key
	for _, rcpt := range rcpts {
		if key := fileName(rcpt); key != "" {
			q.Keys, named = append(q.Keys, key), append(named, rcpt)
		}
	}
	ans, err := st.Triplets(q)
	switch {
	case err != nil:
		return g.failed(remote, s, err)
	case ans.Whitelisted:
		g.log.Printf("%s whitelisted", remote)
		return true
	}
	var left [Enough + 1]unregistered // by outcome: Full, ClientFull, Enough
	for i, r := range ans.Results {
		rcpt := named[i]
		switch r.Outcome {
		case Registered:
			g.log.Printf("no call registered for %s/%s; registering", remote, rcpt)
		case Early:
			g.log.Printf("call for %s/%s was just minutes ago or long ago (%v ago: too soon)", remote, rcpt, r.Age.Round(time.Second))
		case Late:
			g.log.Printf("call for %s/%s was just minutes ago or long ago (%v ago: too late; registering again)", remote, rcpt, r.Age.Round(time.Second))
		case Full, ClientFull, Enough:
			left[r.Outcome].add(rcpt)
		case Recent:
			g.log.Printf("%s/%s was grey; adding IP to white", remote, rcpt)
			pass = true
		}
	}
	for _, o := range []Outcome{Full, ClientFull, Enough} {
		if u := left[o]; u.n > 0 {
			g.log.Printf("%s: not registering %s/%s%s", why(q, o), remote, u.first, u.more())
		}
	}
	if !pass {
		g.log.Printf("no recent call from %s for a rcpt; rejecting with temporary failure", remote)
		return false
	}
	g.whitelist(st, remote, q.Pool)
	return true
}

// failed decides for a Check the store could not answer. Greylisting only
// delays spam; a broken disk or an unreachable Redis must not turn away
// every message for days, so by default (greyfail open) the message
// passes, loudly; with FailClosed it is refused with the greylist's
// temporary failure, and the sender retries.
func (g *Greylist) failed(remote netip.Addr, s Settings, err error) bool {
	g.unchecked.Add(1)
	if s.FailClosed {
		g.log.Printf("greylist: %v; greyfail closed: rejecting %s with temporary failure", err, remote)
		return false
	}
	g.log.Printf("greylist: %v; letting %s through", err, remote)
	return true
}

// whitelist appends the client's address, or its pool when pools are
// bigger than one address, to the whitelist of st, in upas's form
// "ip name", unless a concurrent session did it first.
func (g *Greylist) whitelist(st Store, remote netip.Addr, pool netip.Prefix) {
	w := st.Whitelist()
	if w == nil {
		return
	}
	line := formatPrefix(pool)
	if g.Name != nil {
		if name := g.Name(remote); isHostName(name) {
			line += " " + name
		}
	}
	if err := w.AddClient(line, pool); err != nil {
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

// why says which bound left a triplet of q unregistered, for the log.
func why(q *Query, o Outcome) string {
	switch o {
	case Full:
		return fmt.Sprintf("greylist full (%d triplets)", q.Settings.MaxTriplets)
	case ClientFull:
		return fmt.Sprintf("%s has %d triplets, greyperclient's limit", formatPrefix(q.Client), q.Settings.PerClient)
	}
	return fmt.Sprintf("%d new recipients of the message registered, greypermsg's limit", q.Settings.PerMessage)
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

// Expire removes the triplets whose first attempt is older than the
// window's end, Max, and returns how many it removed and kept (the
// store's Expire). It stops early when ctx is done. The daemon calls it
// at start and then periodically (Sweep).
func (g *Greylist) Expire(ctx context.Context) (removed, kept int, err error) {
	return g.Store().Expire(ctx, g.Settings(), g.now())
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
