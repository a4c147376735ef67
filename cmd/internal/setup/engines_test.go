package setup

import (
	"io"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"smtpfs/smtpd"
	"smtpfs/smtpd/authfail"
	"smtpfs/smtpd/conf"
)

func TestQueueSettingsIsLocal(t *testing.T) {
	c, _, err := conf.Apply(conf.Default(), "ctl", "ourdomains example.org *.example.net\nhostname mx.example.com\nminfree 100m\ndestconcurrency 3\ndeliverytimeout 2m\nsessionmsgs 5\nsessionidle 3s")
	if err != nil {
		t.Fatal(err)
	}
	s := QueueSettings(c)
	for _, tt := range []struct {
		addr, user string
		local      bool
	}{
		{"bob@example.org", "bob@example.org", true},
		{"Bob@Mail.Example.NET", "Bob@Mail.Example.NET", true},
		{"bob@mx.example.com", "bob@mx.example.com", true},
		{"bob", "bob", true},
		{"bob@elsewhere.example", "", false},
		{"me@[127.0.0.1]", "", false},
	} {
		user, ok := s.IsLocal(tt.addr)
		if ok != tt.local || ok && user != tt.user {
			t.Errorf("IsLocal(%q) = %q, %v; want %q, %v", tt.addr, user, ok, tt.user, tt.local)
		}
	}
	if s.Hostname != "mx.example.com" || s.Lifetime != c.Lifetime || len(s.Backoff) != len(c.Backoff) || s.MinFree != 100<<20 {
		t.Errorf("settings %+v", s)
	}
	if s.DestConcurrency != 3 || s.DeliveryTimeout != 2*time.Minute || s.SessionMsgs != 5 || s.SessionIdle != 3*time.Second {
		t.Errorf("destconcurrency, deliverytimeout, sessionmsgs, sessionidle not handed on: %d %v %d %v",
			s.DestConcurrency, s.DeliveryTimeout, s.SessionMsgs, s.SessionIdle)
	}
}

func TestGreySettings(t *testing.T) {
	c, _, err := conf.Apply(conf.Default(), "ctl", "greywindow 1m 2h\ngreyprefix 24 64\ngreytriplets 50\ngreyperclient 7\ngreypermsg 2\ngreyfail closed")
	if err != nil {
		t.Fatal(err)
	}
	s := GreySettings(c)
	if s.Min != time.Minute || s.Max != 2*time.Hour || s.Prefix4 != 24 || s.Prefix6 != 64 || s.MaxTriplets != 50 || s.PerClient != 7 || s.PerMessage != 2 || !s.FailClosed {
		t.Errorf("settings %+v", s)
	}
}

func TestClassifier(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	os.WriteFile(filepath.Join(root, "lib", "blocked"), []byte(
		"block 192.0.2.1\ndeny 192.0.2.2\ndial 192.0.2.3\ndelay 192.0.2.4\nallow 192.0.2.5\nblock 192.0.2.5\n"), 0644)
	b, err := OpenBlocked(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := Classifier{Blocked: b}
	for ip, want := range map[string]smtpd.Verdict{"192.0.2.1": smtpd.Block, "192.0.2.2": smtpd.Deny,
		"192.0.2.3": smtpd.Dial, "192.0.2.4": smtpd.Delay, "192.0.2.5": smtpd.Accept, "192.0.2.6": smtpd.Accept} {
		if got := c.Classify(netip.MustParseAddr(ip), ""); got != want {
			t.Errorf("Classify(%s) = %v, want %v", ip, got, want)
		}
	}
	os.WriteFile(filepath.Join(root, "lib", "blocked"), []byte("frob 1.2.3.4\n"), 0644)
	if _, err := OpenBlocked(root, nil); err == nil {
		t.Errorf("a bad lib/blocked opened")
	}
}

// TestMakeRoot: the parts of the mail root that say who mails whom are
// private (grey, log, queue), on a fresh root and on one an older smtpfs
// made with grey/ and log/ open to all.
func TestMakeRoot(t *testing.T) {
	root := t.TempDir()
	old := filepath.Join(root, "old")
	for _, d := range []string{"grey", "log", "box"} {
		if err := os.MkdirAll(filepath.Join(old, d), 0755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(old, d), 0755)
	}
	os.Chmod(filepath.Join(old, "box"), 0711) // the operator's choice: kept
	want := map[string]os.FileMode{".": 0755, "lib": 0755, "box": 0755, "grey": 0700, "log": 0750,
		"queue": 0700, "queue.dump": 0700, "tmp": 0700}
	for _, r := range []string{filepath.Join(root, "new"), old} {
		if err := MakeRoot(r); err != nil {
			t.Fatal(err)
		}
		for d, mode := range want {
			if r == old && d == "box" {
				mode = 0711
			}
			if fi, err := os.Stat(filepath.Join(r, d)); err != nil || fi.Mode().Perm() != mode {
				t.Errorf("%s: mode %v (%v), want %v", filepath.Join(r, d), fi.Mode().Perm(), err, mode)
			}
		}
	}
}

// TestSessionRedis: the smtpd program opens Redis only when greystore
// names it, and then counts AUTH failures there.
func TestSessionRedis(t *testing.T) {
	if rs := SessionRedis(conf.Default(), log.New(io.Discard, "", 0)); rs != nil {
		t.Errorf("greystore file opened %s", rs.Name())
	}
	if _, ok := AuthLimiter(t.TempDir(), nil).(*authfail.File); !ok {
		t.Errorf("greystore file: the AUTH limiter is not grey/authfail")
	}
	c, _, err := conf.Apply(conf.Default(), "ctl", "greystore redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	rs := SessionRedis(c, log.New(io.Discard, "", 0))
	if rs == nil {
		t.Fatal("greystore redis://: no store")
	}
	defer rs.Close()
	if _, err := AuthLimiter(t.TempDir(), rs).Failed(netip.MustParsePrefix("192.0.2.7/32"), time.Now()); err == nil {
		t.Errorf("a failure counted in a Redis that is not there")
	}
}
