package durable

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// The group runs its action for every caller that arrived before the
// run started, fewer times than there are callers, and gives a failed
// run's error to its callers.
func TestGroup(t *testing.T) {
	var g Group
	var arrived, covered, runs atomic.Int64
	fail := errors.New("disk on fire")
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := arrived.Add(1)
			err := g.Do(nil, func([]*os.File) error {
				runs.Add(1)
				c := arrived.Load()
				time.Sleep(time.Millisecond) // a slow fsync, while others arrive
				covered.Store(max(covered.Load(), c))
				if c%7 == 0 {
					return fail
				}
				return nil
			})
			if covered.Load() < mine {
				t.Errorf("caller %d returned before a run covered it", mine)
			}
			if err != nil && err != fail {
				t.Errorf("do: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := runs.Load(); n >= 50 || n < 1 {
		t.Errorf("%d runs for 50 callers", n)
	}
}

// A run's error goes to every caller it covered, waiters and runner
// alike, with the files of all of them, and to no one else: not to the
// caller of an earlier run, nor to one that joins the run after.
func TestGroupErrorPerRun(t *testing.T) {
	var g Group
	fail := errors.New("disk on fire")
	started, gate := make(chan struct{}), make(chan struct{})
	var n atomic.Int64
	var batch2 []*os.File
	f := func(files []*os.File) error {
		switch n.Add(1) {
		case 1: // A's run: hold it while B and C arrive
			close(started)
			<-gate
			return nil
		case 2: // B's and C's
			batch2 = files
			return fail
		}
		return nil
	}
	var fs []*os.File
	for range 4 {
		f, err := os.CreateTemp(t.TempDir(), "")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fs = append(fs, f)
	}
	a, b, c, d := fs[0], fs[1], fs[2], fs[3]
	errA := make(chan error)
	go func() { errA <- g.Do([]*os.File{a}, f) }()
	<-started
	var errB, errC error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errB = g.Do([]*os.File{b}, f) }()
	go func() { defer wg.Done(); errC = g.Do([]*os.File{c}, f) }()
	testlib.WaitFor(t, 10*time.Second, "B and C to wait", func() bool { return g.Callers() == 3 })
	close(gate)
	if err := <-errA; err != nil {
		t.Errorf("A, whose run succeeded: %v", err)
	}
	wg.Wait()
	if errB != fail || errC != fail {
		t.Errorf("B, C, whose run failed: %v, %v", errB, errC)
	}
	if len(batch2) != 2 || !slices.Contains(batch2, b) || !slices.Contains(batch2, c) {
		t.Errorf("the second run synced %v, want b and c", batch2)
	}
	if err := g.Do([]*os.File{d}, f); err != nil {
		t.Errorf("D, after a failed run, whose own succeeded: %v", err)
	}
	if r := g.Runs(); r != 3 {
		t.Errorf("%d runs, want 3", r)
	}
}

// Flush makes a batch durable and reports a file it cannot sync.
func TestFlush(t *testing.T) {
	dir := t.TempDir()
	var files []*os.File
	for i := range 5 {
		f, err := os.Create(filepath.Join(dir, string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("data"); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if err := Flush(files); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := Flush(files[:1]); err != nil {
		t.Fatalf("Flush of one: %v", err)
	}
	files[2].Close()
	if err := Flush(files); err == nil {
		t.Errorf("Flush with a closed file succeeded")
	}
}
