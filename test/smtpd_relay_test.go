package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The relay battery of anchors.md §2.3 against the real daemon. It listens
// on 127.0.0.1; example.org and [127.0.0.1] are ours; elsewhere.example is
// the victim's domain. Clients from 127.0.0.5 are untrusted; 127.0.0.1 is
// in ournets.
var e2eRelayTricks = []string{
	"v@elsewhere.example",
	"v@elsewhere.example.",
	"V@ELSEWHERE.EXAMPLE",
	"v%elsewhere.example@example.org",
	"v%elsewhere.example@[127.0.0.1]",
	`"v%elsewhere.example"`,
	"elsewhere.example!v",
	"elsewhere.example!v@example.org",
	`"elsewhere.example!v"`,
	"example.org!elsewhere.example!v",
	"localhost!elsewhere.example!v@localhost",
	"@example.org:v@elsewhere.example",
	"@example.org,@example.org:v@elsewhere.example",
	`"v@elsewhere.example"`,
	`"v@elsewhere.example"@example.org`,
	`"v%elsewhere.example"@example.org`,
	`"v@elsewhere.example"@[127.0.0.1]`,
	"v@[192.0.2.99]",
	"v@[IPv6:2001:db8::1]",
}

func TestSmtpdRelayRefused(t *testing.T) {
	d := startMail(t, "ournets 127.0.0.1\nourdomains example.org\nmaxerrors 1000\n")
	for _, from := range []string{"", "user@elsewhere.net", "user@example.org", "user@localhost", "user"} {
		r := ehlo(t, d, "127.0.0.5")
		r.Send("MAIL FROM:<" + from + ">")
		r.Expect("250 ")
		for _, rcpt := range e2eRelayTricks {
			r.Send("RCPT TO:<" + rcpt + ">")
			if l := r.Reply(); l[0] != "550 5.7.1 we don't relay.  send to your-path@[] for loopback." {
				t.Errorf("from <%s> to <%s>: %q", from, rcpt, l)
			}
		}
		// Syntax tricks are refused as syntax.
		for _, rcpt := range []string{"v@elsewhere.example@example.org", "@[127.0.0.1]:v@elsewhere.example"} {
			r.Send("RCPT TO:<" + rcpt + ">")
			r.Expect("501 5.1.3")
		}
		// Our own users are fine.
		for _, rcpt := range []string{"bob@example.org", "bob@[127.0.0.1]", "bob", "localhost!bob", "postmaster"} {
			r.Send("RCPT TO:<" + rcpt + ">")
			r.Expect("250 2.0.0 receiver is ")
		}
		r.Send("DATA")
		r.Expect("354 ")
		r.Send(".")
		r.Expect("250 2.5.0 sent")
	}
	waitLog(t, d, "Bad Forward example.org!user (client.example.net/127.0.0.5) (elsewhere.example!v)")
}

// TestSmtpdRelayTrusted: a client in ournets may relay: remote
// recipients go into the queue (upas's []-loopback form too, as the
// client's own address), local ones into their Maildir.
func TestSmtpdRelayTrusted(t *testing.T) {
	d := startMail(t, "ournets 127.0.0.1\nresolver 127.0.0.1:9\n")
	r := ehlo(t, d, "127.0.0.1")
	r.Send("MAIL FROM:<a@example.org>")
	r.Expect("250 ")
	for _, rcpt := range []string{"v@elsewhere.example", "elsewhere.example!w", "me@[]"} {
		r.Send("RCPT TO:<" + rcpt + ">")
		r.Expect("250 2.0.0 receiver is ")
	}
	r.Send("RCPT TO:<bob@localhost>")
	r.Expect("250 ")
	r.Send("DATA")
	r.Expect("354 ")
	r.Send(".")
	r.Expect("250 2.5.0 sent")
	if len(boxMessages(t, d.Root, "bob")) != 1 {
		t.Errorf("bob got nothing")
	}
	envs, _ := filepath.Glob(filepath.Join(d.Root, "queue", "*.env"))
	if len(envs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(envs))
	}
	env, _ := os.ReadFile(envs[0])
	for _, want := range []string{"from a@example.org\n", "rcpt v@elsewhere.example ", "rcpt w@elsewhere.example ", "rcpt me@[127.0.0.1] "} {
		if !strings.Contains(string(env), want) {
			t.Errorf("queued envelope lacks %q:\n%s", want, env)
		}
	}
}
