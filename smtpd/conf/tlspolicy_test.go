package conf

import (
	"strings"
	"testing"

	"smtpfs/smtp/tlspolicy"
)

// TestTLSPolicyVerbs: tlspolicy lines set, replace and (with default)
// take away a domain's level, render one line a domain, and clear takes
// them all; daneresolver takes ip:port; bad input names what is wrong.
func TestTLSPolicyVerbs(t *testing.T) {
	c, _, err := Apply(Default(), "ctl", "tlspolicy Example.ORG. dane\ntlspolicy b.example verify\ntlspolicy c.example none\n"+
		"tlspolicy b.example mta-sts\ntlspolicy c.example default\ndaneresolver 127.0.0.1:5353\n")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]tlspolicy.Level{"example.org": tlspolicy.LevelDANE, "b.example": tlspolicy.LevelMTASTS}
	if len(c.TLSPolicy) != 2 || c.TLSPolicy["example.org"] != want["example.org"] || c.TLSPolicy["b.example"] != want["b.example"] {
		t.Errorf("TLSPolicy %v, want %v", c.TLSPolicy, want)
	}
	if c.DANEResolver != "127.0.0.1:5353" {
		t.Errorf("DANEResolver %q", c.DANEResolver)
	}
	dump := c.Dump()
	if !strings.Contains(dump, "tlspolicy b.example mta-sts\ntlspolicy example.org dane\n") || !strings.Contains(dump, "daneresolver 127.0.0.1:5353\n") {
		t.Errorf("Dump:\n%s", dump)
	}
	back, _, err := Apply(Default(), "smtpd.conf", dump)
	if err != nil || len(back.TLSPolicy) != 2 || back.TLSPolicy["b.example"] != tlspolicy.LevelMTASTS {
		t.Errorf("Dump read back: %v, %v", back.TLSPolicy, err)
	}
	cl, _, err := Apply(c, "ctl", "clear tlspolicy\nclear daneresolver")
	if err != nil || cl.TLSPolicy != nil || cl.DANEResolver != "" || len(c.TLSPolicy) != 2 {
		t.Errorf("clear: %v %q, %v; the original %v", cl.TLSPolicy, cl.DANEResolver, err, c.TLSPolicy)
	}
	for line, want := range map[string]string{
		"tlspolicy example.org strict":  `tlspolicy example.org: invalid TLS policy level "strict": not dane, mta-sts, verify, encrypt, may or none`,
		"tlspolicy bad_domain! verify":  "tlspolicy: bad domain",
		"tlspolicy example.org":         "usage: tlspolicy domain dane|mta-sts|verify|encrypt|may|none|default",
		"daneresolver unbound.local:53": "daneresolver takes the ip:port of a validating resolver, not 'unbound.local:53'",
	} {
		if _, _, err := Apply(Default(), "ctl", line); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", line, err, want)
		}
	}
}
