package mailauth

import (
	"sync"
)

// Counters count verdicts for the stats file: spf.<result>,
// dkim.<result> (one per signature), dmarc.<result>, and dmarc.quarantine
// and dmarc.reject for the dispositions. It is safe for concurrent use;
// the zero value is ready.
type Counters struct {
	mu sync.Mutex
	n  map[string]int64
}

// A Counter is one named count.
type Counter struct {
	Name  string // e.g. "spf.pass"
	Value int64
}

// counterNames are the counters, in the order Snapshot gives them.
var counterNames = func() []string {
	var names []string
	for _, r := range []Result{None, Neutral, Pass, Fail, SoftFail, TempError, PermError} {
		names = append(names, "spf."+string(r))
	}
	for _, r := range []Result{None, Pass, Fail, Policy, Neutral, TempError, PermError} {
		names = append(names, "dkim."+string(r))
	}
	for _, r := range []Result{None, Pass, Fail, TempError, PermError} {
		names = append(names, "dmarc."+string(r))
	}
	return append(names, "dmarc.quarantine", "dmarc.reject")
}()

// Add counts a verdict.
func (c *Counters) Add(v Verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	if v.SPF != nil {
		c.n["spf."+string(v.SPF.Result)]++
	}
	for _, d := range v.DKIM {
		c.n["dkim."+string(d.Result)]++
	}
	if v.DMARC != nil {
		c.n["dmarc."+string(v.DMARC.Result)]++
		if d := v.DMARC.Disposition; d == Quarantine || d == Reject {
			c.n["dmarc."+string(d)]++
		}
	}
}

// Snapshot returns every counter, zeros included, in a fixed order.
func (c *Counters) Snapshot() []Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Counter, len(counterNames))
	for i, name := range counterNames {
		out[i] = Counter{name, c.n[name]}
	}
	return out
}
