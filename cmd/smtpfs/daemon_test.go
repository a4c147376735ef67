package main

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"smtpfs/cmd/internal/setup"
	"smtpfs/smtpd/conf"
)

func newTestDaemon(t *testing.T, file string, verbs ...string) *daemon {
	t.Helper()
	root := t.TempDir()
	if err := setup.MakeRoot(root); err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(root, "lib", "smtpd.conf")
	os.WriteFile(cf, []byte(file), 0644)
	d, err := newDaemon(root, cf, verbs, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

func (d *daemon) logged(t *testing.T) string {
	b, _ := os.ReadFile(filepath.Join(d.root, "log", "smtpd"))
	return string(b)
}

func TestCtl(t *testing.T) {
	d := newTestDaemon(t, "maxsize 10k\n", "greylist on")
	if err := d.Ctl("maxsize 20k\nnorelay on\nourdomains example.org\ngreywindow 1m 2h\n"); err != nil {
		t.Fatal(err)
	}
	c := d.Config()
	if c.MaxSize != 20<<10 || !c.Greylist || len(c.OurDomains) != 1 {
		t.Errorf("config %+v", c)
	}
	if s := d.grey.Settings(); s.Min != time.Minute || s.Max != 2*time.Hour {
		t.Errorf("the greylist did not follow: %+v", s)
	}
	// All or nothing: a bad line changes nothing.
	before := d.ConfigText()
	err := d.Ctl("maxsize 30k\nbogus verb\n")
	var le *conf.LineError
	if !errors.As(err, &le) || le.Line != 2 || !strings.HasPrefix(err.Error(), "invalid ctl line 2") {
		t.Errorf("bad line: %v", err)
	}
	if d.ConfigText() != before {
		t.Errorf("a failed write changed the configuration")
	}
	// The queue's actions reach the queue; an unknown id says not found.
	if err := d.Ctl("kick"); err != nil {
		t.Errorf("kick: %v", err)
	}
	// An action whose arguments are not there is a bad line: the write
	// fails, naming it, and changes nothing, settings before it included.
	before = d.ConfigText()
	for _, tc := range []struct{ text, want string }{
		{"delete nosuchid", "invalid ctl line 1 'delete nosuchid': not found: nosuchid"},
		{"maxsize 30k\nhold all nosuchid\n", "invalid ctl line 2 'hold all nosuchid': not found: nosuchid"},
		{"tarpit on\nunwhitelist 192.0.2.9\n", "invalid ctl line 2 'unwhitelist 192.0.2.9': not found: 192.0.2.9"},
	} {
		if err := d.Ctl(tc.text); err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %v, want %s", tc.text, err, tc.want)
		}
		if d.ConfigText() != before {
			t.Errorf("%q changed the configuration", tc.text)
		}
	}
	if err := d.grey.Whitelist().Add("192.0.2.0/24 relay\n"); err != nil {
		t.Fatal(err)
	}
	if err := d.Ctl("unwhitelist 192.0.2.7/24"); err != nil || d.grey.Whitelist().Len() != 0 {
		t.Errorf("unwhitelist of an entry: %v, %d entries left", err, d.grey.Whitelist().Len())
	}
	// reload builds the configuration again from the file and the flags.
	if err := d.Ctl("reload"); err != nil {
		t.Fatal(err)
	}
	if c := d.Config(); c.MaxSize != 10<<10 || !c.Greylist || len(c.OurDomains) != 0 {
		t.Errorf("after reload: %+v", c)
	}
	// An action runs after the settings of its write.
	var ran []string
	d.actions["kick"] = action{run: func(args []string) error { ran = append(ran, "kick "+d.Config().Hostname); return nil }}
	if err := d.Ctl("hostname mx.example.org\nkick\n"); err != nil || len(ran) != 1 || ran[0] != "kick mx.example.org" {
		t.Errorf("kick: %v, %q", err, ran)
	}
}

// TestUnwhitelist: the ctl verb removes entries the whitelist file has.
func TestUnwhitelist(t *testing.T) {
	d := newTestDaemon(t, "")
	if err := d.grey.Whitelist().Add("10.0.0.0/8 partner\n192.0.2.7\n"); err != nil {
		t.Fatal(err)
	}
	if err := d.Ctl("unwhitelist 10.0.0.0/8"); err != nil {
		t.Fatal(err)
	}
	if w := d.grey.Whitelist(); w.Contains(netip.MustParseAddr("10.1.2.3")) || !w.Contains(netip.MustParseAddr("192.0.2.7")) {
		t.Errorf("whitelist after unwhitelist: %d entries", w.Len())
	}
	if err := d.Ctl("unwhitelist 10.0.0.0/8"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("second unwhitelist: %v", err)
	}
}

func TestConfigTextRoundTrips(t *testing.T) {
	d := newTestDaemon(t, "ournets 10.0.0.0/8 192.168.1.0/24\nourdomains example.org *.example.com\nmailer /bin/cat\n")
	text := d.ConfigText()
	e := newTestDaemon(t, "")
	if err := e.Ctl(text); err != nil {
		t.Fatal(err)
	}
	if e.ConfigText() != text {
		t.Errorf("round trip:\n%s\nbecame\n%s", text, e.ConfigText())
	}
}

func TestReloadBadFile(t *testing.T) {
	d := newTestDaemon(t, "maxsize 10k\n")
	os.WriteFile(d.confFile, []byte("maxsize ten\n"), 0644)
	if err := d.Reload(); err == nil {
		t.Errorf("a bad file reloaded")
	}
	if d.Config().MaxSize != 10<<10 {
		t.Errorf("a bad file changed the configuration")
	}
	os.WriteFile(filepath.Join(d.root, "lib", "secrets"), []byte("u p\n"), 0644)
	os.WriteFile(d.confFile, []byte("maxsize 11k\n"), 0644)
	if err := d.Reload(); err == nil || d.Config().MaxSize != 10<<10 {
		t.Errorf("a readable lib/secrets reloaded: %v", err)
	}
}

func TestFlagVerbs(t *testing.T) {
	t.Setenv("SMTPFS_RESOLVER", "127.0.0.1:5353")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "resolver 127.0.0.1:5353"},
		{[]string{"-fg", "-k10.0.0.0/8", "-k", "192.0.2.1"}, "resolver 127.0.0.1:5353|norelay on|greylist on|evil 10.0.0.0/8|evil 192.0.2.1"},
		{[]string{"-adDprs", "-h", "example.org", "-c", "/etc/cert file.pem", "-m", "/bin/true"},
			"resolver 127.0.0.1:5353|requireauth on|debug on|tarpit on|plaintextauth on|verifysenderdom on|saveblockedmsg on|tlscert '/etc/cert file.pem'|defaultdomain example.org|mailer /bin/true"},
	} {
		var f setup.Flags
		s := argSet(&f, new(listeners))
		if _, err := s.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(f.Verbs(), "|"); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestChangesInOrder: the engines get the configurations in the order the
// daemon takes them. A second ctl write, or a reload, does not finish while
// the first write is still handing its settings to the engines, and at the
// end the greylist has the window that ctl shows.
func TestChangesInOrder(t *testing.T) {
	d := newTestDaemon(t, "")
	for _, tc := range []struct {
		name   string
		second func() error
	}{
		{"ctl", func() error { return d.Ctl("greywindow 3m 4h") }},
		{"reload", d.Reload},
	} {
		var calls atomic.Int32
		entered, release := make(chan struct{}), make(chan struct{})
		d.beforeChange = func() {
			if calls.Add(1) == 1 {
				close(entered)
				<-release
			}
		}
		first, second := make(chan error, 1), make(chan error, 1)
		go func() { first <- d.Ctl("greywindow 1m 2h") }()
		<-entered
		go func() { second <- tc.second() }()
		select {
		case err := <-second:
			t.Errorf("%s: finished (%v) while a ctl write was still changing the engines", tc.name, err)
			second <- err
		case <-time.After(200 * time.Millisecond):
		}
		close(release)
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if err := <-second; err != nil {
			t.Fatal(err)
		}
		c, s := d.Config(), d.grey.Settings()
		if s.Min != c.GreyMin || s.Max != c.GreyMax {
			t.Errorf("%s: the greylist has %v..%v, ctl says %v..%v", tc.name, s.Min, s.Max, c.GreyMin, c.GreyMax)
		}
	}
}

// TestReloadNamedConf: the file -C names must be there at a reload too:
// gone, the reload fails and the configuration stays, where the defaults
// would have come in its place.
func TestReloadNamedConf(t *testing.T) {
	d := newTestDaemon(t, "maxsize 11k\n")
	d.confNamed = true
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	os.Remove(d.confFile)
	if err := d.Reload(); err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("reload without the -C file: %v", err)
	}
	if got := d.Config().MaxSize; got != 11<<10 {
		t.Errorf("maxsize %d after a failed reload, want %d", got, 11<<10)
	}
	// A FIFO in its place is refused at once, not waited on.
	fifo(t, d.confFile)
	err := promptly(t, "reload with the -C file a FIFO", d.Reload)
	if want := "-C " + d.confFile + ": not a regular file"; err == nil || err.Error() != want {
		t.Errorf("reload with the -C file a FIFO: %v, want %s", err, want)
	}
}

// TestCtlDKIM: "dkim newkey" makes a key (mode 0600) and logs its
// record; a dkim line naming a selector without a key fails the write,
// naming the line, and the keys chosen before still sign; once the key
// exists the line chooses it, the tree's file says so, and the stats
// file has the verdict counters.
func TestCtlDKIM(t *testing.T) {
	d := newTestDaemon(t, "")
	before := d.ConfigText()
	err := d.Ctl("tarpit on\ndkim example.org s2026\n")
	if want := "invalid ctl line 2 'dkim example.org s2026': dkim example.org s2026: no key " + filepath.Join(d.root, "lib", "dkim", "example.org", "s2026.key"); err == nil || err.Error() != want {
		t.Errorf("a selector without a key:\n got %v\nwant %s", err, want)
	}
	if d.ConfigText() != before {
		t.Errorf("a failed write changed the configuration")
	}
	if err := d.Ctl("dkim newkey Example.ORG s2026 ed25519"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(d.root, "lib", "dkim", "example.org", "s2026.key"))
	if err != nil || fi.Mode().Perm() != 0600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if err := d.Ctl("dkim newkey example.org s2026"); err == nil || !strings.Contains(err.Error(), "exists; a key is never replaced") {
		t.Errorf("a second key for a selector: %v", err)
	}
	// The domain as the dkim line takes it: without a final dot.
	if err := d.Ctl("dkim newkey example.net. s2025 ed25519"); err != nil {
		t.Errorf("dkim newkey example.net.: %v", err)
	} else if _, err := os.Stat(filepath.Join(d.root, "lib", "dkim", "example.net", "s2025.key")); err != nil {
		t.Errorf("dkim newkey example.net.: %v", err)
	}
	log := d.logged(t)
	for _, want := range []string{"dkim: new ed25519 key lib/dkim/example.org/s2026.key; publish its record (cat dkim/example.org), then sign with it: dkim example.org s2026",
		"dkim: s2026._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p="} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if got := d.keys.DNSRecords("example.org"); !strings.HasPrefix(got, "; selector s2026: ed25519, not signing yet\n") {
		t.Errorf("records before the dkim line: %q", got)
	}
	if err := d.Ctl("dkim example.org s2026"); err != nil {
		t.Fatal(err)
	}
	if got := d.keys.DNSRecords("example.org"); !strings.HasPrefix(got, "; selector s2026: ed25519, signing\n") {
		t.Errorf("records after the dkim line: %q", got)
	}
	if !strings.Contains(d.ConfigText(), "\ndkim example.org s2026\n") {
		t.Errorf("ctl:\n%s", d.ConfigText())
	}
	// A failed choice keeps the one before.
	if err := d.Ctl("dkim example.org s2027"); err == nil {
		t.Errorf("s2027 chosen without a key")
	}
	if len(d.keys.Signing("example.org")) != 1 {
		t.Errorf("the failed choice undid the one before")
	}
	var names []string
	for _, s := range d.Stats() {
		names = append(names, s.Name)
	}
	if all := strings.Join(names, " "); !strings.Contains(all, "spf.pass") || !strings.Contains(all, "dmarc.reject") {
		t.Errorf("stats: %s", all)
	}
}

// TestCtlDoesNotHoldSessions: while a ctl write is being applied (here,
// its action's check takes its time, as reading a file may), the live
// configuration, which every new session asks for, is there at once.
func TestCtlDoesNotHoldSessions(t *testing.T) {
	d := newTestDaemon(t, "")
	entered, release := make(chan struct{}), make(chan struct{})
	d.actions["kick"] = action{
		check: func([]string) error { close(entered); <-release; return nil },
		run:   func([]string) error { return nil },
	}
	done := make(chan error, 1)
	go func() { done <- d.Ctl("kick") }()
	<-entered
	got := make(chan *conf.Config, 1)
	go func() { got <- d.Config() }()
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Errorf("Config waited for a ctl write")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// fifo makes a FIFO at name, and at the end of the test opens it for
// writing, which lets go a reader that waits on it (a failing test's).
func fifo(t *testing.T, name string) string {
	t.Helper()
	os.Remove(name)
	if err := syscall.Mkfifo(name, 0600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w, err := os.OpenFile(name, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	return name
}

// promptly runs f and returns its error, or fails the test after 10 s.
func promptly(t *testing.T, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer after 10s", what)
		return nil
	}
}

// TestFilesNotRegular: a ctl write naming a FIFO fails at once, and so
// does a reload when smtpd.conf, lib/secrets or lib/blocked has become a
// FIFO; the configuration stays as it was.
func TestFilesNotRegular(t *testing.T) {
	d := newTestDaemon(t, "maxsize 10k\n")
	lib := filepath.Join(d.root, "lib")
	p := fifo(t, filepath.Join(lib, "cert.pem"))
	err := promptly(t, "ctl tlscert of a FIFO", func() error { return d.Ctl("tlscert " + p) })
	if want := "invalid tlscert '" + p + "': not a regular file"; err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("tlscert of a FIFO: %v, want an error ending %q", err, want)
	}
	for _, name := range []string{"smtpd.conf", "secrets", "blocked"} {
		file := filepath.Join(lib, name)
		keep, _ := os.ReadFile(file)
		fifo(t, file)
		err := promptly(t, "reload with "+name+" a FIFO", d.Reload)
		if want := "invalid " + file + ": not a regular file"; err == nil || err.Error() != want {
			t.Errorf("reload with %s a FIFO: %v, want %s", name, err, want)
		}
		if d.Config().MaxSize != 10<<10 || d.Config().TLSCert != nil {
			t.Errorf("a failed reload changed the configuration")
		}
		os.Remove(file)
		if keep != nil {
			os.WriteFile(file, keep, 0644)
		}
	}
}
