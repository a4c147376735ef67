package grey

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// A FileStore keeps the greylist's state in the mail root, as upas did:
// a triplet is an empty file whose modification time is the first
// attempt, <root>/grey/tmp/<local-ip>/<remote-key>/<rcpt> (a sender
// domain's, <root>/grey/tmp/<local-ip>/@<domain>/<rcpt>, holds the
// address of the client that registered it: sender.go), and the
// whitelist is the file <root>/grey/whitelist (Whitelist). The counts of
// the bounds are kept in memory (tally). It serves one host: several
// processes on one mail root share it (the smtpd program and smtpfs), not
// several hosts.
type FileStore struct {
	tmp      string     // <root>/grey/tmp
	white    *Whitelist // nil: no whitelist
	tally    tally      // triplet files, in all and per client
	expiring sync.Mutex // one Expire at a time
}

// NewFileStore returns the file store of the mail root root, with the
// whitelist white (nil for none).
func NewFileStore(root string, white *Whitelist) *FileStore {
	return &FileStore{tmp: filepath.Join(root, "grey", "tmp"), white: white}
}

// Whitelist returns the whitelist file, or nil.
func (f *FileStore) Whitelist() WhitelistStore {
	if f.white == nil {
		return nil
	}
	return f.white
}

// Triplets looks up and registers the triplets of q, one file each, in
// <root>/grey/tmp/<local>/<pool>/, or <root>/grey/tmp/<local>/@<sender>/
// for a sender domain's. It never answers Whitelisted: the whitelist
// file's index is the whole truth.
func (f *FileStore) Triplets(q *Query) (Answer, error) {
	pool := filepath.Join(f.tmp, q.LocalName(), q.Pool.Addr().String())
	tr := tripletRun{dir: pool, pool: pool, now: q.Now, s: q.Settings, client: q.Client}
	if q.Sender != "" {
		tr.dir, tr.remote = filepath.Join(f.tmp, q.LocalName(), SenderDir(q.Sender)), q.Remote
	}
	var ans Answer
	for _, key := range q.Keys {
		o, age, err := f.triplet(&tr, key)
		if err != nil {
			return Answer{}, err
		}
		ans.Results = append(ans.Results, Result{Outcome: o, Age: age})
		if o == Recent {
			break // whitelisted: the others need no triplets
		}
	}
	return ans, nil
}

// Close does nothing: the store holds nothing open.
func (f *FileStore) Close() error { return nil }

// A tripletRun is what the triplets of one Check share: their directory
// and the pool's, the time, the settings, the client's unit (clientOf),
// the client's address for a sender domain's triplets (else invalid) and
// how many triplets the Check registered.
type tripletRun struct {
	dir, pool string
	now       time.Time
	s         Settings
	client    netip.Prefix
	remote    netip.Addr
	made      int
}

// triplet registers or consults the triplet file tr.dir/name: its mtime
// is the first attempt. A file that is already there and older than Max
// is reset to now, so a sender that comes back after the window starts
// afresh; a retry that comes too soon does not move the clock (postgrey's
// rule: upas refreshed it on every attempt, which keeps a sender that
// retries every minute out for ever). A new file is made only within the
// bounds (tally): the tally is asked first, and told when the file is not
// made after all.
func (f *FileStore) triplet(tr *tripletRun, name string) (Outcome, time.Duration, error) {
	path, now, s := filepath.Join(tr.dir, name), tr.now, tr.s
	for range 3 {
		fi, err := os.Stat(path)
		if err == nil {
			switch age := now.Sub(fi.ModTime()); {
			case age >= s.Min && age <= s.Max:
				return Recent, age, nil
			case age >= 0 && age < s.Min:
				return Early, age, nil
			default: // long ago, or in the future: the clock moved back
				return Late, age, os.Chtimes(path, now, now)
			}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return 0, 0, err
		}
		if tr.made >= s.PerMessage {
			return Enough, 0, nil
		}
		key := keyOf(tr.client)
		if o := f.tally.reserve(key, s, func() int { return countDir(tr.pool, s.PerClient) }); o != Registered {
			return o, 0, nil
		}
		fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			if tr.remote.IsValid() { // a sender domain's: whose it is, for Expire's count
				_, err = fd.WriteString(tr.remote.String() + "\n")
			}
			if cerr := fd.Close(); err == nil {
				err = cerr
			}
			tr.made++
			if err != nil {
				return Registered, 0, err
			}
			return Registered, 0, os.Chtimes(path, now, now)
		}
		f.tally.release(key)
		switch {
		case errors.Is(err, fs.ErrExist):
			// made by a concurrent Check: look again
		case errors.Is(err, fs.ErrNotExist):
			if err := os.MkdirAll(tr.dir, 0o700); err != nil {
				return 0, 0, err
			}
		default:
			return 0, 0, err
		}
	}
	return 0, 0, fmt.Errorf("cannot make %s", path)
}

// Expire removes the triplet files whose first attempt is older than the
// window's end, s.Max before now, and the directories it leaves empty,
// and returns how many files it removed and kept; the tally of triplets
// becomes what it kept. It reads directories in batches, so its memory is
// bounded by the tally's whatever the number of triplets, and stops early
// when ctx is done.
func (f *FileStore) Expire(ctx context.Context, s Settings, now time.Time) (removed, kept int, err error) {
	f.expiring.Lock()
	defer f.expiring.Unlock()
	cutoff := now.Add(-s.Max)
	per := newWalkCounter(s)
	f.tally.beginWalk()
	err = walkDir(ctx, f.tmp, 2, func(path string, fi fs.FileInfo) {
		if fi.ModTime().Before(cutoff) {
			if os.Remove(path) == nil {
				removed++
				return
			}
		}
		kept++
		per.add(path)
	})
	f.tally.endWalk(per.per, kept, err == nil)
	return removed, kept, err
}

// walkDir calls fn for each plain file depth levels of directories below
// dir, reading directories 256 entries at a time, and removes the
// directories below dir that are empty afterwards (a Check that races it
// remakes them).
func walkDir(ctx context.Context, dir string, depth int, fn func(string, fs.FileInfo)) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ents, rerr := d.ReadDir(256)
		for _, e := range ents {
			path := filepath.Join(dir, e.Name())
			switch {
			case depth > 0 && e.IsDir():
				if err := walkDir(ctx, path, depth-1, fn); err != nil {
					return err
				}
				os.Remove(path) // only if empty
			case depth == 0 && e.Type().IsRegular():
				if fi, err := e.Info(); err == nil {
					fn(path, fi)
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
