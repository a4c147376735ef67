package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smtpfs/fs/fstest"
)

// TestGreyFlood: one client floods the greylist with made-up recipients
// (bob+0, bob+1, ... at localhost), eight sessions of twenty. With the
// greylist scaled down in smtpd.conf (greytriplets 30, greyperclient 10,
// greypermsg 5), it registers five triplets a message and ten in all, and
// is then refused without registering; the greylist never fills, so a
// second client is greylisted as usual and passes when it retries. Before
// the limits, the flood filled the greylist and every new client got
// "greylist full" until expiry.
func TestGreyFlood(t *testing.T) {
	d := startMail(t, "greytriplets 30\ngreyperclient 10\ngreypermsg 5\n", "-g")
	flooder := filepath.Join(d.Root, "grey", "tmp", "127.0.0.1", "127.0.0.5")
	n := 0
	for i := range 8 {
		var rcpts []string
		for range 20 {
			rcpts = append(rcpts, fmt.Sprintf("bob+%d@localhost", n))
			n++
		}
		if got := greyTry(t, d, "127.0.0.5", "spam@sender.example", rcpts...); got != greyRefusal {
			t.Fatalf("flood session %d: %q, want %q", i, got, greyRefusal)
		}
		if ents, _ := os.ReadDir(flooder); i == 0 && len(ents) != 5 {
			t.Errorf("the first message of 20 recipients registered %d triplets, want 5", len(ents))
		}
	}
	if ents, _ := os.ReadDir(flooder); len(ents) != 10 {
		t.Errorf("the flooder has %d triplets, want 10 (greyperclient)", len(ents))
	}

	if got := greyTry(t, d, "127.0.0.6", "alice@sender.example", "carol@localhost"); got != greyRefusal {
		t.Fatalf("second client: %q, want %q", got, greyRefusal)
	}
	backdate(t, triplet(d, "127.0.0.6", "carol@localhost"), 6*time.Minute)
	if got := greyTry(t, d, "127.0.0.6", "alice@sender.example", "carol@localhost"); got != greySent {
		t.Errorf("second client after 6 minutes: %q, want %q", got, greySent)
	}
	if m := boxMessages(t, d.Root, "carol"); len(m) != 1 {
		t.Errorf("carol has %d messages, want 1", len(m))
	}

	log := logText(t, d)
	logHas(t, log,
		"5 new recipients of the message registered, greypermsg's limit: not registering 127.0.0.5/bob+5@localhost and 14 more",
		"127.0.0.5 has 10 triplets, greyperclient's limit: not registering 127.0.0.5/bob+",
		"no call registered for 127.0.0.6/carol@localhost; registering",
		"127.0.0.6/carol@localhost was grey; adding IP to white",
	)
	if strings.Contains(log, "greylist full") {
		t.Errorf("the greylist filled up:\n%s", log)
	}
	dump := fstest.Read(t, fstest.Dial(t, d.NineP[0]), "ctl")
	for _, want := range []string{"greytriplets 30\n", "greyperclient 10\n", "greypermsg 5\n"} {
		if !strings.Contains(dump, want) {
			t.Errorf("cat ctl lacks %q:\n%s", want, dump)
		}
	}
}
