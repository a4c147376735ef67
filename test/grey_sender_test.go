package test

import (
	"strings"
	"testing"

	"smtpfs/test/testlib"
)

// senderZone is the DNS of TestGreySenderCheck.
const senderZone = `
mx.example.      MX 10 mail.elsewhere.example.
a.example.       A 192.0.2.1
aaaa.example.    AAAA 2001:db8::1
nullmx.example.  MX 0 .
txt.example.     TXT "no mail here"
gone.example     NXDOMAIN
broken.example   SERVFAIL
`

// TestGreySenderCheck: with -r the domain of an untrusted sender must
// have an MX, A or AAAA record, asked of the DNS server of
// $SMTPFS_RESOLVER (a fake one on loopback): a domain that does not exist,
// has none of them or has a null MX (RFC 7505) is refused for good, a DNS
// failure for now; address literals, the null sender and trusted clients
// are not checked; verifysenderdom off written to ctl turns it off.
func TestGreySenderCheck(t *testing.T) {
	dns := testlib.NewDNS(t, senderZone)
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	d := startMail(t, "ournets 127.0.0.3\n", "-r", "-h", "example.org")
	const sent = greySent
	for _, tc := range []struct{ ip, from, want string }{
		{"127.0.0.5", "a@mx.example", sent},
		{"127.0.0.5", "a@a.example", sent},
		{"127.0.0.5", "a@aaaa.example", sent},
		{"127.0.0.5", "a@nullmx.example", "554 5.7.1 Sender domain must exist: nullmx.example!a"},
		{"127.0.0.5", "a@txt.example", "554 5.7.1 Sender domain must exist: txt.example!a"},
		{"127.0.0.5", "a@gone.example", "554 5.7.1 Sender domain must exist: gone.example!a"},
		{"127.0.0.5", "a@unknown.example", "554 5.7.1 Sender domain must exist: unknown.example!a"},
		{"127.0.0.5", "a@broken.example", "450 4.7.0 Sender domain broken.example could not be checked: try again later"},
		{"127.0.0.5", "a@[127.0.0.5]", sent},
		{"127.0.0.5", "", sent},
		{"127.0.0.3", "a@gone.example", sent}, // trusted
	} {
		if got := greyTry(t, d, tc.ip, tc.from, "bob@localhost"); got != tc.want {
			t.Errorf("%s <%s>: %q, want %q", tc.ip, tc.from, got, tc.want)
		}
	}
	if n := len(boxMessages(t, d.Root, "bob")); n != 6 {
		t.Errorf("bob has %d messages, want 6", n)
	}
	if !strings.Contains(logText(t, d), "[client.example.net/127.0.0.5] gone.example!a -> localhost!bob sendercheck: Sender domain must exist: gone.example!a") {
		t.Errorf("the refusal is not in the log:\n%s", logText(t, d))
	}

	queries := dns.Queries.Load()
	if err := ctl(t, d, "verifysenderdom off\n"); err != nil {
		t.Fatal(err)
	}
	if got := greyTry(t, d, "127.0.0.5", "a@gone.example", "bob@localhost"); got != sent {
		t.Errorf("<a@gone.example> with verifysenderdom off: %q", got)
	}
	if q := dns.Queries.Load(); q != queries {
		t.Errorf("%d DNS queries with verifysenderdom off", q-queries)
	}
}
