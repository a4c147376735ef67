package durable

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
