package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	t.Cleanup(func() { d.logs.Close() })
	return d
}

func (d *daemon) logged(t *testing.T) string {
	b, _ := os.ReadFile(filepath.Join(d.root, "log", "smtpd"))
	return string(b)
}

func TestCtl(t *testing.T) {
	d := newTestDaemon(t, "maxsize 10k\n", "greylist on")
	if err := d.Ctl("maxsize 20k\nnorelay on\nourdomains example.org\n"); err != nil {
		t.Fatal(err)
	}
	c := d.Config()
	if c.MaxSize != 20<<10 || !c.Greylist || len(c.OurDomains) != 1 {
		t.Errorf("config %+v", c)
	}
	log := d.logged(t)
	if !strings.Contains(log, "ctl: maxsize 20k\n") || !strings.Contains(log, "ctl: ourdomains example.org\n") || strings.Contains(log, "ctl: norelay on") {
		t.Errorf("log of changes:\n%s", log)
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
	// Actions whose engine is not wired in are refused, and nothing is applied.
	err = d.Ctl("maxsize 40k\nkick\n")
	if err == nil || !strings.Contains(err.Error(), "invalid ctl line 2") || !strings.Contains(err.Error(), "not available") {
		t.Errorf("kick: %v", err)
	}
	if d.ConfigText() != before {
		t.Errorf("a refused action changed the configuration")
	}
	// reload builds the configuration again from the file and the flags.
	if err := d.Ctl("reload"); err != nil {
		t.Fatal(err)
	}
	if c := d.Config(); c.MaxSize != 10<<10 || !c.Greylist || len(c.OurDomains) != 0 {
		t.Errorf("after reload: %+v", c)
	}
	// A wired action runs after the settings.
	var ran []string
	d.actions["kick"] = func(args []string) error { ran = append(ran, "kick "+d.Config().Hostname); return nil }
	if err := d.Ctl("hostname mx.example.org\nkick\n"); err != nil || len(ran) != 1 || ran[0] != "kick mx.example.org" {
		t.Errorf("kick: %v, %q", err, ran)
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
		s := argSet(&f)
		if _, err := s.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(f.Verbs(), "|"); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.args, got, tc.want)
		}
	}
}
