package grey

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newBlocked(t *testing.T, text string) (*Blocked, *logbuf) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lib", "blocked")
	writeFile(t, path, text)
	var lb logbuf
	b := NewBlocked(path, lb.logger())
	if err := b.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	return b, &lb
}

type classifyCase struct {
	ip, sender string
	want       Action
}

func classify(t *testing.T, b *Blocked, tests []classifyCase) {
	t.Helper()
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if got := b.Classify(ip, tt.sender); got != tt.want {
			t.Errorf("Classify(%s, %q) = %v, want %v", tt.ip, tt.sender, got, tt.want)
		}
	}
}

func TestBlockedVerbs(t *testing.T) {
	b, _ := newBlocked(t, `
# every verb, every address form
allow 192.0.2.1
accept 192.0.2.2
block 192.0.2.3, 198.51.100.0/24	# comma, tab, comment
DENY 192.0.2.4 203.0.113.0\#28
dial 192.0.2.5
delay 192.0.2.6
relay 192.0.2.7
block 2001:DB8::/32
deny 2001:db8:1::1
block 10.9
dial 192.0.2.64#26 # an unescaped # starts a comment: this is one host
`)
	classify(t, b, []classifyCase{
		{"192.0.2.1", "", Allow},
		{"192.0.2.2", "", Allow},
		{"192.0.2.3", "", Block},
		{"198.51.100.77", "", Block},
		{"192.0.2.4", "", Deny},
		{"203.0.113.15", "", Deny},
		{"203.0.113.16", "", None},
		{"192.0.2.5", "", Dial},
		{"192.0.2.6", "", Delay},
		{"192.0.2.7", "", Delay},
		{"192.0.2.8", "", None},
		{"::ffff:192.0.2.3", "", Block},
		{"2001:db8:ffff::1", "", Block},
		{"2001:db8:1::1", "", Block}, // block is tried before deny
		{"2001:db9::1", "", None},
		{"10.9.8.7", "", Block},
		{"192.0.2.64", "", Dial},
		{"192.0.2.65", "", None},
		{"", "", None},
	})
}

// TestBlockedOrder: the verb order decides, not the file's order or how
// specific the network is; allow beats everything.
func TestBlockedOrder(t *testing.T) {
	b, _ := newBlocked(t, `
block 10.0.0.0/8
delay 10.1.0.0/16
allow 10.1.2.0/24
dial 10.0.0.0/8
deny 10.1.2.3
block 172.16.0.0/12 172.16.5.0/24 172.20.0.0/16 172.16.0.7 172.31.255.255
`)
	classify(t, b, []classifyCase{
		{"10.1.2.3", "", Allow},
		{"10.1.3.1", "", Block},
		{"10.200.0.1", "", Block},
		// overlapping and nested networks in one verb: all found
		{"172.16.0.1", "", Block},
		{"172.16.5.9", "", Block},
		{"172.20.9.9", "", Block},
		{"172.30.0.1", "", Block},
		{"172.31.255.255", "", Block},
		{"172.32.0.0", "", None},
	})
}

// TestAccountPatterns covers the rules of ratfs's accountmatch
// (upas.md §2.9).
func TestAccountPatterns(t *testing.T) {
	tests := []struct {
		pat, sender string
		want        bool
	}{
		// dom, dom!, dom!*: the domain anywhere in the path
		{"spam.example", "spam.example!bob", true},
		{"spam.example!", "spam.example!bob", true},
		{"spam.example!*", "spam.example!bob", true},
		{"spam.example", "relay.example!spam.example!bob", true},
		{"spam.example", "other.example!bob", false},
		{"spam.example", "sub.spam.example!bob", false},
		{"spam.example", "spam.example", false}, // no domain in the path: a user
		// *.dom: dom and below
		{"*.spam.example", "spam.example!bob", true},
		{"*.spam.example", "a.b.spam.example!bob", true},
		{"*.spam.example", "notspam.example!bob", false},
		{"*.spam.example!", "x.spam.example!bob", true},
		// !user, *!user: the user in any domain
		{"!bob", "example.com!bob", true},
		{"*!bob", "example.com!bob", true},
		{"!bob", "bob", true},
		{"!bob", "example.com!bobby", false},
		{"!bob", "bob.example!alice", false},
		// dom!user: the user, at the last domain
		{"example.com!bob", "example.com!bob", true},
		{"example.com!bob", "relay.example!example.com!bob", true},
		{"example.com!bob", "example.com!relay.example!bob", false},
		{"example.com!bob", "bob", false},
		{"*.example.com!bob", "mx.example.com!bob", true},
		{"*.example.com!bob", "example.com!bob", true},
		{"*.example.com!bob", "badexample.com!bob", false},
		// user*: a prefix
		{"!spam*", "example.com!spammer", true},
		{"!spam*", "example.com!spam", true},
		{"!spam*", "example.com!spa", false},
		{"example.com!info*", "example.com!info-list", true},
		{"example.com!info*", "other.com!info-list", false},
		// case
		{"Example.COM!Bob", "example.com!bob", true},
		{"example.com!bob", "EXAMPLE.com!BOB", true},
		{"example.com!bob", "bob@example.com", true},
	}
	for _, tt := range tests {
		b, _ := newBlocked(t, "*block "+tt.pat+"\n")
		want := None
		if tt.want {
			want = Block
		}
		if got := b.Classify(netip.MustParseAddr("192.0.2.1"), tt.sender); got != want {
			t.Errorf("pattern %q, sender %q: %v, want %v", tt.pat, tt.sender, got, want)
		}
	}
}

func TestAccountManyDomains(t *testing.T) {
	// ratfs keeps 10 domains; the rest of the path is the user
	path := strings.Repeat("d.example!", 11) + "bob"
	b, _ := newBlocked(t, "*block !bob\n*deny d.example\n")
	classify(t, b, []classifyCase{{"192.0.2.1", path, Deny}})
}

func TestBlockedAccountVerbs(t *testing.T) {
	b, _ := newBlocked(t, `
*block spam.example
* allow spam.example!friend
*deny !root
*dial *.dialup.example
*  delay slow.example, !later*
*relay relay.example!x
*block a.example!bob *.b.example!bob c.example!bo*
block 192.0.2.66
allow 192.0.2.1
`)
	classify(t, b, []classifyCase{
		{"192.0.2.9", "spam.example!bob", Block},
		{"192.0.2.9", "spam.example!friend", Allow},
		{"192.0.2.9", "example.com!root", Deny},
		{"192.0.2.9", "host.dialup.example!bob", Dial},
		{"192.0.2.9", "slow.example!bob", Delay},
		{"192.0.2.9", "x.example!laterz", Delay},
		{"192.0.2.9", "relay.example!x", Delay},
		{"192.0.2.9", "example.com!bob", None},
		{"192.0.2.9", "a.example!bob", Block},
		{"192.0.2.9", "x.b.example!bob", Block},
		{"192.0.2.9", "c.example!bob", Block},
		{"192.0.2.9", "d.example!bob", None},
		{"192.0.2.9", "", None},
		// an address verdict comes first; an address allow still lets the
		// sender be judged, as in upas
		{"192.0.2.66", "spam.example!friend", Block},
		{"192.0.2.1", "spam.example!bob", Block},
		{"192.0.2.1", "example.com!bob", Allow},
		{"", "spam.example!bob", Block},
	})
}

func TestBlockedBadLines(t *testing.T) {
	tests := []struct{ text, want string }{
		{"blok 192.0.2.1", "line 1 'blok 192.0.2.1': unknown verb 'blok'"},
		{"\n\nblock 192.0.2.1 bogus", "line 3 'block 192.0.2.1 bogus': 'bogus': not an address"},
		{"block 192.0.2.1/33", "not an address"},
		{"*block *", "pattern '*' matches every sender"},
		{"*block example.com *!*", "matches every sender"},
		{"* block !", "matches every sender"},
		{"*block *!", "matches every sender"},
		{"*block !*", "matches every sender"},
		{"*", "no verb after *"},
		{"*frob x", "unknown verb 'frob'"},
		{"bl'ok 192.0.2.1", "line 1 'bl''ok 192.0.2.1': unknown verb 'bl''ok'"}, // quoted as rc and smtpd.conf's errors quote
		{"block 192.0.2.1\x01", `'block 192.0.2.1\x01': '192.0.2.1\x01': not an address`},
		{"block " + strings.Repeat("1", MaxBlockedLine), "line too long"},
	}
	for _, tt := range tests {
		b, _ := newBlocked(t, "block 198.51.100.1\n")
		writeFile(t, b.Path(), tt.text)
		err := b.Reload()
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "invalid "+b.Path()+" line ") {
			t.Errorf("%q: Reload = %v, want an error with %q", tt.text, err, tt.want)
		}
		// the classification in force stays
		classify(t, b, []classifyCase{{"198.51.100.1", "", Block}, {"192.0.2.1", "", None}})
	}
}

func TestBlockedBadLinesAllNamed(t *testing.T) {
	b, _ := newBlocked(t, "")
	writeFile(t, b.Path(), "blok 1.2.3.4\nblock 192.0.2.1\nblock x\n")
	err := b.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 1 ") || !strings.Contains(err.Error(), "line 3 ") {
		t.Errorf("Reload = %v, want lines 1 and 3", err)
	}
	writeFile(t, b.Path(), strings.Repeat("bogus\n", 12))
	err = b.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 10 ") || strings.Contains(err.Error(), "line 11 ") || !strings.HasSuffix(err.Error(), "; 2 more bad lines") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Reload = %v, want ten lines named on one line and 2 more", err)
	}
}

func TestBlockedMissing(t *testing.T) {
	b := NewBlocked(filepath.Join(t.TempDir(), "blocked"), nil)
	if err := b.Reload(); err != nil {
		t.Fatal(err)
	}
	classify(t, b, []classifyCase{{"192.0.2.1", "example.com!bob", None}})
}

// TestBlockedFollowsFile: a change to the file is read once a second from
// Classify; a bad change is logged and the classification in force stays.
func TestBlockedFollowsFile(t *testing.T) {
	b, lb := newBlocked(t, "block 192.0.2.1\n")
	clk := newClock()
	b.now = clk.Now
	b.tick.next.Store(0)
	classify(t, b, []classifyCase{{"192.0.2.1", "", Block}})
	writeFile(t, b.Path(), "deny 192.0.2.1\n")
	classify(t, b, []classifyCase{{"192.0.2.1", "", Block}}) // not yet
	clk.Add(time.Second)
	classify(t, b, []classifyCase{{"192.0.2.1", "", Deny}})
	writeFile(t, b.Path(), "deny 192.0.2.1\ndial 192.0.2.300\n")
	clk.Add(time.Second)
	classify(t, b, []classifyCase{{"192.0.2.1", "", Deny}})
	if !strings.Contains(lb.String(), "line 2 'dial 192.0.2.300'") || !strings.Contains(lb.String(), "keeping the classification in force") {
		t.Errorf("log:\n%s", lb)
	}
	writeFile(t, b.Path(), "dial 192.0.2.1") // no final newline
	clk.Add(time.Second)
	classify(t, b, []classifyCase{{"192.0.2.1", "", Dial}})
}

func TestFields(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"   ", ""},
		{"# all comment", ""},
		{"Block 1.2.3.4", "block|1.2.3.4"},
		{" a,b\t\tc ,, d", "a|b|c|d"},
		{`a\#b c\,d e\ f\\ g`, `a#b|c,d|e f\|g`},
		{`a b\`, `a|b\`},
		{"a\r", "a"},
		{"a#b c", "a"},
	}
	for _, tt := range tests {
		if got := strings.Join(fields(tt.in), "|"); got != tt.want {
			t.Errorf("fields(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{None: "none", Allow: "allow", Block: "block", Deny: "deny", Dial: "dial", Delay: "delay", 9: "Action(9)"} {
		if got := a.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(a), got, want)
		}
	}
}

// TestBlockedAdd: lines are validated first (all or none), appended whole
// even to a file without a final newline, and seen at once.
func TestBlockedAdd(t *testing.T) {
	b, _ := newBlocked(t, "block 192.0.2.1") // no final newline
	if err := b.Add("deny 198.51.100.0/24\n*block spam.example\n"); err != nil {
		t.Fatal(err)
	}
	classify(t, b, []classifyCase{{"198.51.100.7", "", Deny}, {"203.0.113.1", "spam.example!x", Block}, {"192.0.2.1", "", Block}})
	before, _ := b.Text()
	err := b.Add("allow 203.0.113.9\nfrob 1.2.3.4\n")
	if err == nil || !strings.HasPrefix(err.Error(), "invalid blocked line 2 'frob 1.2.3.4'") {
		t.Errorf("bad line: %v", err)
	}
	if after, _ := b.Text(); after != before || before != "block 192.0.2.1\ndeny 198.51.100.0/24\n*block spam.example\n" {
		t.Errorf("file after a refused Add = %q (before %q)", after, before)
	}
	classify(t, b, []classifyCase{{"203.0.113.9", "", None}})

	// A file made bad by an edit takes no appends: they would land in a
	// file that cannot take effect, behind an error.
	if err := os.WriteFile(b.Path(), []byte("blok 192.0.2.1\n"), 0644); err != nil {
		t.Fatal(err)
	}
	err = b.Add("deny 203.0.113.9\n")
	if err == nil || !strings.Contains(err.Error(), "line 1 'blok 192.0.2.1'") || !strings.Contains(err.Error(), "nothing appended") {
		t.Errorf("Add to a bad file: %v", err)
	}
	if after, _ := b.Text(); after != "blok 192.0.2.1\n" {
		t.Errorf("a bad file after a refused Add = %q", after)
	}
	classify(t, b, []classifyCase{{"198.51.100.7", "", Deny}, {"203.0.113.9", "", None}})

	fresh := NewBlocked(filepath.Join(t.TempDir(), "blocked"), nil)
	if text, err := fresh.Text(); text != "" || err != nil {
		t.Errorf("missing file: %q, %v", text, err)
	}
	if err := fresh.Add("dial 10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	classify(t, fresh, []classifyCase{{"10.1.2.3", "", Dial}})
}

// TestBlockedAddBad: text of blank lines writes nothing, and a line with a
// control character is refused whole, though its words would parse.
func TestBlockedAddBad(t *testing.T) {
	b, _ := newBlocked(t, "block 192.0.2.1\n")
	for _, text := range []string{"", "\n", " \n\n"} {
		if err := b.Add(text); err != nil {
			t.Errorf("Add(%q): %v", text, err)
		}
	}
	err := b.Add("deny 198.51.100.0/24\n*block spam\x01.example\n")
	if err == nil || !strings.HasPrefix(err.Error(), `invalid blocked line 2 '*block spam\x01.example'`) {
		t.Errorf("control character: %v", err)
	}
	if err := b.Add("*block \xffspam.example\n"); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Errorf("not UTF-8: %v", err)
	}
	if text, _ := b.Text(); text != "block 192.0.2.1\n" {
		t.Errorf("file after refused Adds = %q", text)
	}
	classify(t, b, []classifyCase{{"198.51.100.7", "", None}})
}

// TestBlockedTextBounded: a file longer than MaxBlocked (something else in
// its place) is shown cut at MaxBlocked, not read whole.
func TestBlockedTextBounded(t *testing.T) {
	b, _ := newBlocked(t, "")
	if err := os.Truncate(b.Path(), MaxBlocked+4096); err != nil {
		t.Fatal(err)
	}
	text, err := b.Text()
	if err != nil || len(text) != MaxBlocked {
		t.Errorf("Text of a %d-byte file: %d bytes, %v; want %d", MaxBlocked+4096, len(text), err, MaxBlocked)
	}
}
