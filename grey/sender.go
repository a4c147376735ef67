package grey

import (
	"crypto/sha256"
	"net/netip"
	"path/filepath"
	"strings"
)

// Greylisting by sender domain. A message whose sender's domain passed
// SPF (RFC 7208: the domain says the client may send its mail) is
// greylisted as the pair (sender domain, recipient) rather than (client
// address, recipient): a sender's farm of outbound servers that retries
// from another of its addresses passes, where keyed by address each of
// them would wait out the window anew. The triplets are
//
//	grey/tmp/<local-ip>/@<domain>/<rcpt>
//
// (an address never has an '@'), with the domain written as recipients
// are, and the domain counts as one client for PerClient. The whitelist is
// still of addresses: the client's is looked up first, and a pass adds it,
// as Check does; the domain's other addresses pass through its triplets
// while they are in the window. The caller decides when SPF counts (a pass
// through "+all" says nothing of the client, and should not).

// CheckSender is Check keyed by the sender domain domain instead of the
// client's address, for a sender whose domain passed SPF.
func (g *Greylist) CheckSender(local, remote netip.Addr, domain, from string, rcpts []string) (pass bool) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	if domain == "" {
		return g.Check(local, remote, from, rcpts)
	}
	return g.check(local, remote, domain, rcpts)
}

// senderDir is the directory of a sender domain's triplets under ours.
func senderDir(local netip.Addr, domain string) string {
	return filepath.Join(dirName(local), "@"+fileName(domain))
}

// senderKey is the PerClient unit of a sender domain, from the name of
// its directory ("@example.com"): 16 bytes of its hash, which no address
// will equal but by a chance of 2^-128.
func senderKey(dir string) clientKey {
	sum := sha256.Sum256([]byte(dir))
	return clientKey(sum[:16])
}

// key is the PerClient unit of the triplets of tr.
func (tr *tripletRun) key() clientKey {
	if tr.sender != "" {
		return senderKey(filepath.Base(tr.dir))
	}
	return keyOf(tr.client)
}

// clientName names the client of tr in the log: its unit, or its sender
// domain.
func (tr *tripletRun) clientName() string {
	if tr.sender != "" {
		return tr.sender
	}
	return formatPrefix(tr.client)
}
