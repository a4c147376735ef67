package grey

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"smtpfs/internal/regfile"
)

// Bounds of the whitelist file. A line is an address and a host name, so
// 1 KiB is far more than any legitimate entry. 128 MiB holds some three
// million entries of 40 bytes; the index for them is at most 96 MB. Past
// that size Add refuses with "whitelist too long", the greylist's own
// additions are logged and dropped, and a load reads only the first 128
// MiB: the operator prunes the file (unwhitelist, or an editor).
const (
	MaxEntryLine = 1024
	MaxWhitelist = 128 << 20
)

// maxLogged bounds the malformed lines logged by one load; a file of junk
// must not flood the log.
const maxLogged = 10

// A Whitelist is the greylist's whitelist file, <root>/grey/whitelist, and
// an index of it that answers Contains without locks or allocation.
//
// The file is plain text a human edits, append-only: one entry a line, an
// address or network (see ParsePrefix) and an optional name after a space
// or tab; # starts a comment line; blank lines are ignored. Malformed lines
// already in the file are logged and skipped, never fatal.
//
// The index follows the file. Add and Remove change both at once. Changes
// made by others are noticed by a stat at most once a second, from within
// Contains: lines appended since the last read (another smtpd process,
// `echo ip >> whitelist`) are read alone; a file replaced (another inode),
// shortened, or rewritten in place (the last bytes read differ) is read
// again whole, and meanwhile lookups use the old index. A line counts
// once its newline is written. Reload reads it all on demand.
//
// Writers in this and other processes (Add, Remove, and another smtpfs or
// smtpd on the same root) take an exclusive flock on the file and check,
// once they hold it, that it is still the file at the path, so an append
// never lands in a file that Remove has just replaced. Writers that do not
// lock (a shell's >>) append with O_APPEND, which is safe except against a
// Remove running at that very moment.
//
// A Whitelist is safe for concurrent use.
type Whitelist struct {
	path string
	log  *log.Logger
	now  func() time.Time // the clock for the stat ticker; tests set it
	idx  atomic.Pointer[index]
	tick ticker

	mu     sync.Mutex // held while reading or writing the file
	st     stamp      // the file as last read; zero when missing
	parsed int64      // bytes read, through the last newline
	lines  int        // lines in those bytes
	tail   []byte     // up to tailLen bytes before parsed, to notice rewrites
}

const tailLen = 64

// OpenWhitelist reads the whitelist at path. A missing file is an empty
// whitelist; it is created by the first Add. Malformed lines are logged to
// logger (which may be nil) and skipped. The error is for a file that
// exists but cannot be read.
func OpenWhitelist(path string, logger *log.Logger) (*Whitelist, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	w := &Whitelist{path: path, log: logger, now: time.Now}
	w.idx.Store(&index{})
	if err := w.Reload(); err != nil {
		return nil, err
	}
	w.tick.due(w.now())
	return w, nil
}

// Contains reports whether ip is covered by an entry. IPv4-mapped IPv6
// addresses are taken as IPv4. It takes no lock and allocates nothing;
// once a second one caller also checks whether the file changed, and that
// caller reads the change before it returns.
func (w *Whitelist) Contains(ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	if w.tick.due(w.now()) {
		w.refresh()
	}
	return w.idx.Load().contains(canon(ip))
}

// Len returns the number of entries read from the file (duplicates and
// nested networks included).
func (w *Whitelist) Len() int { return w.idx.Load().entries }

// Path returns the file's name.
func (w *Whitelist) Path() string { return w.path }

// Bytes returns the file as it is on disk (what `cat whitelist` shows), at
// most MaxWhitelist bytes; a missing file is empty.
func (w *Whitelist) Bytes() ([]byte, error) {
	f, _, err := regfile.Open(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxWhitelist))
}

// Reload reads the whole file again.
func (w *Whitelist) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, _, err := regfile.Open(w.path)
	if errors.Is(err, fs.ErrNotExist) {
		w.reset()
		return nil
	}
	if err != nil {
		return fmt.Errorf("whitelist: %v", err)
	}
	defer f.Close()
	w.st = stamp{} // forces a full read
	return w.catchUp(f)
}

// refresh is the once-a-second check: it reads what changed, if anything.
func (w *Whitelist) refresh() {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, _, err := regfile.Open(w.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if w.st != (stamp{}) {
			w.log.Printf("whitelist %s removed; whitelisting nobody", w.path)
			w.reset()
		}
		return
	case err != nil:
		w.log.Printf("whitelist: %v", err)
		return
	}
	defer f.Close()
	if err := w.catchUp(f); err != nil {
		w.log.Printf("%v", err)
	}
}

func (w *Whitelist) reset() {
	w.st, w.parsed, w.lines, w.tail = stamp{}, 0, 0, nil
	w.idx.Store(&index{})
}

// catchUp brings the index up to date with f, the file now at the path:
// when f is the file read last time, grown, with the same bytes before the
// point read, only what follows that point is read; otherwise all of it.
// w.mu is held.
func (w *Whitelist) catchUp(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("whitelist: %v", err)
	}
	st := stampOf(fi)
	if st == w.st {
		return nil
	}
	if w.st != (stamp{}) && st.ino == w.st.ino && st.size >= w.parsed && w.sameTail(f) {
		s, n, used, lines, err := w.read(io.NewSectionReader(f, w.parsed, MaxWhitelist-w.parsed), st.size-w.parsed, w.lines+1, false)
		if err != nil {
			return err
		}
		w.idx.Store(w.idx.Load().with(s, n))
		w.advance(f, st, w.parsed+used, w.lines+lines)
		return nil
	}
	// The unterminated text at the end counts only at the file's end: a
	// line cut at MaxWhitelist might read as another entry (10.1.2 of
	// 10.1.2.3, a /24).
	s, n, used, lines, err := w.read(io.NewSectionReader(f, 0, MaxWhitelist), st.size, 1, st.size <= MaxWhitelist)
	if err != nil {
		return err
	}
	if fi.Size() > MaxWhitelist {
		w.log.Printf("whitelist %s is longer than %d bytes; the rest is ignored", w.path, MaxWhitelist)
	}
	w.idx.Store(&index{base: s, entries: n})
	w.advance(f, st, used, lines)
	return nil
}

// advance records that f, whose stamp was st, has been read through byte
// parsed, which ends line lines.
func (w *Whitelist) advance(f *os.File, st stamp, parsed int64, lines int) {
	w.st, w.parsed, w.lines = st, parsed, lines
	start := max(parsed-tailLen, 0)
	w.tail = make([]byte, parsed-start)
	if _, err := f.ReadAt(w.tail, start); err != nil {
		w.tail = nil // the next change is read whole
	}
}

// sameTail reports whether the bytes of f before w.parsed are still the
// ones read: if not, the file was rewritten in place.
func (w *Whitelist) sameTail(f *os.File) bool {
	if w.tail == nil {
		return w.parsed == 0
	}
	b := make([]byte, len(w.tail))
	_, err := f.ReadAt(b, w.parsed-int64(len(b)))
	return err == nil && bytes.Equal(b, w.tail)
}

// read parses the lines of r, about size bytes numbered from first, into
// a normalized set.
// With final, an unterminated last line is read too (a file written by
// hand without a final newline); it is not counted in used, so that it is
// read again once complete.
func (w *Whitelist) read(r io.Reader, size int64, first int, final bool) (s set, entries int, used int64, lines int, err error) {
	bad := 0
	parse := func(line string, n int) {
		p, ok, err := parseEntry(line)
		switch {
		case err != nil:
			if bad++; bad <= maxLogged {
				w.log.Printf("whitelist %s:%d: skipped %s: %v", w.path, n, quote(line), err)
			}
		case ok:
			s.add(p)
			entries++
		}
	}
	used, lines, tail, err := eachLine(r, size, first, MaxEntryLine, parse)
	if err != nil {
		return set{}, 0, 0, 0, fmt.Errorf("whitelist: %v", err)
	}
	if final && tail != "" {
		parse(tail, first+lines)
	}
	if bad > maxLogged {
		w.log.Printf("whitelist %s: %d more malformed lines skipped", w.path, bad-maxLogged)
	}
	s.normalize()
	return s, entries, used, lines, nil
}

// parseEntry reads one line of the whitelist file. ok is false for blank
// lines and comments.
func parseEntry(line string) (p netip.Prefix, ok bool, err error) {
	if len(line) > MaxEntryLine {
		return netip.Prefix{}, false, errors.New("line too long")
	}
	line = strings.TrimLeft(strings.TrimSuffix(line, "\r"), " \t")
	if line == "" || line[0] == '#' {
		return netip.Prefix{}, false, nil
	}
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		line = line[:i]
	}
	p, err = ParsePrefix(line)
	return p, err == nil, err
}

// checkEntry is parseEntry for a line written by Add, which must also be
// valid UTF-8 without control characters: it goes into a file people read.
func checkEntry(line string) error {
	if _, _, err := parseEntry(line); err != nil {
		return err
	}
	return checkText(line)
}

// checkText checks that a line written to a file people read (the
// whitelist, lib/blocked) is valid UTF-8 without control characters.
func checkText(line string) error {
	if !utf8.ValidString(line) {
		return errors.New("not UTF-8")
	}
	for _, c := range line {
		if c < ' ' && c != '\t' || c == 0x7f {
			return errors.New("control character")
		}
	}
	return nil
}

// Add appends the lines of text to the file and the index: entries,
// comments and blank lines, as the file's grammar has them. Every line is
// checked first (CheckLines); if one is bad, nothing is written. The
// lines are written with one O_APPEND write and synced before Add
// returns, and Contains sees them at once.
func (w *Whitelist) Add(text string) error {
	lines, err := CheckLines(text)
	if err != nil || len(lines) == 0 {
		return err
	}
	return w.append(strings.Join(lines, "\n")+"\n", netip.Prefix{})
}

// CheckLines checks the lines of text written to a whitelist, as Add
// does, and returns them without their line ends (a final newline ends
// the last line, and makes none). If one is bad, the error starts
// "invalid whitelist entry" and names it. More than MaxWhitelist bytes
// are refused with ErrTooLong.
func CheckLines(text string) ([]string, error) {
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return nil, nil
	}
	if len(text) >= MaxWhitelist {
		return nil, ErrTooLong
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		if err := checkEntry(l); err != nil {
			where := ""
			if len(lines) > 1 {
				where = fmt.Sprintf(" (line %d)", i+1)
			}
			return nil, fmt.Errorf("invalid whitelist entry %s%s: %v", quote(l), where, err)
		}
		lines[i] = l
	}
	return lines, nil
}

// ParseLine reads one line of a whitelist: ok is false for blank lines
// and comments; err says why a line is malformed.
func ParseLine(line string) (p netip.Prefix, ok bool, err error) { return parseEntry(line) }

// AddClient appends line, a checked entry whose network is p, unless an
// entry of the file, read up to date under its lock, already covers all
// of p: concurrent sessions from one sender that all pass the greylist
// add it once.
func (w *Whitelist) AddClient(line string, p netip.Prefix) error {
	return w.append(line+"\n", p)
}

// append writes data, checked lines, at the end of the file and reads
// them into the index. If the file, read up to date under the lock,
// already covers unless, it writes nothing: concurrent sessions from one
// sender that all pass the greylist add it once.
func (w *Whitelist) append(data string, unless netip.Prefix) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := w.openLocked(os.O_RDWR | os.O_APPEND | os.O_CREATE)
	if err != nil {
		return fmt.Errorf("whitelist: %v", err)
	}
	defer f.Close() // and unlock
	if unless.IsValid() {
		if err := w.catchUp(f); err != nil {
			return err
		}
		if w.idx.Load().covers(unless) {
			return nil
		}
	}
	if err := w.appendTo(f, data); err != nil {
		return err
	}
	return w.catchUp(f)
}

// ErrTooLong refuses an addition that would make the whitelist longer
// than MaxWhitelist.
var ErrTooLong = errors.New("whitelist too long")

// appendTo writes data at the end of f, on a line of its own.
func (w *Whitelist) appendTo(f *os.File, data string) error {
	switch err := appendLines(f, data, MaxWhitelist); {
	case errors.Is(err, errFull):
		return ErrTooLong
	case err != nil:
		return fmt.Errorf("whitelist: %v", err)
	}
	return nil
}

// openLocked opens the file at the path and locks it exclusively, making
// sure that the file locked is still the one at the path: Remove replaces
// it while other writers wait for the lock.
func (w *Whitelist) openLocked(flag int) (*os.File, error) {
	for range 10 {
		// O_NONBLOCK: a FIFO put at the path must not hang the writer.
		f, err := os.OpenFile(w.path, flag|syscall.O_NONBLOCK, 0o600)
		if errors.Is(err, fs.ErrNotExist) && flag&os.O_CREATE != 0 {
			if err = os.MkdirAll(filepath.Dir(w.path), 0o700); err == nil {
				continue
			}
		}
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, err
		}
		fi, err1 := f.Stat()
		if err1 == nil && !fi.Mode().IsRegular() {
			f.Close()
			return nil, regfile.ErrNotRegular
		}
		cur, err2 := os.Stat(w.path)
		if err1 == nil && err2 == nil && os.SameFile(fi, cur) {
			return f, nil
		}
		f.Close()
	}
	return nil, errors.New("file keeps changing")
}

// Remove rewrites the file without the entries that are exactly one of ps
// (192.0.2.0/24 removes that line, not 192.0.2.7), keeping every other
// line, comments and malformed lines included, and returns how many lines
// it removed. The new file is written beside the old one, synced and
// renamed over it, so a crash leaves one or the other. It streams, so it
// works on a file of any size.
func (w *Whitelist) Remove(ps ...netip.Prefix) (int, error) {
	drop := map[netip.Prefix]bool{}
	for _, p := range ps {
		drop[normPrefix(p)] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	f, err := w.openLocked(os.O_RDWR)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("whitelist: %v", err)
	}
	defer f.Close() // and unlock, after the rename
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("whitelist: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(w.path), ".whitelist-*")
	if err != nil {
		return 0, fmt.Errorf("whitelist: %v", err)
	}
	removed, err := filter(tmp, f, drop)
	if err == nil && removed > 0 {
		err = commit(tmp, fi.Mode().Perm(), w.path)
	}
	if err != nil || removed == 0 {
		tmp.Close()
		os.Remove(tmp.Name())
	}
	if err != nil {
		return 0, fmt.Errorf("whitelist: %v", err)
	}
	if removed == 0 {
		return 0, nil
	}
	nf, _, err := regfile.Open(w.path)
	if err != nil {
		return removed, fmt.Errorf("whitelist: %v", err)
	}
	defer nf.Close()
	w.st = stamp{}
	return removed, w.catchUp(nf)
}

// filter copies the lines of r to w, but for the entries in drop, and
// returns how many it dropped.
func filter(w io.Writer, r io.Reader, drop map[netip.Prefix]bool) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriterSize(w, 64<<10)
	removed := 0
	for {
		line, err := br.ReadString('\n')
		if p, ok, _ := parseEntry(strings.TrimSuffix(line, "\n")); ok && drop[p] {
			removed++
		} else {
			bw.WriteString(line)
		}
		if err == io.EOF {
			return removed, bw.Flush()
		}
		if err != nil {
			return 0, err
		}
	}
}

// commit puts tmp, written, in place of the file at path, with mode perm.
func commit(tmp *os.File, perm fs.FileMode, path string) error {
	err := tmp.Chmod(perm)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// normPrefix is p as ParsePrefix would give it: IPv4-mapped as IPv4,
// without zone, masked.
func normPrefix(p netip.Prefix) netip.Prefix {
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() {
		a, bits = a.Unmap(), max(bits-96, 0)
	}
	return netip.PrefixFrom(a.WithZone(""), bits).Masked()
}
