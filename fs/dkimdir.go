package fs

import (
	"strings"
	"sync"

	ninep "github.com/knusbaum/go9p/fs"
	"github.com/knusbaum/go9p/proto"
)

// DKIM is what the dkim directory shows: the DKIM keys of our domains, a
// read-only file per domain holding the TXT records to publish in DNS for
// its keys (mailauth.KeyStore is one). Keys are made through ctl (dkim
// newkey), never through the tree.
type DKIM interface {
	// Domains returns the domains that have keys.
	Domains() []string
	// DNSRecords returns the text of a domain's file: its TXT records in
	// zone-file syntax.
	DNSRecords(domain string) string
}

// dkimDir is dkim/: its entries are the domains with keys at the time of
// each walk or listing, each a textFile rendered when it is opened. Nodes
// are kept per domain, so that a file keeps its qid.
type dkimDir struct {
	node
	s     *Server
	keys  DKIM
	mu    sync.Mutex
	nodes map[string]*textFile
}

// Children lists the domains that have keys.
func (d *dkimDir) Children() map[string]ninep.FSNode {
	domains := d.keys.Domains()
	d.mu.Lock()
	defer d.mu.Unlock()
	nodes := make(map[string]*textFile, len(domains))
	children := make(map[string]ninep.FSNode, len(domains))
	for _, dom := range domains {
		if dom == "" || dom == "." || dom == ".." || strings.Contains(dom, "/") {
			continue
		}
		n := d.nodes[dom]
		if n == nil {
			n = &textFile{node: newNode(d.s.fsys, dom, d.s.cfg.Owner, 0444),
				render: func() []byte { return []byte(d.keys.DNSRecords(dom)) }}
			n.SetParent(d)
		}
		nodes[dom] = n
		children[dom] = n
	}
	d.nodes = nodes
	return children
}

// newDKIMDir makes dkim/.
func newDKIMDir(s *Server, keys DKIM) *dkimDir {
	return &dkimDir{node: newNode(s.fsys, "dkim", s.cfg.Owner, proto.DMDIR|0555), s: s, keys: keys}
}
