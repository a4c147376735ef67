// Package durable makes files durable for concurrent writers at the cost
// of few syncs: a Group runs one sync on behalf of every caller waiting
// (group commit), and Flush makes a batch of files durable with one
// syncfs(2) per file system where that is safe. The queue and the Maildir
// delivery share it.
package durable

import (
	"errors"
	"os"
	"sync"
)

// A Group runs an action on behalf of every caller that arrived before it
// started: group commit. One caller at a time runs it, over the files of
// all; those arriving meanwhile wait for the next run, which covers them
// all. The zero Group is ready to use.
type Group struct {
	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	next    uint64 // number of the next run to start
	done    uint64 // number of the last run finished
	failed  uint64 // number of the last run that failed
	failure error
	files   []*os.File // of the callers waiting for the next run
	callers int        // in Do
}

// Do adds files to the next run of f and returns when a run that started
// after the call has finished, with that run's error.
func (g *Group) Do(files []*os.File, f func([]*os.File) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
		g.next = 1
	}
	mine := g.next // the first run to start from now on covers this caller
	g.files = append(g.files, files...)
	g.callers++
	defer func() { g.callers-- }()
	for g.done < mine {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		run, batch := g.next, g.files
		g.next++
		g.files = nil
		g.mu.Unlock()
		err := f(batch)
		g.mu.Lock()
		g.running = false
		g.done = run
		if err != nil {
			g.failed, g.failure = run, err
		}
		g.cond.Broadcast()
	}
	if g.failed >= mine {
		return g.failure
	}
	return nil
}

// Runs returns how many runs have started.
func (g *Group) Runs() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.next == 0 {
		return 0
	}
	return g.next - 1
}

// Callers returns how many callers are in Do: waiting, or running f.
func (g *Group) Callers() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.callers
}

// SyncEach fsyncs files in parallel, each once however often it is
// named (the callers of a Group may share a directory).
func SyncEach(files []*os.File) error {
	if len(files) == 1 {
		return files[0].Sync()
	}
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	seen := map[*os.File]bool{}
	for i, f := range files {
		if seen[f] {
			continue
		}
		seen[f] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.Sync()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
