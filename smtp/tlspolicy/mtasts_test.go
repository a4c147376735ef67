package tlspolicy

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	good := []struct {
		name, text string
		want       STSPolicy
	}{
		{"CRLF", "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 86400\r\n",
			STSPolicy{ModeEnforce, []string{"mx.example.org"}, 86400 * time.Second}},
		{"LF, no final newline, wildcard, case", "version: STSv1\nmode: testing\nmx: *.Example.NET\nmx: mx.example.org.\nmax_age: 0",
			STSPolicy{ModeTesting, []string{"*.example.net", "mx.example.org"}, 0}},
		{"unknown keys, white space, order", "mode:enforce\nfoo_bar: 1 2 3\nmax_age:\t31557600  \nversion: STSv1\nmx:  a.example.org\n",
			STSPolicy{ModeEnforce, []string{"a.example.org"}, 31557600 * time.Second}},
		{"none without mx", "version: STSv1\nmode: none\nmax_age: 60\n",
			STSPolicy{ModeNone, nil, 60 * time.Second}},
		{"first of a repeated key", "version: STSv1\nmode: enforce\nmode: none\nmx: a.example.org\nmax_age: 60\nmax_age: x\n",
			STSPolicy{ModeEnforce, []string{"a.example.org"}, 60 * time.Second}},
	}
	for _, tc := range good {
		p, err := ParsePolicy(tc.text)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(*p, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, *p, tc.want)
		}
		if q, err := ParsePolicy(p.String()); err != nil || !reflect.DeepEqual(q, p) {
			t.Errorf("%s: String does not parse back: %q: %+v %v", tc.name, p.String(), q, err)
		}
	}
	const ok = "version: STSv1\nmode: enforce\nmx: mx.example.org\n"
	bad := []struct{ name, text, err string }{
		{"no version", "mode: enforce\nmx: a.example.org\nmax_age: 1\n", "no version"},
		{"bad version", "version: STSv2\nmode: enforce\nmx: a.example.org\nmax_age: 1\n", "not STSv1"},
		{"no mode", "version: STSv1\nmx: a.example.org\nmax_age: 1\n", "no mode"},
		{"bad mode", "version: STSv1\nmode: report\nmx: a.example.org\nmax_age: 1\n", "not enforce"},
		{"no max_age", ok, "no max_age"},
		{"max_age letters", ok + "max_age: 1d\n", "not 1 to 10 digits"},
		{"max_age negative", ok + "max_age: -5\n", "not 1 to 10 digits"},
		{"max_age 11 digits", ok + "max_age: 00000000001\n", "not 1 to 10 digits"},
		{"max_age above a year", ok + "max_age: 31557601\n", "above 31557600"},
		{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 1\n", "has no mx"},
		{"no colon", ok + "max_age 1\n", "line 4: no colon"},
		{"empty value", ok + "max_age:\n", "line 4: max_age has no value"},
		{"bad key", ok + "max age: 1\n", "invalid key"},
		{"control", ok + "max_age: 1\x00\n", "control character"},
		{"wildcard inside", ok + "mx: mx.*.example.org\nmax_age: 1\n", "invalid mx pattern"},
		{"wildcard without dot", ok + "mx: *example.org\nmax_age: 1\n", "invalid mx pattern"},
		{"wildcard alone", ok + "mx: *.\nmax_age: 1\n", "invalid mx pattern"},
		{"wildcard over a TLD", ok + "mx: *.org\nmax_age: 1\n", "invalid mx pattern"},
		{"empty label", ok + "mx: a..example.org\nmax_age: 1\n", "invalid mx pattern"},
	}
	for _, tc := range bad {
		if p, err := ParsePolicy(tc.text); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: got %+v, %v; want an error with %q", tc.name, p, err, tc.err)
		}
	}
}

func TestMatch(t *testing.T) {
	p := &STSPolicy{Mode: ModeEnforce, MX: []string{"mx.example.org", "*.example.net"}}
	for host, want := range map[string]bool{
		"mx.example.org":      true,
		"MX.Example.ORG.":     true,
		"mx2.example.org":     false,
		"a.mx.example.org":    false,
		"mail.example.net":    true,
		"MAIL.example.net.":   true,
		"example.net":         false,
		"a.b.example.net":     false,
		".example.net":        false,
		"mail.example.net.eu": false,
	} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseTXT(t *testing.T) {
	for _, tc := range []struct {
		recs []string
		id   string
	}{
		{[]string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z"},
		{[]string{"v=STSv1;id=abc"}, "abc"},
		{[]string{"v=spf1 -all", "v=STSv1; id=abc; ext=x.y"}, "abc"},
		{[]string{"v=STSv1; ext=1; id=Z9 ;"}, "Z9"},
	} {
		if id, err := ParseTXT(tc.recs); err != nil || id != tc.id {
			t.Errorf("ParseTXT(%q) = %q, %v; want %q", tc.recs, id, err, tc.id)
		}
	}
	for _, recs := range [][]string{
		nil,
		{"v=spf1 -all"},
		{"v=STSv1 ; id=abc"}, // does not begin with "v=STSv1;"
		{"v=STSv1; id=a", "v=STSv1; id=b"},
		{"v=STSv1;"},
		{"v=STSv1; id="},
		{"v=STSv1; id=a-b"},
		{"v=STSv1; id=" + strings.Repeat("a", 33)},
		{"v=STSv1; id=a; junk"},
	} {
		if id, err := ParseTXT(recs); err == nil {
			t.Errorf("ParseTXT(%q) = %q, want an error", recs, id)
		}
	}
}

const (
	policyA = "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n"
	policyB = "version: STSv1\nmode: enforce\nmx: *.example.org\nmax_age: 86400\n"
)

// stsSetup is a domain example.org with an MTA-STS record of id 1 and a
// policy server for mta-sts.example.org trusted through RootCAs.
type stsSetup struct {
	dns   *fakeDNS
	ps    *policyServer
	clock *clock
	ca    *cert
	e     *Engine
}

const stsZone = `_mta-sts.example.org. TXT "v=STSv1; id=1;"
mta-sts.example.org. A 127.0.0.1
`

func newSTSSetup(t *testing.T, zone, body string) *stsSetup {
	ca := valid(t, nil, true, "test CA")
	s := &stsSetup{dns: newFakeDNS(t, zone), clock: &clock{t: time.Now()}, ca: ca}
	s.ps = newPolicyServer(t, valid(t, ca, false, "mta-sts.example.org"), body)
	s.e = s.engine(t.TempDir())
	return s
}

// engine returns a new Engine (as after a restart) with the cache in dir.
func (s *stsSetup) engine(dir string) *Engine {
	return &Engine{Resolver: s.dns.addr, HTTPSPort: s.ps.port, RootCAs: pool(s.ca), CacheDir: dir, Now: s.clock.Now}
}

// policy asks for the policy of example.org.
func (s *stsSetup) policy(t *testing.T) (*STSPolicy, string) {
	t.Helper()
	dp, err := s.e.ForDomain(t.Context(), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	return dp.STS, dp.STSNote
}

func TestFetch(t *testing.T) {
	s := newSTSSetup(t, stsZone, policyA)
	p, note := s.policy(t)
	if p == nil || p.String() != policyA {
		t.Fatalf("got %v (%s), want the policy", p, note)
	}
	fi, err := os.Stat(filepath.Join(s.e.CacheDir, "example.org"))
	if err != nil || fi.Mode().Perm() != 0600 {
		t.Fatalf("cache file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(filepath.Join(s.e.CacheDir, "example.org"))
	if !strings.Contains(string(b), "\nid 1\n") || !strings.HasSuffix(string(b), "\n\n"+policyA) {
		t.Errorf("cache file:\n%s", b)
	}
	if ents, _ := os.ReadDir(s.e.CacheDir); len(ents) != 1 {
		t.Errorf("cache directory holds %d files, want 1", len(ents))
	}
}

// TestFetchRefused: every response RFC 8461 §3.3 says not to take is no
// policy, and a redirect is not followed.
func TestFetchRefused(t *testing.T) {
	big := policyA + strings.Repeat("x: "+strings.Repeat("y", 60)+"\n", (maxPolicySize/64)+1)
	for _, tc := range []struct {
		name        string
		status      int
		ctype, body string
		header      map[string]string
		want        string
	}{
		{"redirect", 301, "text/plain", policyA, map[string]string{"Location": "/elsewhere"}, "redirect to \"/elsewhere\" refused"},
		{"not found", 404, "text/plain", policyA, nil, "HTTP status 404"},
		{"html", 200, "text/html", policyA, nil, "not text/plain"},
		{"oversize", 200, "text/plain", big, nil, "larger than 65536 bytes"},
		{"invalid", 200, "text/plain", "version: STSv1\n", nil, "no mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSTSSetup(t, stsZone, policyA)
			s.ps.reply(tc.status, tc.ctype, tc.body, tc.header)
			p, note := s.policy(t)
			if p != nil || !strings.Contains(note, tc.want) {
				t.Errorf("got %v, %q; want no policy and %q", p, note, tc.want)
			}
			if s.ps.away.Load() != 0 {
				t.Errorf("the redirect was followed")
			}
			if _, err := os.Stat(filepath.Join(s.e.CacheDir, "example.org")); err == nil {
				t.Errorf("a refused policy was cached")
			}
		})
	}
}

// TestFetchLimits: a body of exactly 64 KiB and a media type with
// parameters are taken.
func TestFetchLimits(t *testing.T) {
	pad := maxPolicySize - len(policyA)
	body := policyA + "x: " + strings.Repeat("y", pad-4) + "\n"
	s := newSTSSetup(t, stsZone, body)
	s.ps.reply(200, "text/plain; charset=utf-8", body, nil)
	if p, note := s.policy(t); p == nil {
		t.Fatalf("64 KiB policy refused: %s", note)
	}
}

// TestFetchWrongCert: the policy server must have a certificate for
// mta-sts.<domain> from a trusted CA.
func TestFetchWrongCert(t *testing.T) {
	for name, mk := range map[string]func(*testing.T, *cert) *cert{
		"other name": func(t *testing.T, ca *cert) *cert { return valid(t, ca, false, "www.example.org") },
		"untrusted":  func(t *testing.T, _ *cert) *cert { return valid(t, nil, false, "mta-sts.example.org") },
		"expired": func(t *testing.T, ca *cert) *cert {
			return newCert(t, ca, []string{"mta-sts.example.org"}, false, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
		},
	} {
		t.Run(name, func(t *testing.T) {
			ca := valid(t, nil, true, "test CA")
			s := &stsSetup{dns: newFakeDNS(t, stsZone), clock: &clock{t: time.Now()}, ca: ca}
			s.ps = newPolicyServer(t, mk(t, ca), policyA)
			s.e = s.engine(t.TempDir())
			if p, note := s.policy(t); p != nil || !strings.Contains(note, "certificate") {
				t.Errorf("got %v, %q; want no policy for a certificate error", p, note)
			}
		})
	}
}

// TestCache: a cached policy is used while its id holds and it is young,
// fetched again at half its max_age or when the id changes, used when a
// fetch fails or the TXT record is gone, and dropped when it expires.
func TestCache(t *testing.T) {
	s := newSTSSetup(t, stsZone, policyA)
	expect := func(step string, body string, hits int64) {
		t.Helper()
		p, note := s.policy(t)
		switch {
		case body == "" && p != nil:
			t.Errorf("%s: got %v (%s), want none", step, p, note)
		case body != "" && (p == nil || p.String() != body):
			t.Errorf("%s: got %v (%s), want %q", step, p, note, body)
		}
		if got := s.ps.hits.Load(); got != hits {
			t.Errorf("%s: %d fetches, want %d (%s)", step, got, hits, note)
		}
	}
	expect("first", policyA, 1)
	s.ps.reply(200, "text/plain", policyB, nil)
	expect("same id", policyA, 1)
	s.clock.add(11 * time.Hour)
	expect("young", policyA, 1)
	s.clock.add(2 * time.Hour) // 13 h: past half of 24 h
	expect("half life", policyB, 2)
	s.ps.reply(200, "text/plain", policyA, nil)
	s.dns.set(t, strings.Replace(stsZone, "id=1", "id=2", 1))
	expect("new id", policyA, 3)

	// The server breaks: the cached policy holds, a fetch is not tried
	// again for fetchBackoff, and the policy ends with its max_age.
	s.ps.reply(500, "text/plain", "", nil)
	s.dns.set(t, strings.Replace(stsZone, "id=1", "id=3", 1))
	expect("fetch fails", policyA, 4)
	expect("backoff", policyA, 4)
	s.clock.add(fetchBackoff)
	expect("after backoff", policyA, 5)
	s.dns.set(t, "mta-sts.example.org. A 127.0.0.1")
	expect("TXT gone", policyA, 5)
	s.dns.set(t, "servfail _mta-sts.example.org.")
	expect("TXT lookup fails", policyA, 5)
	s.clock.add(24 * time.Hour)
	expect("expired", "", 5)
}

// TestCacheFile: a new Engine (a restart) finds the policy on disk and
// uses it when the server is down; a damaged file is ignored.
func TestCacheFile(t *testing.T) {
	s := newSTSSetup(t, stsZone, policyA)
	if p, _ := s.policy(t); p == nil {
		t.Fatal("no policy")
	}
	s.ps.reply(503, "text/plain", "", nil)
	s.dns.set(t, strings.Replace(stsZone, "id=1", "id=2", 1))
	s.e = s.engine(s.e.CacheDir)
	if p, note := s.policy(t); p == nil || p.String() != policyA || !strings.Contains(note, "cached policy id 1") {
		t.Errorf("after a restart: got %v, %q; want the cached policy", p, note)
	}
	file := filepath.Join(s.e.CacheDir, "example.org")
	if err := os.WriteFile(file, []byte("id 1\nfetched yesterday\n\n"+policyA), 0600); err != nil {
		t.Fatal(err)
	}
	s.e = s.engine(s.e.CacheDir)
	if p, note := s.policy(t); p != nil {
		t.Errorf("damaged file: got %v, %q; want none", p, note)
	}
}
