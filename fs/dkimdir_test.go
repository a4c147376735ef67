package fs_test

import (
	"sort"
	"strings"
	"sync"
	"testing"

	"9fans.net/go/plan9"

	"smtpfs/fs"
	"smtpfs/fs/fstest"
)

// dkimBackend holds the records of a few domains; add makes one.
type dkimBackend struct {
	mu  sync.Mutex
	rec map[string]string
}

func (b *dkimBackend) Domains() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var d []string
	for k := range b.rec {
		d = append(d, k)
	}
	sort.Strings(d)
	return d
}

func (b *dkimBackend) DNSRecords(domain string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rec[domain]
}

func (b *dkimBackend) add(domain, rec string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rec[domain] = rec
}

// TestDKIMDir: dkim/ lists a read-only file per domain with keys, holding
// its records as the backend renders them when the file is opened; a
// domain given a key later appears; nothing can be written or made there.
func TestDKIMDir(t *testing.T) {
	b := &dkimBackend{rec: map[string]string{"example.org": "s1._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p=x\"\n"}}
	e := newEnv(t, func(c *fs.Config) { c.DKIM = b })
	fsys := fstest.Dial(t, e.ds)
	list := func() []string {
		fid, err := fsys.Open("dkim", plan9.OREAD)
		if err != nil {
			t.Fatal(err)
		}
		defer fid.Close()
		dirs, err := fid.Dirreadall()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range dirs {
			got = append(got, d.Name+" "+d.Mode.String())
		}
		sort.Strings(got)
		return got
	}
	if got := list(); strings.Join(got, ",") != "example.org --r--r--r--" {
		t.Errorf("dkim/: %q", got)
	}
	if got := fstest.Read(t, fsys, "dkim/example.org"); got != b.DNSRecords("example.org") {
		t.Errorf("dkim/example.org: %q", got)
	}
	b.add("example.net", "; selector a\n")
	b.add("example.org", "; two keys now\n")
	if got := list(); strings.Join(got, ",") != "example.net --r--r--r--,example.org --r--r--r--" {
		t.Errorf("dkim/ after a new key: %q", got)
	}
	if got := fstest.Read(t, fsys, "dkim/example.org"); got != "; two keys now\n" {
		t.Errorf("dkim/example.org after a new key: %q", got)
	}
	if err := fstest.Write(fsys, "dkim/example.org", plan9.OWRITE, "x\n"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("write: %v", err)
	}
	if _, err := fsys.Create("dkim/example.com", plan9.OWRITE, 0644); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("create: %v", err)
	}
	if err := fsys.Remove("dkim/example.org"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("remove: %v", err)
	}
}
