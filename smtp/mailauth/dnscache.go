package mailauth

import (
	"container/list"
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// A Cache is a Resolver that keeps the answers of another for as long as
// their TTL allows, at most MaxTTL, and a bounded number of them, of a
// bounded total size: when full, the least recently used answer goes. Failures (no answer) are
// not kept: the next question asks again. The records it returns are
// shared between callers, who must not change them.
//
// A check of one message asks up to a few dozen questions (RFC 7208
// §4.6.4 bounds SPF), and a burst of mail from one sender asks the same
// ones again; the cache answers those without a round trip.
type Cache struct {
	r       Resolver
	max     int              // answers kept
	bytes   int              // their size, bounded by max*avgEntry
	MaxTTL  time.Duration    // bound on any TTL; 0 means 1 day
	Now     func() time.Time // the clock, for tests
	mu      sync.Mutex
	lru     *list.List // of *cacheEntry, most recently used first
	entries map[string]*list.Element

	hits, misses atomic.Int64
}

type cacheEntry struct {
	key     string
	size    int
	recs    any // []string, []netip.Addr or []MX
	ans     Answer
	expires time.Time
}

// DefaultCacheSize is the number of answers a Cache made with size 0 keeps.
const DefaultCacheSize = 10000

// avgEntry bounds the memory of a cache: size answers of avgEntry bytes on
// average (a TXT answer may hold 64 KiB; most hold a few hundred bytes),
// 10 MB for the default size.
const avgEntry = 1024

// NewCache returns a Cache in front of r keeping up to size answers
// (DefaultCacheSize if size <= 0).
func NewCache(r Resolver, size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	return &Cache{r: r, max: size, Now: time.Now, lru: list.New(), entries: map[string]*list.Element{}}
}

// Stats returns how many questions were answered from the cache and how
// many were passed on.
func (c *Cache) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

// Len returns the number of answers kept.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// get returns the live entry for key, with its TTL counted down.
func (c *Cache) get(key string) (any, Answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, Answer{}, false
	}
	e := el.Value.(*cacheEntry)
	left := e.expires.Sub(c.Now())
	if left <= 0 {
		c.lru.Remove(el)
		c.bytes -= e.size
		delete(c.entries, key)
		return nil, Answer{}, false
	}
	c.lru.MoveToFront(el)
	ans := e.ans
	ans.TTL = left.Truncate(time.Second)
	return e.recs, ans, true
}

// put keeps an answer; a TTL of zero is not kept (RFC 1035 §3.2.1).
func (c *Cache) put(key string, recs any, ans Answer) {
	ttl := ans.TTL
	maxTTL := c.MaxTTL
	if maxTTL == 0 {
		maxTTL = 24 * time.Hour
	}
	ttl = min(ttl, maxTTL)
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cacheEntry{key: key, size: len(key) + recSize(recs), recs: recs, ans: ans, expires: c.Now().Add(ttl)}
	if el, ok := c.entries[key]; ok {
		c.bytes -= el.Value.(*cacheEntry).size
		el.Value = e
		c.lru.MoveToFront(el)
	} else {
		c.entries[key] = c.lru.PushFront(e)
	}
	c.bytes += e.size
	for c.lru.Len() > c.max || c.bytes > c.max*avgEntry {
		last := c.lru.Back()
		c.lru.Remove(last)
		c.bytes -= last.Value.(*cacheEntry).size
		delete(c.entries, last.Value.(*cacheEntry).key)
	}
}

// recSize is about what records take in memory.
func recSize(recs any) int {
	n := 64
	switch recs := recs.(type) {
	case []string:
		for _, s := range recs {
			n += 16 + len(s)
		}
	case []netip.Addr:
		n += 24 * len(recs)
	case []MX:
		for _, mx := range recs {
			n += 24 + len(mx.Host)
		}
	}
	return n
}

// lookup answers key from the cache or by ask.
func lookup[T any](c *Cache, key string, ask func() ([]T, Answer, error)) ([]T, Answer, error) {
	if recs, ans, ok := c.get(key); ok {
		c.hits.Add(1)
		return recs.([]T), ans, nil
	}
	c.misses.Add(1)
	recs, ans, err := ask()
	if err == nil {
		c.put(key, recs, ans)
	}
	return recs, ans, err
}

// LookupTXT implements Resolver.
func (c *Cache) LookupTXT(ctx context.Context, name string) ([]string, Answer, error) {
	return lookup(c, "TXT "+normName(name), func() ([]string, Answer, error) { return c.r.LookupTXT(ctx, name) })
}

// LookupIP implements Resolver.
func (c *Cache) LookupIP(ctx context.Context, network, name string) ([]netip.Addr, Answer, error) {
	return lookup(c, network+" "+normName(name), func() ([]netip.Addr, Answer, error) { return c.r.LookupIP(ctx, network, name) })
}

// LookupMX implements Resolver.
func (c *Cache) LookupMX(ctx context.Context, name string) ([]MX, Answer, error) {
	return lookup(c, "MX "+normName(name), func() ([]MX, Answer, error) { return c.r.LookupMX(ctx, name) })
}

// LookupPTR implements Resolver.
func (c *Cache) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, Answer, error) {
	return lookup(c, "PTR "+ip.Unmap().String(), func() ([]string, Answer, error) { return c.r.LookupPTR(ctx, ip) })
}
