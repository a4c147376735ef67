package smtpd

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// relayTricks are the classic open-relay tests (anchors.md §2.3), with
// elsewhere.com as the victim's domain, example.org and [127.0.0.1] (the
// address the test server listens on) as ours. Each must be refused for a
// client that may not relay; want is the refusal's code.
var relayTricks = []struct {
	rcpt string
	want string
}{
	{"v@elsewhere.com", "550 5.7.1 we don't relay"},
	{"v@elsewhere.com.", "550 5.7.1 we don't relay"},
	{"V@ELSEWHERE.COM", "550 5.7.1 we don't relay"},
	{"v%elsewhere.com@example.org", "550 5.7.1 we don't relay"},
	{"v%elsewhere.com@[127.0.0.1]", "550 5.7.1 we don't relay"},
	{`"v%elsewhere.com"`, "550 5.7.1 we don't relay"},
	{"v%elsewhere.com", "550 5.7.1 we don't relay"},
	{"v%@example.org", "550 5.7.1 we don't relay"},
	{"elsewhere.com!v", "550 5.7.1 we don't relay"},
	{"elsewhere.com!v@example.org", "550 5.7.1 we don't relay"},
	{`"elsewhere.com!v"`, "550 5.7.1 we don't relay"},
	{`"elsewhere.com!v"@example.org`, "550 5.7.1 we don't relay"},
	{"example.org!elsewhere.com!v", "550 5.7.1 we don't relay"},
	{"localhost!elsewhere.com!v@localhost", "550 5.7.1 we don't relay"},
	{"[127.0.0.1]!elsewhere.com!v", "501 5.1.3"}, // '[' is no atext
	{`"[127.0.0.1]!elsewhere.com!v"`, "550 5.7.1 we don't relay"},
	{"elsewhere.com!v@[127.0.0.1]", "550 5.7.1 we don't relay"},
	{"@example.org:v@elsewhere.com", "550 5.7.1 we don't relay"},
	{"@[127.0.0.1]:v@elsewhere.com", "501 5.1.3"}, // RFC 5321 At-domain: no literals
	{"@example.org,@example.org:v@elsewhere.com", "550 5.7.1 we don't relay"},
	{`"v@elsewhere.com"`, "550 5.7.1 we don't relay"},
	{`"v@elsewhere.com"@example.org`, "550 5.7.1 we don't relay"},
	{`"v\@elsewhere.com"@example.org`, "550 5.7.1 we don't relay"},
	{`"v%elsewhere.com"@example.org`, "550 5.7.1 we don't relay"},
	{`"v@elsewhere.com"@[127.0.0.1]`, "550 5.7.1 we don't relay"},
	{"v@elsewhere.com@example.org", "501 5.1.3"},
	{"v@elsewhere.com@[127.0.0.1]", "501 5.1.3"},
	{"v@[192.0.2.99]", "550 5.7.1 we don't relay"},
	{"v@[IPv6:2001:db8::1]", "550 5.7.1 we don't relay"},
	{"v@[127.0.0.2]", "550 5.7.1 we don't relay"},
}

// relaySenders are the senders each trick is tried with (anchors.md §2.3).
var relaySenders = []string{"", "user@elsewhere.net", "user@example.org", "user@localhost", "user"}

func TestRelayTricksRefused(t *testing.T) {
	ts := newTestServer(t, "maxerrors 1000")
	ts.Queue = &fakeQueue{}
	for _, from := range relaySenders {
		c := ts.ehloed("192.0.2.7")
		c.send("MAIL FROM:<" + from + ">")
		c.expect("250 ")
		for _, tc := range relayTricks {
			c.send("RCPT TO:<" + tc.rcpt + ">")
			if got := c.reply(); !strings.HasPrefix(got[0], tc.want) {
				t.Errorf("from <%s> RCPT TO:<%s>: got %q, want %q", from, tc.rcpt, got, tc.want)
			}
		}
		c.send("DATA")
		c.expect("503 5.5.1 Data without RCPT TO:")
	}
	if q := ts.Queue.(*fakeQueue).all(); len(q) != 0 {
		t.Errorf("queued %v", q)
	}
	want := int64(0)
	for _, tc := range relayTricks {
		if strings.HasPrefix(tc.want, "550") {
			want += int64(len(relaySenders))
		}
	}
	if got := ts.Stats.RelayDenied.Load(); got != want {
		t.Errorf("relaydenied = %d, want %d", got, want)
	}
	if !strings.Contains(ts.logbuf.String(), "Bad Forward example.org!user (client.example.net/192.0.2.7) (elsewhere.com!v)") {
		t.Errorf("no Bad Forward line in the log:\n%s", ts.logbuf)
	}
}

// TestLocalRecipients shows what an untrusted client may send to: our
// users, by every spelling.
func TestLocalRecipients(t *testing.T) {
	ts := newTestServer(t, "ourdomains *.example.com")
	for _, tc := range []struct{ rcpt, box string }{
		{"bob@example.org", "bob"},
		{"Bob@Example.ORG", "bob"},
		{"bob+tag@example.org", "bob"},
		{`"bob"@example.org`, "bob"},
		{"bob", "bob"},
		{"bob@localhost", "bob"},
		{"localhost!bob", "bob"},
		{"example.org!bob", "bob"},
		{"example.org!localhost!bob@example.org", "bob"},
		{"bob@[127.0.0.1]", "bob"},
		{"bob@mx.example.org", "bob"},
		{"bob@example.com", "bob"},
		{"bob@deep.sub.example.com", "bob"},
		{"Postmaster@example.org", "postmaster"},
	} {
		c := ts.ehloed("192.0.2.7")
		if got := c.mail("alice@elsewhere.net", []string{tc.rcpt}, "Subject: x\r\n\r\nhi\r\n"); got[0] != "250 2.5.0 sent" {
			t.Errorf("RCPT TO:<%s>: got %q", tc.rcpt, got)
			continue
		}
		msgs := boxFiles(t, ts.Root, tc.box)
		if len(msgs) == 0 {
			t.Errorf("RCPT TO:<%s>: nothing in box %s", tc.rcpt, tc.box)
		}
		for _, m := range msgs {
			removeBox(t, ts.Root, tc.box)
			if !strings.Contains(m, "Subject: x\n\nhi\n") {
				t.Errorf("RCPT TO:<%s>: message %q", tc.rcpt, m)
			}
		}
	}
}

// TestTrustedRelay shows that clients in ournets and authenticated ones
// relay, into the queue, and how their paths are rewritten.
func TestTrustedRelay(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8\nplaintextauth on")
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	q := &fakeQueue{}
	ts.Queue = q
	for _, tc := range []struct{ rcpt, want string }{
		{"v@elsewhere.com", "v@elsewhere.com"},
		{"v@elsewhere.com.", "v@elsewhere.com"},
		{"elsewhere.com!v", "v@elsewhere.com"},
		{"example.org!elsewhere.com!v", "v@elsewhere.com"},
		{"v@[192.0.2.99]", "v@[192.0.2.99]"},
		{"@relay.example:v@elsewhere.com", "v@elsewhere.com"},
		{`"john doe"@elsewhere.com`, `"john doe"@elsewhere.com`},
	} {
		for _, how := range []string{"ournets", "auth"} {
			var c *client
			if how == "ournets" {
				c = ts.ehloed("10.1.2.3")
			} else {
				c = ts.ehloed("192.0.2.7")
				c.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00glenda\x00s3cret")))
				c.expect("235 2.0.0 Authentication successful")
			}
			if got := c.mail("alice@example.org", []string{tc.rcpt}, "Subject: x\r\n\r\nhi\r\n"); got[0] != "250 2.5.0 sent" {
				t.Errorf("%s: RCPT TO:<%s>: got %q", how, tc.rcpt, got)
				continue
			}
			msgs := q.all()
			last := msgs[len(msgs)-1]
			if len(last.rcpts) != 1 || last.rcpts[0] != tc.want || last.from != "alice@example.org" {
				t.Errorf("%s: RCPT TO:<%s>: queued %q from %q, want %q", how, tc.rcpt, last.rcpts, last.from, tc.want)
			}
			if !strings.HasPrefix(last.data, "Received: from client.example.net") || !strings.Contains(last.data, "\r\nSubject: x\r\n\r\nhi\r\n") {
				t.Errorf("%s: queued message %q", how, last.data)
			}
		}
	}
	// A remote recipient whose local part must be quoted keeps its quotes
	// in the To: we add.
	c := ts.ehloed("10.1.2.3")
	c.mail("alice@example.org", []string{`"a b>, Boss <c"@elsewhere.com`}, "Subject: x\r\n\r\n")
	if m := q.all(); !strings.Contains(m[len(m)-1].data, "\r\nTo: \"a b>, Boss <c\"@elsewhere.com\r\n") {
		t.Errorf("queued %q", m[len(m)-1].data)
	}
	// The percent hack is refused even for trusted clients: we do not route on it.
	c = ts.ehloed("10.1.2.3")
	c.send("MAIL FROM:<alice@example.org>")
	c.expect("250 ")
	c.send("RCPT TO:<v%elsewhere.com@example.org>")
	c.expect("550 5.1.1 <v%elsewhere.com@example.org> ... user unknown")
}

// TestLoopback is upas's user@[]: back to the caller's own address.
func TestLoopback(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.ehloed("192.0.2.7")
	c.send("MAIL FROM:<a@elsewhere.net>")
	c.expect("250 ")
	c.send("RCPT TO:<me@[]>")
	c.expect("451 4.3.0 <me@[192.0.2.7]> cannot be queued now") // no queue: not lost, refused for now

	q := &fakeQueue{}
	ts.Queue = q
	for _, rcpt := range []string{"me@[]", `"[]!me"`, `"x![]!me"`, `"[]!me"@example.org`} {
		c := ts.ehloed("192.0.2.7")
		c.send("MAIL FROM:<a@elsewhere.net>")
		c.expect("250 ")
		c.send("RCPT TO:<" + rcpt + ">")
		c.expect("250 2.0.0 receiver is [192.0.2.7]!me")
		c.send("RCPT TO:<a!b@[]>")
		c.expect("501 5.1.3")
		c.send("DATA")
		c.expect("354 ")
		c.send(".")
		c.expect("250 2.5.0 sent")
	}
	for _, m := range q.all() {
		if len(m.rcpts) != 1 || m.rcpts[0] != "me@[192.0.2.7]" {
			t.Errorf("queued for %q, want me@[192.0.2.7]", m.rcpts)
		}
		// The sender is anybody's, forged at will: a bounce to it would
		// carry the client's text to a victim. Queued from <>, the message
		// is never bounced.
		if m.from != "" {
			t.Errorf("queued from <%s>, want <>", m.from)
		}
		if !strings.Contains(m.data, "\r\nFrom: a@elsewhere.net\r\n") {
			t.Errorf("queued %q", m.data)
		}
	}
	if !strings.Contains(ts.logbuf.String(), "queued from <> for an untrusted client: sender elsewhere.net!a") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

// TestQueuedSender: trusted and authenticated clients keep their sender
// in the queue, loopback or not; an untrusted one (it may reach the queue
// only by loopback, or with norelay off) is queued from <>.
func TestQueuedSender(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8\nplaintextauth on")
	ts.Secrets = func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} }
	q := &fakeQueue{}
	ts.Queue = q
	c := ts.ehloed("10.0.0.1")
	c.mail("a@example.org", []string{"me@[]", "v@elsewhere.com"}, "")
	c = ts.ehloed("192.0.2.7")
	c.send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	c.expect("235 ")
	c.mail("glenda@example.org", []string{"me@[]"}, "")
	ts.apply("norelay off")
	c = ts.ehloed("192.0.2.8")
	c.mail("a@elsewhere.net", []string{"v@elsewhere.com"}, "")
	var got []string
	for _, m := range q.all() {
		got = append(got, "<"+m.from+"> "+strings.Join(m.rcpts, ","))
	}
	want := "<a@example.org> me@[10.0.0.1],v@elsewhere.com|<glenda@example.org> me@[192.0.2.7]|<> v@elsewhere.com"
	if strings.Join(got, "|") != want {
		t.Errorf("queued %q, want %q", got, want)
	}
}

// TestOpenRelay: with norelay off anyone may relay, as upas did by default.
func TestOpenRelay(t *testing.T) {
	ts := newTestServer(t, "norelay off")
	q := &fakeQueue{}
	ts.Queue = q
	c := ts.ehloed("192.0.2.7")
	if got := c.mail("a@elsewhere.net", []string{"v@elsewhere.com"}, "Subject: x\r\n\r\n"); got[0] != "250 2.5.0 sent" {
		t.Fatalf("got %q", got)
	}
	if m := q.all(); len(m) != 1 || m[0].rcpts[0] != "v@elsewhere.com" {
		t.Errorf("queued %v", m)
	}
}

func TestUnknownUsers(t *testing.T) {
	ts := newTestServer(t, "mkbox off")
	c := ts.ehloed("192.0.2.7")
	c.send("MAIL FROM:<a@elsewhere.net>")
	c.expect("250 ")
	for _, tc := range []struct{ rcpt, want string }{
		{"nobody@example.org", "550 5.1.1 <nobody@example.org> ... user unknown"},
		{`"john doe"@example.org`, `550 5.1.3 <"john doe"@example.org> ... not a valid mailbox name`},
		{".hidden@example.org", "501 5.1.3"},
		{`".."@example.org`, `550 5.1.3 <".."@example.org> ... not a valid mailbox name`},
		{"postmaster@example.org", "250 2.0.0 receiver is example.org!postmaster"},
		{"POSTMASTER", "250 2.0.0 receiver is POSTMASTER"},
	} {
		c.send("RCPT TO:<" + tc.rcpt + ">")
		if got := c.reply(); !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("RCPT TO:<%s>: got %q, want %q", tc.rcpt, got, tc.want)
		}
	}
	c.send("DATA")
	c.expect("354 ")
	c.send(".")
	c.expect("250 2.5.0 sent")
	if m := boxFiles(t, ts.Root, "postmaster"); len(m) != 1 {
		t.Errorf("postmaster has %d messages, want 1 (one copy for two spellings)", len(m))
	}
	if err := ts.Maildir.makeBox("bob", "bob"); err == nil || !ts.Maildir.HasBox("postmaster") {
		t.Errorf("mkbox off made a box for bob (err %v)", err)
	}
}

// TestNewBoxLimit: with mkbox on, one message may make at most
// maxNewBoxes boxes; further unknown users get a temporary 452 (not an
// error: nothing is lost, the client sends them later), while users with a
// box and new users already counted still pass. The message is one file on
// disk, linked into each box.
func TestNewBoxLimit(t *testing.T) {
	ts := newTestServer(t, "maxerrors 3")
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(ts.Root, "box", "old", sub), 0700); err != nil {
			t.Fatal(err)
		}
	}
	c := ts.ehloed("192.0.2.7")
	c.send("MAIL FROM:<a@elsewhere.net>")
	c.expect("250 ")
	for i := range maxNewBoxes {
		c.send(fmt.Sprintf("RCPT TO:<new%d@example.org>", i))
		c.expect("250 ")
	}
	for _, tc := range []struct{ rcpt, want string }{
		{"late@example.org", "452 4.5.3 "},
		{"late2@example.org", "452 4.5.3 "},
		{"late3@example.org", "452 4.5.3 "},
		{"late4@example.org", "452 4.5.3 "},
		{"old@example.org", "250 "},
		{"new0+again@example.org", "250 "},
		{"New1@example.org", "250 "},
	} {
		c.check("RCPT TO:<"+tc.rcpt+">", tc.want)
	}
	c.send("DATA")
	c.expect("354 ")
	c.send("Subject: many")
	c.send("")
	c.send(".")
	c.expect("250 2.5.0 sent")
	var first os.FileInfo
	for i := range maxNewBoxes + 1 {
		box := fmt.Sprintf("new%d", i)
		if i == maxNewBoxes {
			box = "old"
		}
		files, _ := filepath.Glob(filepath.Join(ts.Root, "box", box, "new", "*"))
		if len(files) != 1 {
			t.Fatalf("%s has %d messages, want 1", box, len(files))
		}
		fi, _ := os.Stat(files[0])
		if first == nil {
			first = fi
		} else if !os.SameFile(first, fi) {
			t.Errorf("%s has a copy of its own", box)
		}
	}
	if ts.Maildir.HasBox("late") {
		t.Errorf("a box was made for late")
	}
	// A new transaction may make new boxes again.
	if got := c.mail("a@elsewhere.net", []string{"late@example.org"}, ""); got[0] != "250 2.5.0 sent" {
		t.Errorf("late, next message: %q", got)
	}
}

// TestLocalPartInHeaders: the whole local part of a local recipient, +tag
// included, must be safe, since it is written into Delivered-To: and To:;
// anything else is refused with 550 5.1.3, for every client (the
// reviewer's probe wrote "Delivered-To: bob+x>, Big Boss <ceo> (x@...").
func TestLocalPartInHeaders(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8\nmaxerrors 100")
	ts.Queue = &fakeQueue{}
	for _, ip := range []string{"192.0.2.7", "10.0.0.1"} {
		c := ts.ehloed(ip)
		c.send("MAIL FROM:<a@elsewhere.net>")
		c.expect("250 ")
		for _, rcpt := range []string{`"bob+x>, Big Boss <ceo> (x"@example.org`, `"bob+x y"@example.org`, `"bob+a,b"`, `"bob."@example.org`} {
			c.check("RCPT TO:<"+rcpt+">", "550 5.1.3 ")
		}
		c.send("RSET")
		c.expect("250 ")
	}
	c := ts.ehloed("192.0.2.7")
	if got := c.mail("a@elsewhere.net", []string{`"bob+a.b=c"@example.org`}, "Subject: s\r\n\r\n"); got[0] != "250 2.5.0 sent" {
		t.Fatalf("got %q", got)
	}
	m := boxFiles(t, ts.Root, "bob")
	if len(m) != 1 || !strings.HasPrefix(m[0], "Return-Path: <a@elsewhere.net>\nDelivered-To: bob+a.b=c@example.org\n") ||
		!strings.Contains(m[0], " for <bob+a.b=c@example.org>; ") || !strings.Contains(m[0], "\nTo: bob+a.b=c@example.org\n") {
		t.Errorf("delivered %q", m)
	}
}
