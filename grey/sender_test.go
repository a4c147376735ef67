package grey

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckSender: keyed by a sender domain that passed SPF, a retry from
// another address of the sender's passes, and whitelists that address;
// the same recipient keyed by address stays grey; the domain is one client
// for greyperclient, before and after an expiry counted its triplets.
func TestCheckSender(t *testing.T) {
	gt := newGreyTest(t, "")
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("203.0.113.9")
	bob := []string{"bob@example.org"}
	sender := func(remote netip.Addr, domain string, rcpts []string, want bool, logged string) {
		t.Helper()
		before := len(gt.log.String())
		if got := gt.g.CheckSender(local, remote, domain, "alice@"+domain, rcpts); got != want {
			t.Errorf("CheckSender(%v, %s, %q) = %v, want %v; log:\n%s", remote, domain, rcpts, got, want, gt.log.String()[before:])
		}
		if logged != "" && !strings.Contains(gt.log.String()[before:], logged) {
			t.Errorf("CheckSender(%v, %s) did not log %q:\n%s", remote, domain, logged, gt.log.String()[before:])
		}
	}
	sender(a, "Farm.Example.", bob, false, "farm.example passed SPF for 192.0.2.1: greylisting its domain's triplets")
	if _, err := os.Stat(filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", "@farm.example", "bob@example.org")); err != nil {
		t.Errorf("the domain's triplet: %v", err)
	}
	gt.clk.Add(6 * time.Minute)
	gt.check(c, bob, false, "no call registered for 203.0.113.9/bob@example.org; registering")
	sender(b, "farm.example", bob, true, "192.0.2.2/bob@example.org was grey; adding IP to white")
	if got := gt.whitelist(); got != "192.0.2.2\n" {
		t.Errorf("whitelist %q, want the address that passed", got)
	}
	// Whitelisted now: b passes whatever it sends.
	gt.check(b, []string{"carol@example.org"}, true, "192.0.2.2 whitelisted")

	// greyperclient counts the domain as one client.
	s := gt.g.Settings()
	s.PerClient = 3
	if err := gt.g.SetSettings(s); err != nil {
		t.Fatal(err)
	}
	many := []string{"r1@example.org", "r2@example.org", "r3@example.org"}
	sender(a, "farm.example", many[:2], false, "")
	sender(c, "farm.example", many[2:], false, "farm.example has 3 triplets, greyperclient's limit: not registering 203.0.113.9/r3@example.org")
	if _, _, err := gt.g.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	sender(c, "farm.example", many[2:], false, "farm.example has 3 triplets, greyperclient's limit")
	// Another domain, and the address itself, have their own shares.
	sender(c, "other.example", many[2:], false, "no call registered for 203.0.113.9/r3@example.org; registering")
}
