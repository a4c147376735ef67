package conf

import (
	"strings"
	"testing"
)

// TestListenVerb: listen takes a tcp dial string and a role (smtp by
// default); a dial string said again takes the newer role; Dump prints one
// line a listener, and the dump round-trips; clear empties the list.
func TestListenVerb(t *testing.T) {
	c, _, err := Apply(Default(), "ctl", "listen tcp!*!25\nlisten tcp!*!587 submission\nlisten tcp!*!465 SUBMISSIONS\nlisten tcp!*!25 smtp\n"+
		"sendas glenda glenda@example.org @Lists.Example.NET\nsendas bob bob@example.org\nsendas glenda glenda@example.org\nsubmitterip on")
	if err != nil {
		t.Fatal(err)
	}
	d := c.Dump()
	for _, want := range []string{
		"listen tcp!*!25 smtp\nlisten tcp!*!587 submission\nlisten tcp!*!465 submissions\n",
		"sendas bob bob@example.org\nsendas glenda glenda@example.org @lists.example.net\n",
		"submitterip on\n",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
	c2, _, err := Apply(Default(), "ctl", d)
	if err != nil || c2.Dump() != d {
		t.Errorf("round trip: %v\n%s", err, c2.Dump())
	}
	c3, _, _ := Apply(c, "ctl", "clear listen\nclear sendas")
	if len(c3.Listen) != 0 || len(c3.SendAs) != 0 || len(c.Listen) != 3 || len(c.SendAs) != 2 {
		t.Errorf("clear: %v %v; the original %v %v", c3.Listen, c3.SendAs, c.Listen, c.SendAs)
	}
	for _, bad := range []string{"listen tcp!*!25 lmtp", "listen udp!*!25", "listen", "listen tcp!*!25 smtp more",
		"sendas glenda", "sendas glenda nobody", "sendas glenda a@b@", "sendas glenda x@bad..domain", "sendas glenda <x>@example.org"} {
		if _, _, err := Apply(Default(), "ctl", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCheckListen: a submission listener needs a certificate.
func TestCheckListen(t *testing.T) {
	c, _, _ := Apply(Default(), "ctl", "listen tcp!*!587 submission")
	if err := c.CheckListen(); err == nil || !strings.Contains(err.Error(), "listen tcp!*!587 submission needs tlscert") {
		t.Errorf("got %v", err)
	}
	c, _, _ = Apply(Default(), "ctl", "listen tcp!*!25 smtp")
	if err := c.CheckListen(); err != nil {
		t.Error(err)
	}
}

func TestMaySendAs(t *testing.T) {
	c, _, err := Apply(Default(), "ctl", "defaultdomain example.org\nhostname mx.example.org\nourdomains example.com *.example.net\n"+
		"sendas boss boss@example.org @lists.example.net")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, addr string
		ok         bool
	}{
		{"glenda", "glenda@example.org", true},
		{"glenda", "glenda@EXAMPLE.COM", true},
		{"glenda", "glenda@sub.example.net", true},
		{"glenda", "glenda@mx.example.org", true},
		{"glenda", "Glenda@example.org", false},
		{"glenda", "glenda@elsewhere.org", false},
		{"glenda", "glenda@localhost", false}, // dotless names are ours for RCPT, not for sending
		{"glenda", "boss@example.org", false},
		{"glenda", "glenda", false},
		{"glenda@example.com", "glenda@example.com", true},
		{"glenda@example.com", "glenda@example.org", false},
		{"glenda@elsewhere.org", "glenda@elsewhere.org", false},
		{"boss", "boss@example.org", true},
		{"boss", "anyone@lists.example.net", true},
		{"boss", "boss@example.com", false}, // sendas replaces the default
		{"boss", "boss@sub.lists.example.net", false},
	} {
		if got := c.MaySendAs(tc.user, tc.addr); got != tc.ok {
			t.Errorf("MaySendAs(%q, %q) = %v", tc.user, tc.addr, got)
		}
	}
}
