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
// the same recipient keyed by address stays grey. greyperclient counts
// the real client, not the domain: the domain's triplets a client made
// count for it, before and after an expiry counted them from their files,
// and another client of the same domain has a share of its own.
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
	if text, err := os.ReadFile(filepath.Join(gt.root, "grey", "tmp", "198.51.100.1", "@farm.example", "bob@example.org")); err != nil || string(text) != "192.0.2.1\n" {
		t.Errorf("the domain's triplet: %q, %v; want the client's address", text, err)
	}
	gt.clk.Add(6 * time.Minute)
	gt.check(c, bob, false, "no call registered for 203.0.113.9/bob@example.org; registering")
	sender(b, "farm.example", bob, true, "192.0.2.2/bob@example.org was grey; adding IP to white")
	if got := gt.whitelist(); got != "192.0.2.2\n" {
		t.Errorf("whitelist %q, want the address that passed", got)
	}
	// Whitelisted now: b passes whatever it sends.
	gt.check(b, []string{"carol@example.org"}, true, "192.0.2.2 whitelisted")

	// greyperclient counts the client that registered the domain's
	// triplets: a has bob and these two.
	s := gt.g.Settings()
	s.PerClient = 3
	if err := gt.g.SetSettings(s); err != nil {
		t.Fatal(err)
	}
	sender(a, "farm.example", []string{"r1@example.org", "r2@example.org"}, false, "")
	gt.check(a, []string{"r3@example.org"}, false, "192.0.2.1 has 3 triplets, greyperclient's limit: not registering 192.0.2.1/r3@example.org")
	sender(a, "other.example", []string{"r3@example.org"}, false, "192.0.2.1 has 3 triplets, greyperclient's limit")
	// c, of the same domain, has its own share: its bob, and room for two.
	sender(c, "farm.example", []string{"r3@example.org"}, false, "no call registered for 203.0.113.9/r3@example.org; registering")
	if _, _, err := gt.g.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The expiry's walk gives each triplet of the domain to its client.
	sender(a, "farm.example", []string{"r4@example.org"}, false, "192.0.2.1 has 3 triplets, greyperclient's limit")
	sender(c, "farm.example", []string{"r5@example.org"}, false, "no call registered for 203.0.113.9/r5@example.org; registering")
	sender(c, "other.example", []string{"r6@example.org"}, false, "203.0.113.9 has 3 triplets, greyperclient's limit")
}
