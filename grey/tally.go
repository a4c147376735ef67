package grey

import (
	"net/netip"
	"os"
	"path/filepath"
	"sync"
)

// The greylist's bounds on triplets. A triplet costs an inode and, for a
// made-up recipient, nothing to the client, so a flood of them (bob+1,
// bob+2, ... from one address) must not fill the greylist and leave it
// refusing to register anyone else. Three bounds:
//
//   - Settings.MaxTriplets (greytriplets), all triplets: the disk;
//   - Settings.PerClient (greyperclient), the triplets of one client: its
//     pool (greyprefix), and for IPv6 no narrower than its /64, the least a
//     site is given (RFC 6177), as maxperip counts, so that one host does
//     not get a share for each of its 2^64 addresses. A client over it is
//     refused (451) without registering, until expiry makes room; others
//     register as before. Filling the greylist then takes MaxTriplets /
//     PerClient clients, not one;
//   - Settings.PerMessage (greypermsg), the triplets one Check registers:
//     the first few new recipients of a message. The message is refused
//     whole anyway, and a retry passes if any of its recipients is in the
//     window, so the rest would only be dead weight. A sender retries
//     with the same recipients (it was told 451 for the message, not for
//     some of them), and those are looked up whatever their number and
//     order, so registering the first few is enough; registering one
//     would do, a few cover a sender that splits its retry.
//
// A tally keeps the counts of the file store in memory, so that a
// registration costs a map lookup, not a directory count: the whole as of
// the last Expire, which rebuilds it from what it walks, plus the
// registrations made since. Its memory is one entry per client that has a
// triplet: bounded by MaxTriplets (some 40 bytes an entry, 40 MB at a
// million). Until a first Expire has walked the store (the smtpd program
// never walks it; smtpfs does at start), a client the tally has not seen
// is counted once from its directory, so that its cap holds from its first
// message: that counts the pool's own directory under our address, not
// the other addresses of an IPv6 /64 nor the triplets it registered for
// sender domains (sender.go), which only a walk attributes. Triplets removed by hand are counted
// until the next Expire. Registrations made while Expire walks are added
// to what it found, and those it also saw are counted twice until the next
// Expire: a bounded error, and on the side of refusing.
type tally struct {
	mu      sync.Mutex
	total   int
	per     map[clientKey]int32
	known   bool // a walk counted every client: one missing from per has none
	walking bool
	during  map[clientKey]int32 // registrations since the walk began
	duringN int
}

// A clientKey names the unit PerClient counts: the 16 bytes of its
// network's address (IPv4 as IPv4-mapped IPv6, which no remote address
// is, having been unmapped by canon). The length is that of its family
// under the settings in use.
type clientKey [16]byte

// clientOf is the unit of the per-client bound that remote belongs to:
// its pool, no narrower than a /64 for IPv6.
func clientOf(remote netip.Addr, s Settings) netip.Prefix {
	p := poolOf(remote, s)
	if remote.Is6() && p.Bits() > 64 {
		p, _ = remote.Prefix(64)
	}
	return p
}

func keyOf(p netip.Prefix) clientKey { return p.Addr().As16() }

// reserve counts one more triplet for client and returns Registered,
// unless that would pass MaxTriplets (Full) or PerClient (ClientFull),
// and then counts nothing. seed counts the client's triplets on disk,
// for a client the tally does not know; it is called without the lock.
func (t *tally) reserve(c clientKey, s Settings, seed func() int) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.per[c]
	if !ok && !t.known {
		t.mu.Unlock()
		m := int32(min(seed(), s.PerClient))
		t.mu.Lock()
		if n, ok = t.per[c]; !ok {
			n = m
		}
	}
	switch {
	case t.total >= s.MaxTriplets:
		return Full
	case int(n) >= s.PerClient:
		return ClientFull
	}
	if t.per == nil {
		t.per = map[clientKey]int32{}
	}
	t.per[c] = n + 1
	t.total++
	if t.walking {
		t.during[c]++
		t.duringN++
	}
	return Registered
}

// release takes back a reservation whose file was not made.
func (t *tally) release(c clientKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.per[c]; n > 1 {
		t.per[c] = n - 1
	} else {
		delete(t.per, c)
	}
	t.total--
	if t.walking && t.during[c] > 0 {
		t.during[c]--
		t.duringN--
	}
}

// beginWalk starts recording registrations for endWalk. Walks do not
// overlap (Greylist.expiring).
func (t *tally) beginWalk() {
	t.mu.Lock()
	t.walking, t.during, t.duringN = true, map[clientKey]int32{}, 0
	t.mu.Unlock()
}

// endWalk replaces the counts with a walk's, per client and in all, plus
// what was registered meanwhile; a walk that did not finish (ok false)
// changes nothing.
func (t *tally) endWalk(per map[clientKey]int32, total int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		for c, n := range t.during {
			per[c] += n
		}
		t.per, t.total, t.known = per, total+t.duringN, true
	}
	t.walking, t.during, t.duringN = false, nil, 0
}

// walkCounter counts the kept triplets of a walk per client. The
// directory of a triplet names its pool; the client is that pool's unit
// under the settings in use (directories of another greyprefix are
// counted under theirs). Consecutive files share a directory, which is
// parsed once.
type walkCounter struct {
	s    Settings
	per  map[clientKey]int32
	dir  string
	key  clientKey
	good bool // dir names an address
}

func newWalkCounter(s Settings) *walkCounter {
	return &walkCounter{s: s, per: map[clientKey]int32{}}
}

func (w *walkCounter) add(path string) {
	if dir := filepath.Dir(path); dir != w.dir {
		w.dir = dir
		a, err := netip.ParseAddr(filepath.Base(dir))
		w.good = err == nil && canon(a) == a
		if w.good {
			w.key = keyOf(clientOf(a, w.s))
		}
	}
	if w.good {
		w.per[w.key]++
	} else if isSenderDir(w.dir) { // a sender domain's: the client that made it (sender.go)
		if a, ok := clientInFile(path); ok {
			w.per[keyOf(clientOf(a, w.s))]++
		}
	}
}

// countDir is the number of entries of dir, at most limit (0 if it
// cannot be read): a client's triplets under one of our addresses.
func countDir(dir string, limit int) int {
	d, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	n := 0
	for n < limit {
		names, err := d.Readdirnames(min(limit-n, 256))
		n += len(names)
		if err != nil {
			break
		}
	}
	return n
}
