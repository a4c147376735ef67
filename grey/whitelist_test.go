package grey

import (
	"bytes"
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logbuf collects log lines.
type logbuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logbuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logbuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logbuf) logger() *log.Logger { return log.New(l, "", 0) }

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func openWL(t *testing.T, text string) (*Whitelist, *logbuf) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "grey", "whitelist")
	if text != "" {
		writeFile(t, path, text)
	}
	var lb logbuf
	w, err := OpenWhitelist(path, lb.logger())
	if err != nil {
		t.Fatal(err)
	}
	return w, &lb
}

// expect checks Contains for each address: those listed in in must be
// found, those in out not.
func expect(t *testing.T, w *Whitelist, in, out []string) {
	t.Helper()
	for _, a := range in {
		if !w.Contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not whitelisted", a)
		}
	}
	for _, a := range out {
		if w.Contains(netip.MustParseAddr(a)) {
			t.Errorf("%s whitelisted", a)
		}
	}
}

const sampleWhitelist = `# partners
192.0.2.0/24 partner.example
198.51.100.7	mx1.example.net
  203.0.113.9
2001:db8::/32 v6 net
2001:db8:ffff::1 # no: inside the /32 anyway
2a00:1450::5
10.1
this is junk
300.1.1.1/8
192.0.2.0/33

`

func TestWhitelistLoad(t *testing.T) {
	w, lb := openWL(t, sampleWhitelist)
	expect(t, w,
		[]string{"192.0.2.0", "192.0.2.255", "198.51.100.7", "203.0.113.9", "2001:db8::1", "2001:db8:ffff:ffff::", "2a00:1450::5", "::ffff:198.51.100.7", "10.1.200.3"},
		[]string{"192.0.3.0", "198.51.100.8", "198.51.100.6", "2001:db9::", "2a00:1450::4", "2a00:1450::6", "10.2.0.0"})
	if w.Len() != 7 {
		t.Errorf("Len = %d, want 7", w.Len())
	}
	for _, want := range []string{":9: skipped 'this is junk'", ":10: skipped '300.1.1.1/8'", ":11: skipped '192.0.2.0/33'"} {
		if !strings.Contains(lb.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, lb)
		}
	}
	if w.Contains(netip.Addr{}) {
		t.Errorf("the zero address is whitelisted")
	}
}

func TestWhitelistMissing(t *testing.T) {
	w, _ := openWL(t, "")
	expect(t, w, nil, []string{"192.0.2.1", "::1"})
	if b, err := w.Bytes(); err != nil || len(b) != 0 {
		t.Errorf("Bytes = %q, %v", b, err)
	}
	if err := w.Add("192.0.2.1 first"); err != nil {
		t.Fatal(err)
	}
	expect(t, w, []string{"192.0.2.1"}, nil)
	if got := readFile(t, w.Path()); got != "192.0.2.1 first\n" {
		t.Errorf("file = %q", got)
	}
}

func TestWhitelistAdd(t *testing.T) {
	w, _ := openWL(t, "192.0.2.1\n")
	if err := w.Add("# added\n198.51.100.0/24 net\r\n\n2001:db8::7\n"); err != nil {
		t.Fatal(err)
	}
	expect(t, w, []string{"192.0.2.1", "198.51.100.99", "2001:db8::7"}, []string{"2001:db8::8"})
	want := "192.0.2.1\n# added\n198.51.100.0/24 net\n\n2001:db8::7\n"
	if got := readFile(t, w.Path()); got != want {
		t.Errorf("file = %q, want %q", got, want)
	}
	if b, err := w.Bytes(); err != nil || string(b) != want {
		t.Errorf("Bytes = %q, %v", b, err)
	}
}

func TestWhitelistAddInvalid(t *testing.T) {
	tests := []struct{ text, want string }{
		{"192.0.2.1\nbogus\n", "invalid whitelist entry 'bogus' (line 2): not an address"},
		{"192.0.2.1/40", "invalid whitelist entry '192.0.2.1/40': not an address"},
		{"192.0.2.1 name\x00x", `invalid whitelist entry '192.0.2.1 name\x00x': control character`},
		{"192.0.2.1 \xff", "not UTF-8"},
		{"192.0.2.1 " + strings.Repeat("n", MaxEntryLine), "line too long"},
		{"192.0.2.1\n192.0.2.2 x\x1b[2J", `(line 2): control character`},
	}
	for _, tt := range tests {
		w, _ := openWL(t, "203.0.113.1\n")
		err := w.Add(tt.text)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "invalid whitelist entry") {
			t.Errorf("Add(%q) = %v, want an error with %q", tt.text, err, tt.want)
		}
		if got := readFile(t, w.Path()); got != "203.0.113.1\n" {
			t.Errorf("Add(%q) changed the file: %q", tt.text, got)
		}
		expect(t, w, nil, []string{"192.0.2.1"})
	}
}

func TestWhitelistAddAfterUnterminatedLine(t *testing.T) {
	w, _ := openWL(t, "192.0.2.1")
	expect(t, w, []string{"192.0.2.1"}, nil)
	if err := w.Add("192.0.2.2"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, w.Path()); got != "192.0.2.1\n192.0.2.2\n" {
		t.Errorf("file = %q", got)
	}
	expect(t, w, []string{"192.0.2.1", "192.0.2.2"}, nil)
}

func TestWhitelistRemove(t *testing.T) {
	w, _ := openWL(t, sampleWhitelist)
	n, err := w.Remove(netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("::ffff:203.0.113.9/128"), netip.MustParsePrefix("2a00:1450::5/128"), netip.MustParsePrefix("198.51.100.0/24"))
	if err != nil || n != 3 {
		t.Fatalf("Remove = %d, %v; want 3", n, err)
	}
	want := strings.NewReplacer("192.0.2.0/24 partner.example\n", "", "  203.0.113.9\n", "", "2a00:1450::5\n", "").Replace(sampleWhitelist)
	if got := readFile(t, w.Path()); got != want {
		t.Errorf("file = %q, want %q", got, want)
	}
	expect(t, w, []string{"198.51.100.7", "2001:db8::1"}, []string{"192.0.2.1", "203.0.113.9", "2a00:1450::5"})
	if n, err := w.Remove(netip.MustParsePrefix("192.0.2.0/24")); n != 0 || err != nil {
		t.Errorf("second Remove = %d, %v", n, err)
	}
	if err := w.Add("192.0.2.0/24"); err != nil {
		t.Fatal(err)
	}
	expect(t, w, []string{"192.0.2.1"}, nil)
	entries, _ := os.ReadDir(filepath.Dir(w.Path()))
	if len(entries) != 1 {
		t.Errorf("files left beside the whitelist: %v", entries)
	}
}

// TestWhitelistExternalEdit checks that changes made by others are read
// once a second, from Contains: an append, an append while the file lacks
// its final newline, a rewrite in place and a replacement by rename.
func TestWhitelistExternalEdit(t *testing.T) {
	w, _ := openWL(t, "192.0.2.1\n")
	clk := newClock()
	w.now = clk.Now
	w.tick.next.Store(0)
	expect(t, w, []string{"192.0.2.1"}, []string{"192.0.2.2"})

	appendFile(t, w.Path(), "192.0.2.2\n")
	expect(t, w, nil, []string{"192.0.2.2"}) // not yet: checked at most once a second
	clk.Add(time.Second)
	expect(t, w, []string{"192.0.2.1", "192.0.2.2"}, nil)

	appendFile(t, w.Path(), "192.0.2.3")
	clk.Add(time.Second)
	expect(t, w, nil, []string{"192.0.2.3"}) // its line is not finished
	appendFile(t, w.Path(), "\n")
	clk.Add(time.Second)
	expect(t, w, []string{"192.0.2.3"}, nil)

	// rewritten in place, longer than before: read whole
	f, err := os.OpenFile(w.Path(), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "# rewritten by hand, keeping only\n198.51.100.1\n192.0.2.3\n")
	f.Close()
	clk.Add(time.Second)
	expect(t, w, []string{"198.51.100.1", "192.0.2.3"}, []string{"192.0.2.1", "192.0.2.2"})

	tmp := w.Path() + ".new"
	writeFile(t, tmp, "2001:db8::1\n")
	if err := os.Rename(tmp, w.Path()); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	expect(t, w, []string{"2001:db8::1"}, []string{"198.51.100.1"})

	if err := os.Remove(w.Path()); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	expect(t, w, nil, []string{"2001:db8::1"})
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func TestWhitelistReload(t *testing.T) {
	w, _ := openWL(t, "192.0.2.1\n")
	writeFile(t, w.Path(), "192.0.2.2\n")
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	expect(t, w, []string{"192.0.2.2"}, []string{"192.0.2.1"})
}

// TestWhitelistConcurrent adds from many goroutines, through two
// Whitelists on one file (as two processes would), while others look up
// and another adds and removes its own entry (rewriting the file each
// time), and checks that every entry added is in the file and in both
// indexes at the end: no append is lost to a rewrite.
func TestWhitelistConcurrent(t *testing.T) {
	w1, _ := openWL(t, "")
	w2, err := OpenWhitelist(w1.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 20
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := []*Whitelist{w1, w2}[g%2]
			for i := range each {
				if err := w.Add(fmt.Sprintf("10.%d.%d.1 host", g, i)); err != nil {
					t.Error(err)
				}
				w.Contains(netip.MustParseAddr("10.0.0.1"))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 10 {
			if err := w1.Add("10.99.0.1 gone soon"); err != nil {
				t.Error(err)
			}
			if n, err := w2.Remove(netip.MustParsePrefix("10.99.0.1/32")); n != 1 || err != nil {
				t.Errorf("Remove = %d, %v", n, err)
			}
		}
	}()
	wg.Wait()
	if err := w2.Reload(); err != nil {
		t.Fatal(err)
	}
	if w2.Contains(netip.MustParseAddr("10.99.0.1")) {
		t.Errorf("removed entry still whitelisted")
	}
	lines := strings.Count(readFile(t, w1.Path()), "\n")
	if lines != writers*each {
		t.Errorf("file has %d lines, want %d", lines, writers*each)
	}
	for g := range writers {
		for i := range each {
			a := netip.MustParseAddr(fmt.Sprintf("10.%d.%d.1", g, i))
			if w := []*Whitelist{w1, w2}[g%2]; !w.Contains(a) {
				t.Errorf("%v missing from the whitelist that added it", a)
			}
			if !w2.Contains(a) {
				t.Errorf("%v missing after reload", a)
			}
		}
	}
}

func TestWhitelistRemoveUnterminated(t *testing.T) {
	for _, tt := range []struct{ remove, want string }{
		{"192.0.2.1/32", "192.0.2.2"},
		{"192.0.2.2/32", "192.0.2.1\n"},
	} {
		w, _ := openWL(t, "192.0.2.1\n192.0.2.2")
		if n, err := w.Remove(netip.MustParsePrefix(tt.remove)); n != 1 || err != nil {
			t.Errorf("Remove(%s) = %d, %v", tt.remove, n, err)
		}
		if got := readFile(t, w.Path()); got != tt.want {
			t.Errorf("Remove(%s): file %q, want %q", tt.remove, got, tt.want)
		}
	}
}

// TestWhitelistCutAtLimit: of a file longer than MaxWhitelist, a line cut
// at the limit is not read: 10.1.2.3 cut to 10.1.2 would be a /24.
func TestWhitelistCutAtLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "whitelist")
	line := "10.1.2.3 host.example\n"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file: NUL bytes, one overlong line, then two entries, the
	// second cut by the limit after "10.1.2".
	off := int64(MaxWhitelist - len(line) - len("10.1.2") - 1)
	if _, err := f.WriteAt([]byte("\n"+line+line), off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var lb logbuf
	w, err := OpenWhitelist(path, lb.logger())
	if err != nil {
		t.Fatal(err)
	}
	expect(t, w, []string{"10.1.2.3"}, []string{"10.1.2.4"})
	if w.Len() != 1 || !strings.Contains(lb.String(), "longer than") {
		t.Errorf("Len %d, log:\n%s", w.Len(), lb.String())
	}
}

// TestWhitelistAddFull: an Add that would take the file past MaxWhitelist
// writes nothing and says "whitelist too long".
func TestWhitelistAddFull(t *testing.T) {
	w, _ := openWL(t, "192.0.2.7\n")
	if err := os.Truncate(w.Path(), MaxWhitelist-5); err != nil { // sparse
		t.Fatal(err)
	}
	if err := w.Add("10.0.0.1"); err == nil || err.Error() != "whitelist too long" {
		t.Errorf("Add to a full file: %v", err)
	}
	if fi, err := os.Stat(w.Path()); err != nil || fi.Size() != MaxWhitelist-5 {
		t.Errorf("file after a refused Add: %v, %v", fi.Size(), err)
	}
}
