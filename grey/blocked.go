package grey

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"smtpfs/internal/regfile"
)

// An Action is a lib/blocked verdict. The server engine maps it to its
// replies (upas.md §2.9 and §7); None and Allow both mean accept.
type Action int

// The verdicts, in the order upas tries them: the first that matches wins.
const (
	None  Action = iota // no line matched
	Allow               // allow, accept
	Block               // block
	Deny                // deny
	Dial                // dial: a dial-up port
	Delay               // delay, relay
)

var actionNames = [...]string{"none", "allow", "block", "deny", "dial", "delay"}

func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return fmt.Sprintf("Action(%d)", int(a))
	}
	return actionNames[a]
}

// verbs are the words of lib/blocked. relay means delay, as ratfs's code
// has it (its manual says it is a block with its own message).
var verbs = map[string]Action{
	"allow": Allow, "accept": Allow, "block": Block, "deny": Deny,
	"dial": Dial, "delay": Delay, "relay": Delay,
}

// Bounds of lib/blocked: a line may list many networks, so it gets the
// smtpd.conf bound; the file is bounded so that a mistake (a log file in
// its place) cannot take the daemon's memory.
const (
	MaxBlockedLine = 64 << 10
	MaxBlocked     = 64 << 20
)

// Blocked is the classification file, <root>/lib/blocked, read directly
// with the semantics of upas's ratfs (upas.md §2.9). It is safe for
// concurrent use; Classify takes no lock.
//
// A line is a verb and its parameters, tokenised like smtpd.conf: # starts
// a comment, \ takes the next character literally, spaces, tabs and commas
// separate words, and everything is lower-cased. "verb ip..." lists
// addresses and networks (a.b.c.d/n, a.b.c.d#n, IPv6, a bare address is one
// host); "*verb pat..." or "* verb pat..." lists sender patterns:
//
//	dom, dom!, dom!*   any sender with dom anywhere in its path
//	*.dom              dom or any name ending in .dom (also in the forms below)
//	!user, *!user      that user in any domain
//	dom!user           that user, with dom the last domain of the path
//	user*              (as a user) any user name starting with user
//
// The patterns *, !, *!, !* and *!*, which would match every sender, are
// refused.
//
// A file with a bad line (an unknown verb, a malformed address, a pattern
// that matches everyone) is refused as a whole, as smtpd.conf is: Reload
// returns an error naming each bad line and the classification in force
// stays; a change noticed by Classify logs the same. (ratfs silently
// skipped such lines; an operator writing the file wants to know.)
type Blocked struct {
	path string
	log  *log.Logger
	now  func() time.Time // the clock for the stat ticker; tests set it
	tab  atomic.Pointer[table]
	tick ticker

	mu sync.Mutex // held while reading the file
	st stamp      // the file as last read
}

// NewBlocked returns the classification of the file at path, empty until
// Reload reads it. logger may be nil.
func NewBlocked(path string, logger *log.Logger) *Blocked {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	b := &Blocked{path: path, log: logger, now: time.Now}
	b.tab.Store(&table{})
	b.tick.due(b.now())
	return b
}

// Path returns the file's name.
func (b *Blocked) Path() string { return b.path }

// Reload reads the file again. A missing file classifies nobody. On error
// (the file cannot be read, or has bad lines) the classification in force
// stays, and the error, one line, names the file and every bad line (the
// first ten).
func (b *Blocked) Reload() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.load()
}

// refresh is the once-a-second check from Classify: it reads the file
// again when its stamp changed, and logs a failure.
func (b *Blocked) refresh() {
	b.mu.Lock()
	defer b.mu.Unlock()
	var st stamp
	if fi, err := os.Stat(b.path); err == nil {
		st = stampOf(fi)
	}
	if st == b.st {
		return
	}
	if err := b.load(); err != nil {
		b.log.Printf("%v; keeping the classification in force", err)
	}
}

// load reads the file into a new table; b.mu is held.
func (b *Blocked) load() error {
	f, _, err := regfile.Open(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		b.st = stamp{}
		b.tab.Store(&table{})
		return nil
	}
	if err != nil {
		return fmt.Errorf("blocked: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("blocked: %v", err)
	}
	b.st = stampOf(fi) // a bad file is not read again until it changes
	if fi.Size() > MaxBlocked {
		return fmt.Errorf("invalid %s: longer than %d bytes", b.path, MaxBlocked)
	}
	t, err := parseBlocked(f, fi.Size(), b.path)
	if err != nil {
		return err
	}
	b.tab.Store(t)
	return nil
}

// Classify returns the verdict of the file for a client at ip sending as
// sender, a lower-case upas bang path (example.com!bob; user@dom is taken
// as dom!user; "" for the null sender). As in upas, the address is tried
// first, against the verbs in the order allow, block, deny, dial, delay:
// so an allow anywhere in the file overrides a block of the same address,
// and overlapping networks are all seen (upas's bug 18 is fixed: any
// network holding the address counts, the most specific or not). When the
// address gets no verdict or allow, the sender is tried the same way, and
// its verdict, if any, is the answer. Once a second it also checks whether
// the file changed.
func (b *Blocked) Classify(ip netip.Addr, sender string) Action {
	if b.tick.due(b.now()) {
		b.refresh()
	}
	t := b.tab.Load()
	v := None
	if ip = canon(ip); ip.IsValid() {
		for a := Allow; a <= Delay; a++ {
			if t.ip[a].contains(ip) {
				v = a
				break
			}
		}
	}
	if v != None && v != Allow {
		return v
	}
	if a := t.account(sender); a != None {
		return a
	}
	return v
}

// A table is one reading of the file: for each verb, its networks and its
// sender patterns.
type table struct {
	ip   [Delay + 1]set
	acct [Delay + 1]patterns
}

// patterns are the sender patterns of one verb, in maps, so that a file
// of many thousands of them costs a few lookups per sender, not a scan.
type patterns struct {
	doms     map[string]bool      // dom: a domain of the path is dom
	wild     map[string]bool      // *.dom: a domain of the path is dom or ends in .dom
	users    map[string][]userDom // [dom]!user, by user
	prefixes map[string][]userDom // [dom]!user*, by user
	longest  int                  // the longest key of prefixes
}

// userDom is the domain part of a pattern with a user: "" for any domain
// (!user, *!user), else the last domain of the path must be dom, or with
// wild (*.dom!user) end in .dom.
type userDom struct {
	dom  string
	wild bool
}

// maxDoms is ratfs's bound on the domains of a path; more ! go into the user.
const maxDoms = 10

func (t *table) account(sender string) Action {
	if sender == "" {
		return None
	}
	sender = strings.ToLower(sender)
	if !strings.Contains(sender, "!") {
		if u, d, ok := strings.Cut(sender, "@"); ok {
			sender = d + "!" + u
		}
	}
	var buf [maxDoms]string
	doms := buf[:0]
	user := sender
	for len(doms) < maxDoms {
		d, rest, ok := strings.Cut(user, "!")
		if !ok {
			break
		}
		doms, user = append(doms, d), rest
	}
	for a := Allow; a <= Delay; a++ {
		if t.acct[a].match(doms, user) {
			return a
		}
	}
	return None
}

func (p *patterns) match(doms []string, user string) bool {
	for _, d := range doms {
		if p.doms[d] || p.wildMatch(d) {
			return true
		}
	}
	if lastMatch(doms, p.users[user]) {
		return true
	}
	for k := 1; k <= min(len(user), p.longest); k++ {
		if lastMatch(doms, p.prefixes[user[:k]]) {
			return true
		}
	}
	return false
}

// lastMatch reports whether one of l allows the last domain of doms.
func lastMatch(doms []string, l []userDom) bool {
	for _, u := range l {
		if u.dom == "" {
			return true
		}
		if len(doms) == 0 {
			continue
		}
		d := doms[len(doms)-1]
		if d == u.dom || u.wild && len(d) > len(u.dom) && d[len(d)-len(u.dom)-1] == '.' && d[len(d)-len(u.dom):] == u.dom {
			return true
		}
	}
	return false
}

// wildMatch reports whether a *.dom pattern covers d: d or any of its
// parents.
func (p *patterns) wildMatch(d string) bool {
	if len(p.wild) == 0 {
		return false
	}
	for {
		if p.wild[d] {
			return true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return false
		}
		d = d[i+1:]
	}
}

// add records the sender pattern pat.
func (p *patterns) add(pat string) error {
	switch pat {
	case "*", "!", "*!", "!*", "*!*":
		return fmt.Errorf("pattern %s matches every sender", quote(pat))
	}
	dom, user, _ := strings.Cut(pat, "!")
	wild := false
	if rest, ok := strings.CutPrefix(dom, "*."); ok && rest != "" {
		dom, wild = rest, true
	}
	if user == "" || user == "*" { // domain only
		m := &p.doms
		if wild {
			m = &p.wild
		}
		if *m == nil {
			*m = map[string]bool{}
		}
		(*m)[dom] = true
		return nil
	}
	if dom == "*" {
		dom = ""
	}
	m := &p.users
	if rest, ok := strings.CutSuffix(user, "*"); ok {
		m, user = &p.prefixes, rest
		p.longest = max(p.longest, len(user))
	}
	if *m == nil {
		*m = map[string][]userDom{}
	}
	(*m)[user] = append((*m)[user], userDom{dom, wild})
	return nil
}

// parseBlocked reads a classification file of about size bytes; name is
// for errors.
func parseBlocked(r io.Reader, size int64, name string) (*table, error) {
	t := &table{}
	var errs []string
	nbad := 0
	bad := func(n int, line string, err error) {
		if nbad++; nbad <= maxLogged {
			errs = append(errs, fmt.Sprintf("invalid %s line %d %s: %v", name, n, quote(line), err))
		}
	}
	do := func(line string, n int) {
		if len(line) > MaxBlockedLine {
			bad(n, line, errors.New("line too long"))
		} else if err := t.parseLine(fields(line)); err != nil {
			bad(n, line, err)
		}
	}
	_, lines, tail, err := eachLine(r, size, 1, MaxBlockedLine, do)
	if err != nil {
		return nil, fmt.Errorf("blocked: %v", err)
	}
	if tail != "" {
		do(tail, lines+1)
	}
	if nbad > maxLogged {
		errs = append(errs, fmt.Sprintf("%d more bad lines", nbad-maxLogged))
	}
	if errs != nil {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	for i := range t.ip {
		t.ip[i].normalize()
	}
	return t, nil
}

// parseLine adds the words of one line to t.
func (t *table) parseLine(w []string) error {
	if len(w) == 0 {
		return nil
	}
	verb, args := w[0], w[1:]
	account := false
	if v, ok := strings.CutPrefix(verb, "*"); ok {
		account, verb = true, v
		if verb == "" {
			if len(args) == 0 {
				return errors.New("no verb after *")
			}
			verb, args = args[0], args[1:]
		}
	}
	a, ok := verbs[verb]
	if !ok {
		return fmt.Errorf("unknown verb %s", quote(verb))
	}
	for _, arg := range args {
		if account {
			if err := t.acct[a].add(arg); err != nil {
				return err
			}
			continue
		}
		p, err := ParsePrefix(strings.ReplaceAll(arg, "#", "/"))
		if err != nil {
			return fmt.Errorf("%s: %v", quote(arg), err)
		}
		t.ip[a].add(p)
	}
	return nil
}

// fields splits a line into lower-case words as upas's smtpd.conf and
// ratfs do (upas.md §2.3): # starts a comment, \ takes the next character
// literally, spaces, tabs and commas separate words and runs of them count
// as one. (smtpd/conf.Tokenize has the same rules plus rc quotes, which
// lib/blocked never needed; grey imports nothing from smtpd.)
func fields(line string) []string {
	var words []string
	var w []byte
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c == '#' {
			break
		}
		if c == ' ' || c == '\t' || c == ',' || c == '\r' {
			if len(w) > 0 {
				words, w = append(words, string(w)), w[:0]
			}
			continue
		}
		if c == '\\' && i+1 < len(line) {
			i++
			c = line[i]
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		w = append(w, c)
	}
	if len(w) > 0 {
		words = append(words, string(w))
	}
	return words
}

// Text returns the file as it is on disk, "" if there is none, at most
// MaxBlocked bytes: a file longer than that is refused by Reload anyway,
// and what is in its place (a log file) must not take the daemon's memory
// at each read of the 9P file.
func (b *Blocked) Text() (string, error) {
	f, _, err := regfile.Open(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBlocked))
	return string(data), err
}

// Add validates the lines of text and appends them to the file, all of
// them or none, synced; the classification sees them at once. A bad line
// fails the whole call with an error naming it ("invalid blocked line N
// ..."), and the file is left as it was; a line with a control character
// or not in UTF-8 is bad too, since people read the file. So does a file
// that already has a bad line (an edit not yet reloaded): appending to it
// would change a file that cannot take effect, behind an error. Text of
// blank lines only writes nothing.
func (b *Blocked) Add(text string) error {
	if strings.TrimSpace(text) == "" {
		return nil
	}
	if _, err := parseBlocked(strings.NewReader(text), int64(len(text)), "blocked"); err != nil {
		return err
	}
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if err := checkText(strings.TrimSuffix(l, "\r")); err != nil {
			return fmt.Errorf("invalid blocked line %d %s: %v", i+1, quote(l), err)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.load(); err != nil {
		return fmt.Errorf("%v; nothing appended: fix the file first", err)
	}
	f, err := os.OpenFile(b.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0644)
	if err != nil {
		return fmt.Errorf("blocked: %v", err)
	}
	defer f.Close()
	switch err := appendLines(f, text, MaxBlocked); {
	case errors.Is(err, errFull):
		return fmt.Errorf("blocked: file too long (limit %d bytes)", MaxBlocked)
	case err != nil:
		return fmt.Errorf("blocked: %v", err)
	}
	return b.load()
}
