package authfail

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func fileSizeOf(t *testing.T, f *File) int64 {
	t.Helper()
	fi, err := os.Stat(f.path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestFileShared: stores on one file, as in separate processes, add up to
// one count; concurrent failures are all counted (flock): Max*k failures
// of one client at one moment lock it out exactly k times.
func TestFileShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grey", "authfail")
	c := client("192.0.2.7")
	const workers, k = 5, 5
	var locks atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			f := NewFile(path)
			for range Max * k / workers {
				locked, err := f.Failed(c, t0)
				if err != nil {
					t.Error(err)
					return
				}
				if locked {
					locks.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if locks.Load() != k {
		t.Errorf("%d failures locked the client out %d times, want %d", Max*k, locks.Load(), k)
	}
	if locked, err := NewFile(path).Locked(c, t0); !locked || err != nil {
		t.Errorf("another store on the file: locked %v, %v", locked, err)
	}
}

// TestFileModes: the file is made 0600, in a directory made 0700, and has
// its fixed size from the start.
func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "grey")
	f := NewFile(filepath.Join(dir, "authfail"))
	if locked, err := f.Locked(client("192.0.2.7"), t0); locked || err != nil {
		t.Fatalf("fresh store: locked %v, %v", locked, err)
	}
	for name, want := range map[string]os.FileMode{dir: 0700, f.path: 0600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	if size := fileSizeOf(t, f); size != fileSize {
		t.Errorf("size %d, want %d", size, fileSize)
	}
}

// TestFileDamage: a file that is not one of ours, or cut short, is made
// anew; a torn record reads as empty; neither is an error.
func TestFileDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authfail")
	f := NewFile(path)
	c := client("2001:db8::/64")
	for _, junk := range [][]byte{nil, []byte("garbage\n"), make([]byte, fileSize)} {
		if err := os.WriteFile(path, junk, 0600); err != nil {
			t.Fatal(err)
		}
		for range Max {
			if _, err := f.Failed(c, t0); err != nil {
				t.Fatalf("on a file of %d bytes: %v", len(junk), err)
			}
		}
		if locked, _ := f.Locked(c, t0); !locked {
			t.Errorf("on a file of %d bytes: not locked", len(junk))
		}
	}
	// Tear every record: each reads as empty.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := headerSize; off < len(b); off += slotSize {
		b[off+20] ^= 0xff
	}
	if err := os.WriteFile(path, b, 0600); err != nil {
		t.Fatal(err)
	}
	if locked, err := f.Locked(c, t0); locked || err != nil {
		t.Errorf("with the record torn: locked %v, %v", locked, err)
	}
	if _, err := f.Failed(c, t0); err != nil {
		t.Error(err)
	}
}

// TestFileUnwritable: a store it cannot open is an error, which names the
// file.
func TestFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "grey")
	os.WriteFile(blocker, nil, 0600) // a file where the directory should be
	f := NewFile(filepath.Join(blocker, "authfail"))
	if _, err := f.Failed(client("192.0.2.7"), t0); err == nil {
		t.Errorf("no error")
	}
}
