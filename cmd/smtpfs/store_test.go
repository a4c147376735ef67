package main

import (
	"bytes"
	"log"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// stat returns one of the daemon's counters.
func (d *daemon) stat(name string) int64 {
	for _, s := range d.Stats() {
		if s.Name == name {
			return s.Value
		}
	}
	return -1
}

// TestStoreSwitch: greystore written to ctl moves the greylist, the
// whitelist and the AUTH counts to Redis, importing grey/whitelist once;
// the whitelist file of the tree is then the shared one; exportwhitelist
// writes it back to grey/whitelist, and greystore file goes back to the
// files, which have it.
func TestStoreSwitch(t *testing.T) {
	r := testlib.NewRedis(t)
	d := newTestDaemon(t, "")
	if err := d.grey.Whitelist().Add("# mine\n192.0.2.7\n"); err != nil {
		t.Fatal(err)
	}
	url := "redis://:s3cret@" + r.Addr + "/0"
	if err := d.Ctl("greystore " + url); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.ConfigText(), "greystore "+url+"\n") {
		t.Errorf("ctl does not show the store whole:\n%s", d.ConfigText())
	}
	rs := d.stores.redis.Load()
	if rs == nil || d.grey.Store() != rs {
		t.Fatalf("the greylist's store is %T", d.grey.Store())
	}
	testlib.WaitFor(t, 10*time.Second, "the import", func() bool { return d.grey.Whitelist().Len() == 1 })
	if err := (whitelistFile{d.grey}).Add("198.51.100.0/24 partner\n"); err != nil {
		t.Fatal(err)
	}
	if got := string((whitelistFile{d.grey}).Text()); got != "# mine\n192.0.2.7\n198.51.100.0/24 partner\n" {
		t.Errorf("the whitelist file reads %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(d.root, "grey", "whitelist")); string(b) != "# mine\n192.0.2.7\n" {
		t.Errorf("an append went to grey/whitelist: %q", b)
	}
	// AUTH failures go to Redis too.
	client := netip.MustParsePrefix("192.0.2.9/32")
	for range 10 {
		d.srv.AuthLimiter.Failed(client, time.Now())
	}
	if locked, err := rs.AuthLimiter(10, time.Minute, time.Minute).Locked(client, time.Now()); !locked || err != nil {
		t.Errorf("the lockout is not in Redis: %v, %v", locked, err)
	}
	if d.stat("greystore.up") != 1 || d.stat("whitelist.entries") != 2 {
		t.Errorf("stats: up %d, entries %d", d.stat("greystore.up"), d.stat("whitelist.entries"))
	}

	if err := d.Ctl("exportwhitelist"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "copy")
	if err := d.Ctl("exportwhitelist " + out); err != nil {
		t.Fatal(err)
	}
	if err := d.Ctl("greystore file"); err != nil {
		t.Fatal(err)
	}
	if d.stores.redis.Load() != nil || d.grey.Store() != d.stores.files {
		t.Errorf("greystore file: the store is %T", d.grey.Store())
	}
	want := "# mine\n192.0.2.7\n198.51.100.0/24 partner\n"
	for _, f := range []string{filepath.Join(d.root, "grey", "whitelist"), out} {
		b, err := os.ReadFile(f)
		fi, _ := os.Stat(f)
		if string(b) != want || err != nil || fi.Mode().Perm() != 0600 {
			t.Errorf("%s: %q, %v, mode %v", f, b, err, fi.Mode())
		}
	}
	if !d.grey.Whitelist().Contains(netip.MustParseAddr("198.51.100.7")) {
		t.Errorf("the files' index does not have the export")
	}
	if err := d.Ctl("exportwhitelist"); err == nil || !strings.Contains(err.Error(), "greystore is file") {
		t.Errorf("exportwhitelist with greystore file: %v", err)
	}
	if err := d.Ctl("exportwhitelist relative/path"); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf("exportwhitelist relative/path: %v", err)
	}
	logged := d.logged(t)
	if strings.Contains(logged, "s3cret") || !strings.Contains(logged, "greystore redis://:xxxxx@"+r.Addr+"/0") {
		t.Errorf("the log shows the password, or not the store:\n%s", logged)
	}
}

// TestStoreDown: a daemon started on a Redis that is not there starts,
// serves, says so in stats, and greyfail decides.
func TestStoreDown(t *testing.T) {
	r := testlib.NewRedis(t)
	r.Kill()
	d := newTestDaemon(t, "greystore "+r.URL(0)+"\n")
	local, remote := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.7")
	if !d.grey.Check(local, remote, "", []string{"bob"}) {
		t.Errorf("greyfail open refused")
	}
	if d.stat("greystore.up") != 0 || d.stat("greystore.outages") != 1 || d.stat("greylist.unchecked") != 1 {
		t.Errorf("stats: %v", d.Stats())
	}
	if err := d.Ctl("greyfail closed"); err != nil {
		t.Fatal(err)
	}
	if d.grey.Check(local, remote, "", []string{"bob"}) {
		t.Errorf("greyfail closed passed")
	}
	r.Restart()
	select {
	case <-d.stores.redis.Load().Back():
	case <-time.After(20 * time.Second):
		t.Fatal("not back")
	}
	if d.stat("greystore.up") != 1 {
		t.Errorf("greystore.up after Redis came back: %d", d.stat("greystore.up"))
	}
	if !strings.Contains(d.logged(t), ": back after ") {
		t.Errorf("the log does not say the store is back:\n%s", d.logged(t))
	}
}

// TestRedactingLog: the 9P tree's log shows URL passwords as xxxxx.
func TestRedactingLog(t *testing.T) {
	var b bytes.Buffer
	l := redacting(log.New(&b, "9p: ", 0))
	l.Printf("ctl: greystore rediss://u:pw@h:6380/1")
	if got := b.String(); got != "9p: ctl: greystore rediss://u:xxxxx@h:6380/1\n" {
		t.Errorf("logged %q", got)
	}
}
