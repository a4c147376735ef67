package grey

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Greylisting by sender domain. A message whose sender's domain passed
// SPF (RFC 7208: the domain says the client may send its mail) is
// greylisted as the pair (sender domain, recipient) rather than (client
// pool, recipient): a sender's farm of outbound servers that retries
// from another of its addresses passes, where keyed by address each of
// them would wait out the window anew. The Greylist hands the domain to
// its store in Query.Sender, and every store keeps such triplets apart
// from the pools' (the file store in grey/tmp/<local>/@<domain>/<rcpt>;
// an address never has an '@'), so they work with the file store and
// with a shared one alike.
//
// The bounds still count the real client: a triplet of the domain that a
// Check registers counts for the client that made it under greyperclient
// (its pool, at least an IPv6 /64), as one of the pool's own would, so
// that a client cannot escape its share by naming senders whose SPF it
// passes, nor a domain's servers share one; greytriplets and greypermsg
// count them as any others. The file store writes the client's address
// into the triplet file, so that an expiry's count gives it back to the
// client. The whitelist is still of addresses: the client's is looked up
// first, and a pass adds it, as Check does; the domain's other addresses
// pass through its triplets while they are in the window. The caller
// decides when SPF counts (a pass through "+all" says nothing of the
// client, and should not).

// CheckSender is Check keyed by the sender domain domain instead of the
// client's pool, for a sender whose domain passed SPF.
func (g *Greylist) CheckSender(local, remote netip.Addr, domain, from string, rcpts []string) (pass bool) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" {
		return g.Check(local, remote, from, rcpts)
	}
	return g.check(local, remote, fileName(domain), rcpts)
}

// SenderDir is the name of the directory, or of the prefix, of the
// triplets of a sender domain's key (Query.Sender): "@" and the key,
// which no address or network is.
func SenderDir(sender string) string { return "@" + sender }

// maxClientText bounds what a sender triplet file holds: an address.
const maxClientText = 64

// clientInFile reads the address of the client that registered the
// sender triplet at path, written there by FileStore.triplet.
func clientInFile(path string) (netip.Addr, bool) {
	f, err := os.Open(path)
	if err != nil {
		return netip.Addr{}, false
	}
	defer f.Close()
	var buf [maxClientText]byte
	n, _ := f.Read(buf[:])
	a, err := netip.ParseAddr(strings.TrimSpace(string(buf[:n])))
	return a, err == nil && canon(a) == a
}

// isSenderDir reports whether the directory dir of a triplet is a sender
// domain's.
func isSenderDir(dir string) bool { return strings.HasPrefix(filepath.Base(dir), "@") }
