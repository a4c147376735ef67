package grey

import (
	"context"
	"fmt"
	"io/fs"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	local  = netip.MustParseAddr("198.51.100.1")
	client = netip.MustParseAddr("192.0.2.7")
)

type greyTest struct {
	t    *testing.T
	root string
	g    *Greylist
	clk  *clock
	log  *logbuf
}

func newGreyTest(t *testing.T, whitelist string) *greyTest {
	root := t.TempDir()
	if whitelist != "" {
		writeFile(t, filepath.Join(root, "grey", "whitelist"), whitelist)
	}
	gt := &greyTest{t: t, root: root, clk: newClock(), log: &logbuf{}}
	g, err := Open(root, gt.log.logger())
	if err != nil {
		t.Fatal(err)
	}
	g.Now = gt.clk.Now
	gt.g = g
	return gt
}

// check runs one Check and compares its verdict, and optionally a log
// line it must have written.
func (gt *greyTest) check(remote netip.Addr, rcpts []string, want bool, logged string) {
	gt.t.Helper()
	before := len(gt.log.String())
	if got := gt.g.Check(local, remote, "example.com!alice", rcpts); got != want {
		gt.t.Errorf("%v: Check(%v, %q) = %v, want %v; log:\n%s", gt.clk.Now(), remote, rcpts, got, want, gt.log.String()[before:])
	}
	if logged != "" && !strings.Contains(gt.log.String()[before:], logged) {
		gt.t.Errorf("Check(%v, %q) did not log %q:\n%s", remote, rcpts, logged, gt.log.String()[before:])
	}
}

func (gt *greyTest) whitelist() string {
	b, err := os.ReadFile(filepath.Join(gt.root, "grey", "whitelist"))
	if err != nil && !os.IsNotExist(err) {
		gt.t.Fatal(err)
	}
	return string(b)
}

func TestGreylistWindow(t *testing.T) {
	gt := newGreyTest(t, "")
	bob := []string{"example.org!bob"}
	gt.check(client, bob, false, "no call registered for 192.0.2.7/example.org!bob; registering")
	if _, err := os.Stat(filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", "192.0.2.7", "example.org!bob")); err != nil {
		t.Errorf("triplet file: %v", err)
	}
	gt.clk.Add(4*time.Minute + 59*time.Second)
	gt.check(client, bob, false, "call for 192.0.2.7/example.org!bob was just minutes ago or long ago (4m59s ago: too soon)")
	gt.check(client, bob, false, "no recent call from 192.0.2.7 for a rcpt; rejecting with temporary failure")
	// a retry too soon does not move the clock
	gt.clk.Add(time.Second)
	gt.check(client, bob, true, "192.0.2.7/example.org!bob was grey; adding IP to white")
	if got := gt.whitelist(); got != "192.0.2.7\n" {
		t.Errorf("whitelist = %q", got)
	}
	// Who mails whom is private: the directories are made 0700 and the
	// files 0600.
	for name, mode := range map[string]os.FileMode{"grey": 0700, "grey/tmp": 0700, "grey/tmp/198.51.100.1/192.0.2.7": 0700,
		"grey/tmp/198.51.100.1/192.0.2.7/example.org!bob": 0600, "grey/whitelist": 0600} {
		if fi, err := os.Stat(filepath.Join(gt.root, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, mode)
		}
	}
	// now it passes at once, for anyone
	gt.check(client, []string{"example.org!carol"}, true, "192.0.2.7 whitelisted")
	if got := gt.whitelist(); got != "192.0.2.7\n" {
		t.Errorf("whitelist = %q", got)
	}
}

func TestGreylistTooLate(t *testing.T) {
	gt := newGreyTest(t, "")
	bob := []string{"example.org!bob"}
	gt.check(client, bob, false, "registering")
	gt.clk.Add(14 * time.Hour)
	gt.check(client, []string{"example.org!bob", "example.org!carol"}, true, "was grey") // the last moment
	gt = newGreyTest(t, "")
	gt.check(client, bob, false, "registering")
	gt.clk.Add(14*time.Hour + time.Second)
	gt.check(client, bob, false, "(14h0m1s ago: too late; registering again)")
	gt.clk.Add(4 * time.Minute)
	gt.check(client, bob, false, "too soon")
	gt.clk.Add(time.Minute)
	gt.check(client, bob, true, "was grey")
}

// TestGreylistAnyRecipient: one recipient in the window lets the whole
// message through; others are registered on the way.
func TestGreylistAnyRecipient(t *testing.T) {
	gt := newGreyTest(t, "")
	gt.check(client, []string{"example.org!bob"}, false, "")
	gt.clk.Add(10 * time.Minute)
	gt.check(client, []string{"example.org!new", "example.org!bob"}, true, "no call registered for 192.0.2.7/example.org!new")
}

func TestGreylistKey(t *testing.T) {
	gt := newGreyTest(t, "")
	gt.check(client, []string{"example.org!bob"}, false, "")
	gt.clk.Add(10 * time.Minute)
	// another recipient, another client, another of our addresses: new triplets
	gt.check(client, []string{"example.org!carol"}, false, "registering")
	gt.check(netip.MustParseAddr("192.0.2.8"), []string{"example.org!bob"}, false, "registering")
	if gt.g.Check(netip.MustParseAddr("198.51.100.2"), client, "", []string{"example.org!bob"}) {
		t.Errorf("passed through another local address")
	}
	// the sender is not part of the key; case is not either
	if !gt.g.Check(local, netip.MustParseAddr("::ffff:192.0.2.7"), "bounces+123@example.com", []string{"EXAMPLE.org!Bob"}) {
		t.Errorf("retry with another sender, mapped address and upper case refused")
	}
}

func TestGreylistWhitelisted(t *testing.T) {
	gt := newGreyTest(t, "192.0.2.0/24 pool\n203.0.113.5\n2001:db8::/48\n2001:db8:1::9 single\n")
	rcpts := []string{"example.org!a", "example.org!b", "example.org!c"}
	for _, a := range []string{"192.0.2.1", "192.0.2.254", "203.0.113.5", "::ffff:203.0.113.5", "2001:db8::1", "2001:db8:0:ffff::1", "2001:db8:1::9"} {
		gt.check(netip.MustParseAddr(a), rcpts, true, "whitelisted")
	}
	for _, a := range []string{"203.0.113.6", "2001:db8:1::8", "192.0.3.1"} {
		gt.check(netip.MustParseAddr(a), rcpts, false, "registering")
	}
	var files []string
	filepath.WalkDir(filepath.Join(gt.root, "grey", "tmp"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if len(files) != 9 {
		t.Errorf("%d triplets, want 9 (3 clients × 3 recipients): %q", len(files), files)
	}
}

func TestGreylistPool(t *testing.T) {
	gt := newGreyTest(t, "")
	if err := gt.g.SetSettings(Settings{Min: 5 * time.Minute, Max: 14 * time.Hour, Prefix4: 24, Prefix6: 64, MaxTriplets: 100}); err != nil {
		t.Fatal(err)
	}
	gt.check(client, []string{"example.org!bob"}, false, "no call registered for 192.0.2.7/example.org!bob")
	v6 := netip.MustParseAddr("2001:db8:1:2::99")
	gt.check(v6, []string{"example.org!bob"}, false, "registering")
	for _, dir := range []string{"192.0.2.0", "2001:db8:1:2::"} {
		if _, err := os.Stat(filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", dir, "example.org!bob")); err != nil {
			t.Errorf("pool directory: %v", err)
		}
	}
	gt.clk.Add(6 * time.Minute)
	gt.check(netip.MustParseAddr("192.0.2.200"), []string{"example.org!bob"}, true, "192.0.2.200/example.org!bob was grey")
	gt.check(netip.MustParseAddr("2001:db8:1:2:ffff::1"), []string{"example.org!bob"}, true, "was grey")
	if got := gt.whitelist(); got != "192.0.2.0/24\n2001:db8:1:2::/64\n" {
		t.Errorf("whitelist = %q", got)
	}
	gt.check(netip.MustParseAddr("192.0.2.1"), []string{"example.org!x"}, true, "whitelisted")
	gt.check(netip.MustParseAddr("192.0.3.1"), []string{"example.org!bob"}, false, "registering")
}

func TestGreylistName(t *testing.T) {
	gt := newGreyTest(t, "")
	names := map[netip.Addr]string{client: "mx1.example.net", netip.MustParseAddr("192.0.2.8"): "bad name\nx"}
	gt.g.Name = func(a netip.Addr) string { return names[a] }
	for a := range names {
		gt.check(a, []string{"bob"}, false, "")
	}
	gt.clk.Add(time.Hour)
	for a := range names {
		gt.check(a, []string{"bob"}, true, "")
	}
	got := gt.whitelist()
	if !strings.Contains(got, "192.0.2.7 mx1.example.net\n") || !strings.Contains(got, "192.0.2.8\n") || len(got) != len("192.0.2.7 mx1.example.net\n192.0.2.8\n") {
		t.Errorf("whitelist = %q", got)
	}
}

func TestGreylistSettings(t *testing.T) {
	gt := newGreyTest(t, "")
	for _, s := range []Settings{
		{Min: time.Hour, Max: time.Hour, Prefix4: 32, Prefix6: 128, MaxTriplets: 1},
		{Min: -1, Max: time.Hour, Prefix4: 32, Prefix6: 128, MaxTriplets: 1},
		{Min: 0, Max: time.Hour, Prefix4: 33, Prefix6: 128, MaxTriplets: 1},
		{Min: 0, Max: time.Hour, Prefix4: 32, Prefix6: 129, MaxTriplets: 1},
		{Min: 0, Max: time.Hour, Prefix4: 32, Prefix6: 128, MaxTriplets: -1},
		{Min: 0, Max: time.Hour, Prefix4: 32, Prefix6: 128, PerClient: -1},
		{Min: 0, Max: time.Hour, Prefix4: 32, Prefix6: 128, PerMessage: -1},
	} {
		if err := gt.g.SetSettings(s); err == nil || !strings.HasPrefix(err.Error(), "invalid") {
			t.Errorf("SetSettings(%+v) = %v, want an error", s, err)
		}
	}
	if gt.g.Settings() != DefaultSettings {
		t.Errorf("settings changed: %+v", gt.g.Settings())
	}
	gt.check(client, []string{"bob"}, false, "")
	gt.clk.Add(2 * time.Minute)
	gt.check(client, []string{"bob"}, false, "too soon")
	if err := gt.g.SetSettings(Settings{Min: time.Minute, Max: time.Hour, Prefix4: 32, Prefix6: 128}); err != nil {
		t.Fatal(err)
	}
	if got := gt.g.Settings(); got.MaxTriplets != DefaultSettings.MaxTriplets || got.PerClient != DefaultSettings.PerClient || got.PerMessage != DefaultSettings.PerMessage {
		t.Errorf("bounds %d %d %d, want the defaults", got.MaxTriplets, got.PerClient, got.PerMessage)
	}
	gt.check(client, []string{"bob"}, true, "was grey")
}

func TestGreylistFull(t *testing.T) {
	gt := newGreyTest(t, "")
	s := DefaultSettings
	s.MaxTriplets = 2
	gt.g.SetSettings(s)
	gt.check(client, []string{"a", "b"}, false, "")
	gt.check(client, []string{"c"}, false, "greylist full (2 triplets): not registering 192.0.2.7/c")
	gt.clk.Add(time.Hour)
	gt.check(client, []string{"c"}, false, "greylist full")
	gt.check(client, []string{"a"}, true, "was grey") // known triplets still pass
	gt.clk.Add(14 * time.Hour)
	if removed, kept, err := gt.g.Expire(context.Background()); removed != 2 || kept != 0 || err != nil {
		t.Errorf("Expire = %d, %d, %v", removed, kept, err)
	}
	gt.check(netip.MustParseAddr("192.0.2.9"), []string{"c"}, false, "no call registered")
}

func TestGreylistStorageError(t *testing.T) {
	gt := newGreyTest(t, "")
	writeFile(t, filepath.Join(gt.root, "grey", "tmp"), "not a directory")
	gt.check(client, []string{"bob"}, true, "letting 192.0.2.7 through")
	if got := gt.whitelist(); got != "" {
		t.Errorf("whitelist = %q", got)
	}
}

// TestGreylistFailClosed: with greyfail closed, a Check the store cannot
// answer refuses the message (and the whitelist is left alone); each
// such decision is counted, either way.
func TestGreylistFailClosed(t *testing.T) {
	gt := newGreyTest(t, "")
	writeFile(t, filepath.Join(gt.root, "grey", "tmp"), "not a directory")
	s := gt.g.Settings()
	s.FailClosed = true
	gt.g.SetSettings(s)
	gt.check(client, []string{"bob"}, false, "greyfail closed: rejecting 192.0.2.7 with temporary failure")
	s.FailClosed = false
	gt.g.SetSettings(s)
	gt.check(client, []string{"bob"}, true, "letting 192.0.2.7 through")
	if n := gt.g.Unchecked(); n != 2 {
		t.Errorf("Unchecked = %d, want 2", n)
	}
	if got := gt.whitelist(); got != "" {
		t.Errorf("whitelist = %q", got)
	}
}

// TestGreylistSetStore: a greylist moved to another store asks it from
// the next Check on, whitelist included, and hands back the old one.
func TestGreylistSetStore(t *testing.T) {
	gt := newGreyTest(t, "192.0.2.7\n")
	root := t.TempDir()
	w, err := OpenWhitelist(filepath.Join(root, "grey", "whitelist"), nil)
	if err != nil {
		t.Fatal(err)
	}
	old := gt.g.SetStore(NewFileStore(root, w))
	if old.Whitelist() == nil || !old.Whitelist().Contains(client) {
		t.Errorf("SetStore did not hand back the old store")
	}
	gt.check(client, []string{"bob"}, false, "no call registered")
	if _, err := os.Stat(filepath.Join(root, "grey", "tmp", "198.51.100.1", "192.0.2.7", "bob")); err != nil {
		t.Errorf("the new store has no triplet: %v", err)
	}
	if gt.g.Whitelist() != WhitelistStore(w) {
		t.Errorf("Whitelist is not the new store's")
	}
}

func TestGreylistNoRecipients(t *testing.T) {
	gt := newGreyTest(t, "")
	gt.check(client, []string{"", ""}, false, "no recent call")
	gt.check(client, nil, false, "no recent call")
	gt.check(netip.Addr{}, []string{"bob"}, true, "no remote address")
}

// TestGreylistHostileRecipients checks that no recipient names a file
// outside its directory, and that different recipients get different files.
func TestGreylistHostileRecipients(t *testing.T) {
	gt := newGreyTest(t, "")
	s := DefaultSettings
	s.PerMessage = 100
	gt.g.SetSettings(s)
	rcpts := []string{"../x", "../../../../etc/passwd", "a/b", ".", "..", ".hidden", "/abs", "x\x00y", "x\ny", strings.Repeat("a", 300), strings.Repeat("a", 299) + "b", strings.Repeat("é", 200), "%2F", "a%2Fb", "~", "a b", "\\"}
	gt.check(client, rcpts, false, "")
	dir := filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", "192.0.2.7")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(rcpts) {
		t.Errorf("%d files for %d recipients", len(ents), len(rcpts))
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || len(e.Name()) > maxName || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("bad triplet file %q", e.Name())
		}
	}
	filepath.WalkDir(gt.root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Dir(path) != dir && filepath.Base(path) != "whitelist" {
			t.Errorf("file outside the triplet directory: %s", path)
		}
		return nil
	})
	gt.clk.Add(time.Hour)
	for _, r := range rcpts {
		gt.g.Whitelist().Remove(netip.PrefixFrom(client, 32))
		gt.check(client, []string{r}, true, "was grey")
	}
}

func TestFileName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.org!bob", "example.org!bob"},
		{"Bob@Example.ORG", "bob@example.org"},
		{"a+tag-x_y=z", "a+tag-x_y=z"},
		{"../x", "%2E.%2Fx"},
		{".", "%2E"},
		{"a/b", "a%2Fb"},
		{"x\x00", "x%00"},
		{"%", "%25"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := fileName(tt.in); got != tt.want {
			t.Errorf("fileName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := fileName(strings.Repeat("a", 300))
	if len(long) != maxName || !strings.Contains(long, "~") {
		t.Errorf("fileName(300 a) = %q", long)
	}
}

func TestGreylistConcurrent(t *testing.T) {
	gt := newGreyTest(t, "")
	run := func(want bool) {
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if got := gt.g.Check(local, client, "", []string{"bob", "carol"}); got != want {
					t.Errorf("Check = %v, want %v", got, want)
				}
			}()
		}
		wg.Wait()
	}
	run(false)
	gt.clk.Add(10 * time.Minute)
	run(true)
	if got := gt.whitelist(); got != "192.0.2.7\n" {
		t.Errorf("whitelist = %q, want the address once", got)
	}
}

func TestGreylistExpire(t *testing.T) {
	gt := newGreyTest(t, "")
	gt.check(client, []string{"old1", "old2"}, false, "")
	gt.check(netip.MustParseAddr("2001:db8::1"), []string{"old"}, false, "")
	gt.clk.Add(10 * time.Hour)
	gt.check(client, []string{"fresh"}, false, "")
	gt.clk.Add(4*time.Hour + time.Second)
	removed, kept, err := gt.g.Expire(context.Background())
	if removed != 3 || kept != 1 || err != nil {
		t.Errorf("Expire = %d, %d, %v; want 3, 1", removed, kept, err)
	}
	tmp := filepath.Join(gt.root, "grey", "tmp", "198.51.100.1")
	if _, err := os.Stat(filepath.Join(tmp, "192.0.2.7", "fresh")); err != nil {
		t.Errorf("fresh triplet: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "2001:db8::1")); !os.IsNotExist(err) {
		t.Errorf("empty directory left: %v", err)
	}
	gt.clk.Add(10 * time.Hour)
	if removed, kept, err := gt.g.Expire(context.Background()); removed != 1 || kept != 0 || err != nil {
		t.Errorf("Expire = %d, %d, %v; want 1, 0", removed, kept, err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("empty directory left: %v", err)
	}
	// a Check after Expire removed the directories makes them again
	gt.check(client, []string{"bob"}, false, "registering")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := gt.g.Expire(ctx); err == nil {
		t.Errorf("Expire with a cancelled context: no error")
	}
}

func TestGreylistSweep(t *testing.T) {
	gt := newGreyTest(t, "")
	gt.check(client, []string{"bob"}, false, "")
	gt.clk.Add(15 * time.Hour)
	lines := make(chan string, 10)
	gt.g.log = log.New(chanWriter(lines), "", 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() {
		gt.g.Sweep(ctx, time.Hour)
		close(done)
	}()
	if got := <-lines; got != "greylist: expired 1 triplets, 0 left\n" {
		t.Errorf("sweep logged %q", got)
	}
	cancel()
	<-done
	if _, err := os.Stat(filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", "192.0.2.7", "bob")); !os.IsNotExist(err) {
		t.Errorf("triplet still there: %v", err)
	}
}

// chanWriter sends each write to a channel.
type chanWriter chan string

func (c chanWriter) Write(p []byte) (int, error) {
	c <- string(p)
	return len(p), nil
}

// TestGreylistFlood: one client that floods the greylist with made-up
// recipients (bob+0, bob+1, ...) is held to its own share of the triplets
// (greyperclient, 100 by default) and to a few new triplets a message
// (greypermsg, 5), so the flood cannot fill the greylist (greytriplets,
// here 150) and lock every other client out: another client still
// registers, and passes when it comes back. The flooder's own triplets
// still pass in their window.
func TestGreylistFlood(t *testing.T) {
	gt := newGreyTest(t, "")
	s := DefaultSettings
	s.MaxTriplets = 150
	if err := gt.g.SetSettings(s); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range 40 {
		var rcpts []string
		for range 10 {
			rcpts = append(rcpts, fmt.Sprintf("bob+%d@example.org", n))
			n++
		}
		gt.check(client, rcpts, false, "")
	}
	ents, err := os.ReadDir(filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", "192.0.2.7"))
	if err != nil || len(ents) != 100 {
		t.Errorf("the flooder has %d triplets (%v), want 100", len(ents), err)
	}
	gt.check(client, []string{"bob+400@example.org"}, false, "192.0.2.7 has 100 triplets, greyperclient's limit: not registering 192.0.2.7/bob+400@example.org")
	other := netip.MustParseAddr("192.0.2.9")
	gt.check(other, []string{"carol@example.org"}, false, "no call registered for 192.0.2.9/carol@example.org; registering")
	gt.clk.Add(10 * time.Minute)
	gt.check(other, []string{"carol@example.org"}, true, "192.0.2.9/carol@example.org was grey")
	gt.check(client, []string{"bob+399@example.org", "bob+0@example.org"}, true, "192.0.2.7/bob+0@example.org was grey")
}

// TestGreylistPerMessage: a message registers at most PerMessage of its
// new recipients, and logs the others once; the retry, whatever the order
// of its recipients, passes through one that was registered.
func TestGreylistPerMessage(t *testing.T) {
	gt := newGreyTest(t, "")
	var rcpts []string
	for i := range 8 {
		rcpts = append(rcpts, fmt.Sprintf("r%d@example.org", i))
	}
	gt.check(client, rcpts, false, "5 new recipients of the message registered, greypermsg's limit: not registering 192.0.2.7/r5@example.org and 2 more")
	ents, _ := os.ReadDir(filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", "192.0.2.7"))
	if len(ents) != 5 {
		t.Errorf("%d triplets for one message, want 5", len(ents))
	}
	if strings.Count(gt.log.String(), "not registering") != 1 {
		t.Errorf("want one line for the recipients left out:\n%s", gt.log.String())
	}
	gt.clk.Add(10 * time.Minute)
	slices.Reverse(rcpts)
	gt.check(client, rcpts, true, "192.0.2.7/r4@example.org was grey")
	if strings.Contains(gt.log.String(), "r3@example.org was grey") {
		t.Errorf("recipients looked up after one passed:\n%s", gt.log.String())
	}
}

// TestGreylistPerClientUnit: the clients PerClient counts are the pools
// of greyprefix, and for IPv6 never narrower than a /64, so one host
// cannot take a share for each of its addresses.
func TestGreylistPerClientUnit(t *testing.T) {
	gt := newGreyTest(t, "")
	s := DefaultSettings
	s.PerClient = 6
	gt.g.SetSettings(s)
	five := []string{"a", "b", "c", "d", "e"}
	gt.check(netip.MustParseAddr("2001:db8::1"), five, false, "")
	gt.check(netip.MustParseAddr("2001:db8::2"), five, false, "2001:db8::/64 has 6 triplets, greyperclient's limit: not registering 2001:db8::2/b and 3 more")
	gt.check(netip.MustParseAddr("2001:db8:0:1::1"), five, false, "no call registered for 2001:db8:0:1::1/e")
	if _, err := os.Stat(filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", "2001:db8::2", "a")); err != nil {
		t.Errorf("the /128 keeps its own directory: %v", err)
	}
	s.Prefix4 = 24
	gt.g.SetSettings(s)
	gt.check(netip.MustParseAddr("192.0.2.1"), five, false, "")
	gt.check(netip.MustParseAddr("192.0.2.200"), []string{"f", "g"}, false, "192.0.2.0/24 has 6 triplets, greyperclient's limit: not registering 192.0.2.200/g")
	gt.check(netip.MustParseAddr("192.0.3.1"), five, false, "no call registered for 192.0.3.1/e")
}

// TestGreylistTally: the per-client counts survive a restart (a greylist
// that has not walked the store yet counts a client's directory, as the
// smtpd program does for every session) and follow Expire, which rebuilds
// them from what it keeps.
func TestGreylistTally(t *testing.T) {
	gt := newGreyTest(t, "")
	s := DefaultSettings
	s.PerClient = 3
	gt.g.SetSettings(s)
	gt.check(client, []string{"a", "b", "c", "d"}, false, "192.0.2.7 has 3 triplets, greyperclient's limit: not registering 192.0.2.7/d")

	again, err := Open(gt.root, gt.log.logger())
	if err != nil {
		t.Fatal(err)
	}
	again.Now = gt.clk.Now
	again.SetSettings(s)
	gt.g = again
	gt.check(client, []string{"d"}, false, "greyperclient's limit: not registering 192.0.2.7/d")
	gt.check(netip.MustParseAddr("192.0.2.8"), []string{"a"}, false, "no call registered")
	if _, kept, err := again.Expire(context.Background()); kept != 4 || err != nil {
		t.Fatalf("Expire = %d, %v", kept, err)
	}
	gt.check(client, []string{"d"}, false, "greyperclient's limit")
	gt.check(netip.MustParseAddr("192.0.2.8"), []string{"b", "c", "d"}, false, "greyperclient's limit: not registering 192.0.2.8/d")

	gt.clk.Add(15 * time.Hour)
	if removed, _, err := again.Expire(context.Background()); removed != 6 || err != nil {
		t.Fatalf("Expire removed %d, %v", removed, err)
	}
	gt.check(client, []string{"d"}, false, "no call registered for 192.0.2.7/d")
}
