package grey

import (
	"context"
	"net/netip"
	"time"
)

// The greylist's state is kept by a Store: the triplets, and the
// whitelist. The file store (FileStore: files under the mail root, as
// upas kept them) serves one host; grey/redisstore keeps the same state in
// Redis, shared by every host of a domain's MX set. The Greylist holds the
// policy (the window, the pools, the bounds, what is logged) and asks its
// store the questions of one Check at once, so that a store across the
// network answers them in one round trip.

// A Store keeps the triplets and the whitelist of a Greylist. Its methods
// are safe for concurrent use. An error from Triplets means the store
// could not answer: the Greylist then decides by Settings.FailClosed, and
// counts it.
type Store interface {
	// Whitelist returns the store's whitelist; nil for none.
	Whitelist() WhitelistStore
	// Triplets looks up the triplets of q.Keys in order, registering the
	// new ones within the bounds of q.Settings, and stops at the first
	// that passes (Recent). A store that knows more of the whitelist than
	// its local index (a shared one) may answer Whitelisted instead.
	Triplets(q *Query) (Answer, error)
	// Expire removes the triplets whose first attempt is older than
	// s.Max at now, and returns how many it removed and kept.
	Expire(ctx context.Context, s Settings, now time.Time) (removed, kept int, err error)
	// Close releases what the store holds (connections, goroutines).
	Close() error
}

// A WhitelistStore is the whitelist of a Store: lines of text, in order,
// with their comments, and an index that answers Contains. *Whitelist,
// the file grey/whitelist, is one.
type WhitelistStore interface {
	// Contains reports whether ip is covered by an entry. It is on the
	// path of every message and answers from memory.
	Contains(ip netip.Addr) bool
	// Add checks the lines of text and appends them, all or none; when
	// it returns nil they are stored durably and Contains sees them.
	Add(text string) error
	// AddClient appends line, whose entry is p, unless an entry already
	// covers all of p: the greylist's own additions.
	AddClient(line string, p netip.Prefix) error
	// Remove removes the lines whose entry is exactly one of ps and
	// returns how many it removed.
	Remove(ps ...netip.Prefix) (int, error)
	// Bytes returns the whitelist as text, what `cat whitelist` shows.
	Bytes() ([]byte, error)
	// Len returns the number of entries in the index.
	Len() int
	// Reload reads the whole whitelist again.
	Reload() error
}

// A Query is what one Check asks of the triplets: those of the client
// at Remote, whose pool is Pool, talking to our address Local, for the
// recipients whose keys are Keys (TripletKey), at Now. When Sender is
// set, the triplets are the sender domain's rather than the pool's
// (CheckSender): (Sender, recipient), whichever client registered them;
// those a Check registers still count for Client under PerClient.
type Query struct {
	Local    netip.Addr   // our address; invalid if unknown
	Remote   netip.Addr   // the client, unmapped, without zone
	Pool     netip.Prefix // its pool (greyprefix): part of the triplet
	Client   netip.Prefix // what PerClient counts: the pool, at least an IPv6 /64
	Sender   string       // the key (TripletKey) of a sender domain that passed SPF; "": none
	Keys     []string     // the recipients' keys, in order; none is empty
	Now      time.Time
	Settings Settings
}

// LocalName is the text of q.Local in a triplet: the address, or
// "unknown".
func (q *Query) LocalName() string { return dirName(q.Local) }

// An Answer is a store's answer to a Query.
type Answer struct {
	// Whitelisted: the store's whitelist covers the client, though the
	// local index did not (yet) say so. Results is empty.
	Whitelisted bool
	// Results has one Result per key looked at, in the order of the
	// keys, up to the first Recent one if any.
	Results []Result
}

// A Result is what one triplet says.
type Result struct {
	Outcome Outcome
	Age     time.Duration // since the first attempt, for Early, Late and Recent
}

// An Outcome is what a triplet lookup found, or did.
type Outcome int

// The outcomes of a triplet.
const (
	Registered Outcome = iota // first sight: registered
	Early                     // seen less than Min ago
	Late                      // seen more than Max ago, or in the future: the clock restarted
	Recent                    // seen within the window: pass
	Full                      // not registered: MaxTriplets reached
	ClientFull                // not registered: the client has PerClient
	Enough                    // not registered: the message registered PerMessage
)

// TripletKey is the key of a recipient in a triplet: a file name that
// stays where it is put (see fileName). The empty recipient has none.
func TripletKey(rcpt string) string { return fileName(rcpt) }
