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
	next    *run   // the run that callers arriving now join; nil until one arrives
	runs    uint64 // runs started
	callers int    // in Do
}

// A run is one call of the action: the files of the callers it covers,
// and once done, its error, which is theirs and no one else's.
type run struct {
	files []*os.File
	done  bool
	err   error
}

// Do adds files to the next run of f and returns when that run, which
// starts after the call, has finished, with its error.
func (g *Group) Do(files []*os.File, f func([]*os.File) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	if g.next == nil {
		g.next = &run{}
	}
	mine := g.next
	mine.files = append(mine.files, files...)
	g.callers++
	defer func() { g.callers-- }()
	for !mine.done {
		if g.running {
			g.cond.Wait()
			continue
		}
		// Nothing runs, so mine has not started: it is g.next.
		g.running, g.next = true, nil
		g.runs++
		g.mu.Unlock()
		err := f(mine.files)
		g.mu.Lock()
		g.running = false
		mine.done, mine.err = true, err
		g.cond.Broadcast()
	}
	return mine.err
}

// Runs returns how many runs have started.
func (g *Group) Runs() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runs
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
