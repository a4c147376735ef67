package tlspolicy

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"smtpfs/internal/regfile"
)

// The cache of MTA-STS policies (RFC 8461 §5.1). A policy is kept for its
// max_age from the time it was fetched, in memory and, when CacheDir is
// set, in one file per domain there, so that it outlives a restart: a
// policy is worth most when an attacker blocks the next fetch. It is used
// without a fetch while the TXT id is the one it was fetched under and it
// is less than half its max_age old; past that, or when the id changed, it
// is fetched again, and if the fetch fails the cached policy is used until
// it expires (§5.1). It is also used when the TXT record cannot be found
// or read, since a domain withdraws a policy by publishing mode none, not
// by removing the record (§8.3). A failed fetch is not tried again for
// fetchBackoff, so that a dead policy server does not cost every delivery
// a 30 s wait.
//
// A cache file holds a short header, a blank line, then the policy as
// ParsePolicy reads it:
//
//	# MTA-STS policy of example.org (RFC 8461)
//	id 20260101T000000
//	fetched 2026-01-02T03:04:05Z
//	expires 2026-01-09T03:04:05Z
//
//	version: STSv1
//	mode: enforce
//	mx: mx.example.org
//	max_age: 604800
//
// It is written to a temporary file in the same directory, synced and
// renamed over the old one, mode 0600; expires is for people, fetched
// and max_age count.

const (
	fetchBackoff = 5 * time.Minute
	maxMemory    = 4096 // domains whose policy is kept in memory
	maxCacheFile = maxPolicySize + 1024
	stripes      = 64 // locks that keep two fetches for one domain apart
)

// A cached policy.
type cached struct {
	ID      string
	Fetched time.Time
	Policy  *STSPolicy
}

func (c *cached) expires() time.Time { return c.Fetched.Add(c.Policy.MaxAge) }

// stale reports whether it is time to fetch the policy again.
func (c *cached) stale(now time.Time) bool { return !now.Before(c.Fetched.Add(c.Policy.MaxAge / 2)) }

// An entry is what memory holds for a domain.
type entry struct {
	c      *cached   // nil when none is known
	failed time.Time // last failed fetch
}

// stsPolicy returns the MTA-STS policy in force for domain, nil for none,
// and a note on where it came from for the reasons shown to people.
func (e *Engine) stsPolicy(ctx context.Context, domain string) (*STSPolicy, string) {
	mu := &e.stripe[stripeOf(domain)]
	mu.Lock()
	defer mu.Unlock()
	now := e.now()
	c := e.cachedPolicy(domain, now)
	id, err := e.lookupSTS(ctx, domain)
	switch {
	case err != nil && c != nil:
		return c.Policy, fmt.Sprintf("cached policy id %s (TXT record: %v)", c.ID, err)
	case err == errNoSTS:
		return nil, "no MTA-STS policy"
	case err != nil:
		return nil, fmt.Sprintf("no MTA-STS policy (TXT record: %v)", err)
	case c != nil && c.ID == id && !c.stale(now):
		return c.Policy, "cached policy id " + id
	case e.failedRecently(domain, now) && c != nil:
		return c.Policy, "cached policy id " + c.ID + " (last fetch failed)"
	case e.failedRecently(domain, now):
		return nil, "no MTA-STS policy (last fetch failed)"
	}
	p, err := e.fetch(ctx, domain)
	if err != nil {
		e.fetchFailed(domain, now)
		e.logf("mta-sts: %s: policy fetch failed: %v", domain, err)
		if c != nil {
			return c.Policy, fmt.Sprintf("cached policy id %s (fetch failed: %v)", c.ID, err)
		}
		return nil, fmt.Sprintf("no MTA-STS policy (fetch failed: %v)", err)
	}
	e.storePolicy(domain, &cached{ID: id, Fetched: now, Policy: p})
	return p, "policy id " + id + " fetched"
}

func stripeOf(domain string) int {
	h := fnv.New32a()
	io.WriteString(h, domain)
	return int(h.Sum32() % stripes)
}

// cachedPolicy returns the unexpired policy of domain from memory, else
// from its cache file.
func (e *Engine) cachedPolicy(domain string, now time.Time) *cached {
	e.mu.Lock()
	ent, ok := e.mem[domain]
	e.mu.Unlock()
	var c *cached
	if ok {
		c = ent.c
	} else if c = e.readCache(domain); c != nil {
		e.remember(domain, func(ent *entry) { ent.c = c })
	}
	if c == nil || !now.Before(c.expires()) {
		return nil
	}
	return c
}

// storePolicy keeps a fetched policy in memory and in its file.
func (e *Engine) storePolicy(domain string, c *cached) {
	e.remember(domain, func(ent *entry) { *ent = entry{c: c} })
	if e.CacheDir == "" {
		return
	}
	if err := writeAtomic(e.CacheDir, domain, []byte(c.text(domain))); err != nil {
		e.logf("mta-sts: %s: cannot cache the policy: %v", domain, err)
	}
}

func (e *Engine) fetchFailed(domain string, now time.Time) {
	e.remember(domain, func(ent *entry) { ent.failed = now })
}

func (e *Engine) failedRecently(domain string, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ent, ok := e.mem[domain]
	return ok && !ent.failed.IsZero() && now.Sub(ent.failed) < fetchBackoff
}

// remember changes the memory entry of domain, making room if need be.
func (e *Engine) remember(domain string, f func(*entry)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mem == nil {
		e.mem = map[string]*entry{}
	}
	ent, ok := e.mem[domain]
	if !ok {
		for d := range e.mem {
			if len(e.mem) < maxMemory {
				break
			}
			delete(e.mem, d)
		}
		ent = &entry{}
		e.mem[domain] = ent
	}
	f(ent)
}

// text returns the cache file of the policy.
func (c *cached) text(domain string) string {
	return fmt.Sprintf("# MTA-STS policy of %s (RFC 8461)\nid %s\nfetched %s\nexpires %s\n\n%s",
		domain, c.ID, c.Fetched.UTC().Format(time.RFC3339), c.expires().UTC().Format(time.RFC3339), c.Policy)
}

// readCache reads the cache file of domain; nil when there is none or it
// cannot be read, which is logged.
func (e *Engine) readCache(domain string) *cached {
	if e.CacheDir == "" {
		return nil
	}
	f, _, err := regfile.Open(filepath.Join(e.CacheDir, domain)) // never a FIFO's wait
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		defer f.Close()
		var b []byte
		if b, err = io.ReadAll(io.LimitReader(f, maxCacheFile+1)); err == nil {
			var c *cached
			if c, err = parseCache(b); err == nil {
				return c
			}
		}
	}
	e.logf("mta-sts: %s: cache file ignored: %v", domain, err)
	return nil
}

// parseCache parses a cache file.
func parseCache(b []byte) (*cached, error) {
	if len(b) > maxCacheFile {
		return nil, fmt.Errorf("larger than %d bytes", maxCacheFile)
	}
	head, body, ok := strings.Cut(string(b), "\n\n")
	if !ok {
		return nil, errors.New("no blank line after the header")
	}
	c := &cached{}
	for _, line := range strings.Split(head, "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "id":
			c.ID = v
		case "fetched":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, fmt.Errorf("fetched: %v", err)
			}
			c.Fetched = t
		}
	}
	if c.ID == "" || c.Fetched.IsZero() {
		return nil, errors.New("no id or no fetched line")
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return nil, err
	}
	c.Policy = p
	return c, nil
}

// writeAtomic writes data to dir/name through a temporary file that is
// synced and renamed, mode 0600, then syncs the directory.
func writeAtomic(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
