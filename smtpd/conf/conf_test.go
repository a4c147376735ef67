package conf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{"ournets 10.0.0.0/8, 192.168.1.0/24 # comment", []string{"ournets", "10.0.0.0/8", "192.168.1.0/24"}, false},
		{"  \t ", nil, false},
		{"# only a comment", nil, false},
		{`mailer /bin/sh -c 'echo a, b # c'`, []string{"mailer", "/bin/sh", "-c", "echo a, b # c"}, false},
		{`x 'it''s' \#hash a\,b`, []string{"x", "it's", "#hash", "a,b"}, false},
		{`x ''`, []string{"x", ""}, false},
		{"x 'open", nil, true},
		{`x \`, nil, true},
		{"x \x01", nil, true},
		{"x '\x01'", nil, true},
	}
	for _, tt := range tests {
		got, err := Tokenize(tt.in)
		if (err != nil) != tt.bad || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Tokenize(%q) = %q, %v; want %q, bad=%v", tt.in, got, err, tt.want, tt.bad)
		}
	}
	for _, w := range []string{"plain", "", "a b", "it's", "#x", `a\b`, "a,b"} {
		got, err := Tokenize("v " + Quote(w))
		if err != nil || len(got) != 2 || got[1] != w {
			t.Errorf("Quote(%q) = %q does not round-trip: %q %v", w, Quote(w), got, err)
		}
	}
}

func TestApply(t *testing.T) {
	c, acts, err := Apply(Default(), "ctl", `
defaultdomain Example.ORG
norelay on
greylist on
ournets 10.0.0.0/8 192.168.1.7
ournets 10.0.0.0/8 172.16
ourdomains example.org *.example.net
evil 203.0.113.0/24
maxsize 10m
greywindow 1m 2h
backoff 1m 5m
delaywarn off
kick
retry q1 q2
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.DefaultDomain != "example.org" || !c.NoRelay || !c.Greylist || c.MaxSize != 10<<20 ||
		c.GreyMin != time.Minute || c.GreyMax != 2*time.Hour || c.DelayWarn != 0 {
		t.Errorf("settings not applied: %+v", c)
	}
	wantNets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("172.16.0.0/16")}
	if !reflect.DeepEqual(c.OurNets, wantNets) {
		t.Errorf("ournets = %v, want %v", c.OurNets, wantNets)
	}
	if !reflect.DeepEqual(acts, []Action{{"kick", []string{}, 13, "kick"}, {"retry", []string{"q1", "q2"}, 14, "retry q1 q2"}}) {
		t.Errorf("actions = %+v", acts)
	}
	for ip, want := range map[string]bool{"10.1.2.3": true, "::ffff:10.1.2.3": true, "192.168.1.8": false, "172.16.9.9": true} {
		if got := c.Trusted(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Trusted(%s) = %v", ip, got)
		}
	}
	for d, want := range map[string]bool{"example.org": true, "EXAMPLE.org.": true, "a.b.example.net": true,
		"example.net": true, "example.com": false, "localuser": true, "[10.0.0.1]": false, "[]": false, "": false} {
		if got := c.OurDomain(d); got != want {
			t.Errorf("OurDomain(%q) = %v", d, got)
		}
	}
}

func TestApplyAllOrNothing(t *testing.T) {
	orig := Default()
	before := orig.Dump()
	tests := []struct{ text, line string }{
		{"greylist on\ngreylist maybe\n", "line 2 'greylist maybe'"},
		{"norelay on\nfrobnicate\n", "line 2 'frobnicate': unknown verb 'frobnicate'"},
		{"maxsize -1", "bad size"},
		{"maxrcpts 10", "from 100"},
		{"ournets 10.0.0.0/33", "invalid address"},
		{"ournets 10.0.0.0/1", "host bits set"},
		{"ourdomains exa mple..org", "bad domain"},
		{"greywindow 2h 1h", "more than"},
		{"smarthost unix!/tmp/x", "tcp dial string"},
		{"resolver localhost:53", "ip:port"},
		{"tlscert /nonexistent.pem", "tlscert"},
		{"mailer /nonexistent/mailer", "mailer"},
		{"greylist", "usage: greylist on|off"},
		{"clear kick", "not a setting"},
		{"retry ../x", "bad message id"},
		{"unwhitelist 1.2.3.4.5", "invalid address"},
	}
	for _, tt := range tests {
		c, _, err := Apply(orig, "ctl", tt.text)
		var le *LineError
		if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), "invalid ctl line") || !strings.Contains(err.Error(), tt.line) {
			t.Errorf("Apply(%q) error = %v, want one containing %q", tt.text, err, tt.line)
		}
		if c != orig || orig.Dump() != before {
			t.Errorf("Apply(%q) changed the config", tt.text)
		}
	}
	if _, _, err := Apply(orig, "smtpd.conf", "kick"); err == nil || !strings.Contains(err.Error(), "smtpd.conf line 1") {
		t.Errorf("runtime verb in a file: %v", err)
	}
}

// TestErrorTexts: errors quote what they name in single quotes, always,
// as lib/blocked's do (`unknown verb 'frobnicate'`), a quote inside
// doubled, cut to 80 bytes, control characters shown as \xNN.
func TestErrorTexts(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"bogus", "invalid ctl line 1 'bogus': unknown verb 'bogus'"},
		{"tarpit on\nBogus on", "invalid ctl line 2 'Bogus on': unknown verb 'bogus'"},
		{"greylist maybe", "invalid ctl line 1 'greylist maybe': greylist takes on or off, not 'maybe'"},
		{"maxrcpts 'it''s'", "invalid ctl line 1 'maxrcpts ''it''''s''': maxrcpts takes a number from 100 to 50000, not 'it''s'"},
		{"maxrcpts 50001", "invalid ctl line 1 'maxrcpts 50001': maxrcpts takes a number from 100 to 50000, not '50001'"},
		{"clear frob", "invalid ctl line 1 'clear frob': clear: 'frob' is not a setting"},
		{"retry a/b", "invalid ctl line 1 'retry a/b': bad message id 'a/b'"},
		{"defaultdomain -x", "invalid ctl line 1 'defaultdomain -x': bad domain '-x'"},
		{"smarthost unix!/x", "invalid ctl line 1 'smarthost unix!/x': smarthost must be a tcp dial string, not 'unix!/x'"},
		{"resolver x:53", "invalid ctl line 1 'resolver x:53': resolver takes ip:port, not 'x:53'"},
		{"ournets 10.0.0.0/33", "invalid ctl line 1 'ournets 10.0.0.0/33': invalid address '10.0.0.0/33'"},
		{"lifetime 5x", "invalid ctl line 1 'lifetime 5x': bad duration '5x'"},
		{"maxsize lots", "invalid ctl line 1 'maxsize lots': bad size 'lots'"},
		{"mailer \x01", "invalid ctl line 1 'mailer \\x01': control character in line"},
		{"ourdomains " + strings.Repeat("a", 100), "invalid ctl line 1 'ourdomains " + strings.Repeat("a", 69) + "...': bad domain '" + strings.Repeat("a", 80) + "...'"},
	} {
		if _, _, err := Apply(Default(), "ctl", tt.text); err == nil || err.Error() != tt.want {
			t.Errorf("Apply(%q):\n got %v\nwant %s", tt.text, err, tt.want)
		}
	}
}

// TestParsePrefix: the networks of ournets and evil. A prefix with host
// bits set is refused, not widened: 10.0.0.0/1 would trust 0.0.0.0/1,
// half the IPv4 Internet, a typo away from an open relay.
func TestParsePrefix(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{"192.0.2.7", "192.0.2.7/32", ""},
		{"192.0.2.7/32", "192.0.2.7/32", ""},
		{"172.16", "172.16.0.0/16", ""},
		{"172.16.5", "172.16.5.0/24", ""},
		{"2001:db8::/32", "2001:db8::/32", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"10.0.0.0/1", "", "invalid address '10.0.0.0/1': host bits set; did you mean 0.0.0.0/1?"},
		{"192.0.2.7/24", "", "invalid address '192.0.2.7/24': host bits set; did you mean 192.0.2.0/24?"},
		{"2001:db8::1/32", "", "invalid address '2001:db8::1/32': host bits set; did you mean 2001:db8::/32?"},
		{"::ffff:10.0.0.1/104", "", "invalid address '::ffff:10.0.0.1/104': host bits set; did you mean 10.0.0.0/8?"},
		{"10.0.0.0/33", "", "invalid address '10.0.0.0/33'"},
		{"1.2.3.4.5", "", "invalid address '1.2.3.4.5'"},
		{"fe80::1%eth0", "", "invalid address 'fe80::1%eth0'"},
		{"", "", "invalid address ''"},
	} {
		p, err := ParsePrefix(tt.in)
		if got := errText(err); got != tt.err || err == nil && p.String() != tt.want {
			t.Errorf("ParsePrefix(%q) = %v, %q; want %s, %q", tt.in, p, got, tt.want, tt.err)
		}
	}
	c, _, err := Apply(Default(), "ctl", "ournets 10.0.0.0/8\nevil 192.0.2.7/24")
	if want := "invalid ctl line 2 'evil 192.0.2.7/24': invalid address '192.0.2.7/24': host bits set; did you mean 192.0.2.0/24?"; errText(err) != want {
		t.Errorf("evil with host bits: %v, want %s", err, want)
	}
	if len(c.OurNets) != 0 || len(c.Evil) != 0 {
		t.Errorf("a refused write changed the networks: %v %v", c.OurNets, c.Evil)
	}
	// unwhitelist names whitelist entries, in the whitelist's grammar,
	// which clears host bits.
	if _, acts, err := Apply(Default(), "ctl", "unwhitelist 192.0.2.7/24"); err != nil || len(acts) != 1 {
		t.Errorf("unwhitelist 192.0.2.7/24: %v, %v", acts, err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestDumpRoundTrip(t *testing.T) {
	dir := t.TempDir()
	cert := writeCert(t, dir)
	c, _, err := Apply(Default(), "ctl", "ournets 10.0.0.0/8 ::1\nourdomains example.org\nevil 1.2.3.4\n"+
		"mailer /bin/sh -c 'cat > /dev/null'\ntlscert "+Quote(cert)+"\nsmarthost tcp!mx.example.org!587\n"+
		"resolver 127.0.0.1:5353\nbackoff 90s 1h30m 1d\nmaxsize 1000001\nlifetime 36h\n")
	if err != nil {
		t.Fatal(err)
	}
	d := c.Dump()
	c2, _, err := Apply(Default(), "ctl", d)
	if err != nil {
		t.Fatalf("dump does not apply: %v\n%s", err, d)
	}
	if d2 := c2.Dump(); d2 != d {
		t.Errorf("dump does not round-trip:\n%s\n---\n%s", d, d2)
	}
	for _, want := range []string{"ournets 10.0.0.0/8 ::1\n", "mailer /bin/sh -c 'cat > /dev/null'\n", "backoff 1m30s 1h30m 1d\n", "maxsize 1000001\n", "greylist off\n"} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
	// Applying a dump to the config it came from changes nothing.
	c3, _, _ := Apply(c, "ctl", d)
	if c3.Dump() != d {
		t.Errorf("re-applying the dump changed it")
	}
	if c2.TLSCert == nil {
		t.Errorf("certificate not loaded")
	}
}

// TestGreyAndBoxLimits: the bounds of the greylist's triplets and of
// the boxes a client makes are verbs with defaults, printed by Dump and
// checked.
func TestGreyAndBoxLimits(t *testing.T) {
	d := Default()
	if d.GreyTriplets != 1_000_000 || d.GreyPerClient != 100 || d.GreyPerMsg != 5 || d.MkBoxPerHour != 20 {
		t.Errorf("defaults %d %d %d %d", d.GreyTriplets, d.GreyPerClient, d.GreyPerMsg, d.MkBoxPerHour)
	}
	for _, want := range []string{"greytriplets 1000000\n", "greyperclient 100\n", "greypermsg 5\n", "mkboxperhour 20\n"} {
		if !strings.Contains(d.Dump(), want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	c, _, err := Apply(d, "ctl", "greytriplets 50\ngreyperclient 7\ngreypermsg 2\nmkboxperhour 4")
	if err != nil || c.GreyTriplets != 50 || c.GreyPerClient != 7 || c.GreyPerMsg != 2 || c.MkBoxPerHour != 4 {
		t.Fatalf("%v: %d %d %d %d", err, c.GreyTriplets, c.GreyPerClient, c.GreyPerMsg, c.MkBoxPerHour)
	}
	if c, _, err = Apply(c, "ctl", "clear greyperclient\nclear mkboxperhour"); err != nil || c.GreyPerClient != 100 || c.MkBoxPerHour != 20 {
		t.Errorf("clear: %v, %d %d", err, c.GreyPerClient, c.MkBoxPerHour)
	}
	for _, bad := range []string{"greytriplets 0", "greyperclient -1", "greypermsg 50001", "mkboxperhour 0", "greypermsg x"} {
		if _, _, err := Apply(d, "ctl", bad); err == nil || !strings.Contains(err.Error(), "takes a number from 1 to") {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestMinFreeOff(t *testing.T) {
	for _, v := range []string{"off", "0"} {
		c, _, err := Apply(Default(), "ctl", "minfree "+v)
		if err != nil || c.MinFree != 0 || !strings.Contains(c.Dump(), "minfree off\n") {
			t.Errorf("minfree %s: %v, %d", v, err, c.MinFree)
		}
	}
}

func TestClear(t *testing.T) {
	c, _, err := Apply(Default(), "ctl", "ournets 10.0.0.0/8\nmaxsize 1k\nsmarthost mx.example.org\nclear ournets\nclear maxsize\nclear smarthost\nclear defaultdomain")
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.OurNets != nil || c.MaxSize != d.MaxSize || c.SmartHost != "" || c.DefaultDomain != d.DefaultDomain {
		t.Errorf("clear did not restore defaults: %+v", c)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "smtpd.conf")
	os.WriteFile(f, []byte("greylist on\nnorelay off\n"), 0644)
	c, err := Load(f, []string{"norelay on"})
	if err != nil || !c.Greylist || !c.NoRelay {
		t.Errorf("Load: %v %+v", err, c)
	}
	if _, err := Load(filepath.Join(dir, "missing"), nil); err != nil {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(f, []byte("greylist on\n\nbogus\n"), 0644)
	if _, err := Load(f, nil); err == nil || !strings.Contains(err.Error(), f+" line 3") {
		t.Errorf("bad file: %v", err)
	}
}

func TestDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{"5d": 120 * time.Hour, "1d12h": 36 * time.Hour, "90s": 90 * time.Second, "14h": 14 * time.Hour} {
		d, err := ParseDuration(s)
		if err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %v, %v", s, d, err)
		}
		if back, _ := ParseDuration(FormatDuration(d)); back != d {
			t.Errorf("FormatDuration(%v) = %q does not round-trip", d, FormatDuration(d))
		}
	}
	for _, s := range []string{"", "0s", "-5m", "d", "5x", "99999d"} {
		if _, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", s)
		}
	}
	if s := FormatDuration(1500 * time.Millisecond); s != "1.5s" {
		t.Errorf("FormatDuration(1.5s) = %q", s)
	}
}

func writeCert(t *testing.T, dir string) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	f := filepath.Join(dir, "cert with space.pem")
	data := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
	if err := os.WriteFile(f, data, 0600); err != nil {
		t.Fatal(err)
	}
	return f
}

// FuzzApply checks that no input panics, that a failed Apply changes
// nothing, and that whatever Apply accepts dumps to text that applies back
// to the same dump.
func FuzzApply(f *testing.F) {
	for _, s := range []string{"greylist on", "ournets 10.0.0.0/8, ::1/128", "mailer 'a b' c", "clear ournets",
		"backoff 1m 1d2h", "maxsize 12k", "minfree off", "retry abc", "x 'it''s' \\#", "defaultdomain EXAMPLE.org.",
		"evil 192.0.2.7/24 ::ffff:10.0.0.0/104"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		orig := Default()
		before := orig.Dump()
		c, _, err := Apply(orig, "ctl", text)
		if orig.Dump() != before {
			t.Fatalf("Apply changed its input")
		}
		if err != nil {
			return
		}
		d := c.Dump()
		c2, _, err := Apply(Default(), "ctl", d)
		if err != nil {
			t.Fatalf("dump %q does not apply: %v", d, err)
		}
		if c2.Dump() != d {
			t.Fatalf("dump does not round-trip: %q vs %q", d, c2.Dump())
		}
	})
}

// TestMailAuthVerbs: spf and dmarc are off, tag (the default) or
// enforce; dkim names, a line a domain, the selectors that sign, replacing
// those named for the domain before; all of it round-trips through Dump;
// "dkim newkey" is an action of ctl, checked before it is handed back.
func TestMailAuthVerbs(t *testing.T) {
	d := Default()
	if d.SPF != PolicyTag || d.DMARC != PolicyTag || d.DKIM != nil {
		t.Errorf("defaults: spf %q dmarc %q dkim %v", d.SPF, d.DMARC, d.DKIM)
	}
	for _, want := range []string{"spf tag\n", "dmarc tag\n"} {
		if !strings.Contains(d.Dump(), want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	c, acts, err := Apply(d, "ctl", "spf Enforce\ndmarc off\ndkim Example.ORG s2025 s2025 ed2025\ndkim example.net a\n"+
		"dkim example.org s2026\ndkim newkey example.com s1 ed25519")
	if err != nil {
		t.Fatal(err)
	}
	if c.SPF != PolicyEnforce || c.DMARC != PolicyOff {
		t.Errorf("spf %q dmarc %q", c.SPF, c.DMARC)
	}
	want := []DKIMSigns{{"example.org", []string{"s2026"}}, {"example.net", []string{"a"}}}
	if !reflect.DeepEqual(c.DKIM, want) {
		t.Errorf("dkim %v, want %v", c.DKIM, want)
	}
	if len(acts) != 1 || acts[0].Verb != "dkim" || strings.Join(acts[0].Args, " ") != "newkey example.com s1 ed25519" || acts[0].Line != 6 {
		t.Errorf("actions %+v", acts)
	}
	dump := c.Dump()
	for _, w := range []string{"spf enforce\n", "dmarc off\n", "dkim example.org s2026\ndkim example.net a\n"} {
		if !strings.Contains(dump, w) {
			t.Errorf("dump lacks %q:\n%s", w, dump)
		}
	}
	c2, _, err := Apply(Default(), "ctl", dump)
	if err != nil || c2.Dump() != dump || !reflect.DeepEqual(c2.DKIM, c.DKIM) {
		t.Errorf("dump does not round-trip: %v\n%s", err, dump)
	}
	// Clone copies the lists: a change of the copy leaves the original.
	cl := c.Clone()
	cl.DKIM[0].Selectors[0] = "x"
	if c.DKIM[0].Selectors[0] != "s2026" {
		t.Errorf("Clone shares the dkim lists")
	}
	if sel := c.DKIMSelection(); !reflect.DeepEqual(sel, map[string][]string{"example.org": {"s2026"}, "example.net": {"a"}}) {
		t.Errorf("DKIMSelection %v", sel)
	}
	if c3, _, err := Apply(c, "ctl", "clear dkim\nclear spf"); err != nil || c3.DKIM != nil || c3.SPF != PolicyTag {
		t.Errorf("clear: %v %v %q", err, c3.DKIM, c3.SPF)
	}
	for _, tt := range []struct{ text, want string }{
		{"spf maybe", "invalid ctl line 1 'spf maybe': spf takes off, tag or enforce, not 'maybe'"},
		{"dmarc", "invalid ctl line 1 'dmarc': usage: dmarc off|tag|enforce"},
		{"dkim example.org", "invalid ctl line 1 'dkim example.org': usage: dkim domain selector... | dkim newkey domain selector [rsa|ed25519]"},
		{"dkim exa..mple s1", "invalid ctl line 1 'dkim exa..mple s1': dkim: bad domain 'exa..mple'"},
		{"dkim example.org s/1", "invalid ctl line 1 'dkim example.org s/1': dkim: bad selector 's/1' (RFC 6376 3.1: labels of letters, digits and hyphens)"},
		{"dkim newkey example.org", "invalid ctl line 1 'dkim newkey example.org': usage: dkim newkey domain selector [rsa|ed25519]"},
		{"dkim newkey example.org s1 dsa", "invalid ctl line 1 'dkim newkey example.org s1 dsa': dkim newkey: algorithm 'dsa', want rsa or ed25519"},
		{"dkim newkey -x s1", "invalid ctl line 1 'dkim newkey -x s1': dkim newkey: bad domain '-x'"},
	} {
		if _, _, err := Apply(Default(), "ctl", tt.text); err == nil || err.Error() != tt.want {
			t.Errorf("Apply(%q):\n got %v\nwant %s", tt.text, err, tt.want)
		}
	}
	if _, _, err := Apply(Default(), "smtpd.conf", "dkim newkey example.org s1"); err == nil || !strings.Contains(err.Error(), "dkim newkey is a ctl command, not a setting") {
		t.Errorf("dkim newkey in a file: %v", err)
	}
	if _, _, err := Apply(Default(), "smtpd.conf", "dkim example.org s1 s2"); err != nil {
		t.Errorf("dkim in a file: %v", err)
	}
}

// The outbound fairness verbs: set, dumped in a form that reads back,
// bad values refused, clear restoring the defaults.
func TestOutboundVerbs(t *testing.T) {
	c, _, err := Apply(Default(), "ctl", "destconcurrency 3\ndeliverytimeout 1h30m\nloopbackrcpts 0\nloopbackrate 5 25 2h\nsessionmsgs 7\nsessionidle 500ms")
	if err != nil {
		t.Fatal(err)
	}
	if c.DestConcurrency != 3 || c.DeliveryTimeout != 90*time.Minute || c.LoopbackRcpts != 0 ||
		c.LoopbackRateMsgs != 5 || c.LoopbackRateRcpts != 25 || c.LoopbackRateWindow != 2*time.Hour ||
		c.SessionMsgs != 7 || c.SessionIdle != 500*time.Millisecond {
		t.Errorf("not applied: %+v", c)
	}
	d := c.Dump()
	for _, want := range []string{"\ndestconcurrency 3\n", "\ndeliverytimeout 1h30m\n", "\nloopbackrcpts 0\n", "\nloopbackrate 5 25 2h\n",
		"\nsessionmsgs 7\n", "\nsessionidle 500ms\n"} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
	if c2, _, err := Apply(Default(), "ctl", d); err != nil || c2.Dump() != d {
		t.Errorf("dump does not round-trip: %v", err)
	}
	def := Default().Dump()
	for _, want := range []string{"\ndestconcurrency 10\n", "\ndeliverytimeout 15m\n", "\nloopbackrcpts 10\n", "\nloopbackrate 20 100 1h\n",
		"\nsessionmsgs 100\n", "\nsessionidle 2s\n"} {
		if !strings.Contains(def, want) {
			t.Errorf("default dump lacks %q", want)
		}
	}
	for _, bad := range []string{"destconcurrency 0", "deliverytimeout 0s", "loopbackrcpts -1", "loopbackrcpts 50001",
		"loopbackrate 5 25", "loopbackrate x 25 1h", "loopbackrate 5 -1 1h", "loopbackrate 5 25 soon",
		"sessionmsgs 0", "sessionmsgs 10001", "sessionidle 0s"} {
		if _, _, err := Apply(Default(), "ctl", bad); err == nil {
			t.Errorf("%q applied", bad)
		}
	}
	c, _, err = Apply(c, "ctl", "clear destconcurrency\nclear deliverytimeout\nclear loopbackrcpts\nclear loopbackrate\nclear sessionmsgs\nclear sessionidle")
	if err != nil || c.Dump() != def {
		t.Errorf("clear did not restore the defaults: %v", err)
	}
}

// TestGreyStore: greystore takes file or a Redis URL, shown whole by Dump
// (which round-trips), and refuses anything else with an error that does
// not show the password; greyfail takes open or closed.
func TestGreyStore(t *testing.T) {
	d := Default()
	if d.GreyStore != "file" || d.GreyFailClosed {
		t.Errorf("defaults %q %v", d.GreyStore, d.GreyFailClosed)
	}
	for _, want := range []string{"greystore file\n", "greyfail open\n"} {
		if !strings.Contains(d.Dump(), want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	for _, url := range []string{"redis://127.0.0.1:6379/0", "rediss://smtpfs:s3cr%23t@redis.example:6380/3", "redis://[::1]", "redis://:pw@h/"} {
		c, _, err := Apply(d, "ctl", "greystore "+Quote(url)+"\ngreyfail closed")
		if err != nil || c.GreyStore != url || !c.GreyFailClosed {
			t.Errorf("greystore %s: %v, %q %v", url, err, c.GreyStore, c.GreyFailClosed)
			continue
		}
		dump := c.Dump()
		if !strings.Contains(dump, "greystore "+url+"\n") || !strings.Contains(dump, "greyfail closed\n") {
			t.Errorf("dump lacks the store:\n%s", dump)
		}
		c2, _, err := Apply(Default(), "ctl", dump)
		if err != nil || c2.Dump() != dump {
			t.Errorf("greystore %s does not round-trip: %v", url, err)
		}
		if c3, _, err := Apply(c, "ctl", "clear greystore\nclear greyfail"); err != nil || c3.GreyStore != "file" || c3.GreyFailClosed {
			t.Errorf("clear: %v %q %v", err, c3.GreyStore, c3.GreyFailClosed)
		}
	}
	if c, _, err := Apply(d, "ctl", "greystore FILE"); err != nil || c.GreyStore != "file" {
		t.Errorf("greystore FILE: %v %q", err, c.GreyStore)
	}
	for bad, why := range map[string]string{
		"greystore http://u:sekrit@h/0":      "the scheme must be redis or rediss",
		"greystore redis://u:sekrit@/0":      "no host",
		"greystore redis://u:sekrit@h/0?x=1": "no query",
		"greystore redis://u:sekrit@h:0/0":   "bad port",
		"greystore redis://u:sekrit@h/db1":   "the path is a database number",
		"greystore /var/lib/smtpfs":          "the scheme",
		"greyfail maybe":                     "greyfail takes open or closed",
	} {
		_, _, err := Apply(d, "ctl", bad)
		if err == nil || !strings.Contains(err.Error(), why) || strings.Contains(err.Error(), "sekrit") {
			t.Errorf("%s: %v, want an error with %q and no password", bad, err, why)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"greystore redis://u:sekrit@h:6379/0":           "greystore redis://u:xxxxx@h:6379/0",
		"ctl: greystore 'rediss://:p''w d@h/1'":         "ctl: greystore 'rediss://:xxxxx@h/1'",
		"greystore REDIS://u:pw@h and mail@example.org": "greystore REDIS://u:xxxxx@h and mail@example.org",
		"greystore redis://h:6379/0 to bob@example.org": "greystore redis://h:6379/0 to bob@example.org",
		"no URL here: a:b@c":                            "no URL here: a:b@c",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOurDomainULabel: a domain written in U-labels (an SMTPUTF8 address)
// is ours when its A-label is listed; an invalid one never is.
func TestOurDomainULabel(t *testing.T) {
	c, _, err := Apply(Default(), "ctl", "ourdomains xn--bcher-kva.example *.xn--mnchen-3ya.example")
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{"bücher.example": true, "BÜCHER.example.": true, "mail.münchen.example": true,
		"xn--bcher-kva.example": true, "büch\u2215er.example": false, "bucher.example": false} {
		if got := c.OurDomain(d); got != want {
			t.Errorf("OurDomain(%q) = %v, want %v", d, got, want)
		}
	}
}
