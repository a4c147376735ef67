package mailauth

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

func TestOrgDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":           "example.com",
		"mail.Example.COM.":     "example.com",
		"a.b.example.co.uk":     "example.co.uk",
		"co.uk":                 "co.uk", // a public suffix is its own
		"com":                   "com",
		"foo.bar.github.io":     "bar.github.io", // private suffixes count too
		"xn--bcher-kva.example": "xn--bcher-kva.example",
	} {
		if got := orgDomain(in); got != want {
			t.Errorf("orgDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAligned(t *testing.T) {
	tests := []struct {
		auth, from string
		mode       byte
		want       bool
	}{
		{"example.com", "example.com", 's', true},
		{"EXAMPLE.com.", "example.com", 's', true},
		{"mail.example.com", "example.com", 's', false},
		{"mail.example.com", "example.com", 'r', true},
		{"example.com", "news.example.com", 'r', true},
		{"a.example.com", "b.example.com", 'r', true},
		{"example.net", "example.com", 'r', false},
		{"evil-example.com", "example.com", 'r', false},
		{"example.co.uk", "other.co.uk", 'r', false},
		{"", "example.com", 'r', false},
	}
	for _, tt := range tests {
		if got := aligned(tt.auth, tt.from, tt.mode); got != tt.want {
			t.Errorf("aligned(%q, %q, %c) = %v, want %v", tt.auth, tt.from, tt.mode, got, tt.want)
		}
	}
}

func TestParseDMARC(t *testing.T) {
	tests := []struct {
		txt  string
		want string // p sp adkim aspf pct, or "" for no record
	}{
		{"v=DMARC1; p=reject", "reject - r r 100"},
		{"v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=20", "quarantine none s s 20"},
		{" v = DMARC1 ; p = Reject ; ", "reject - r r 100"},
		{"v=DMARC1; p=reject; pct=150; adkim=x; foo=bar", "reject - r r 100"}, // bad values ignored
		{"v=DMARC1; rua=mailto:d@example.com", "none - r r 100"},              // no p, but rua: p=none
		{"v=DMARC1; p=bogus; rua=mailto:d@example.com", "none - r r 100"},
		{"v=DMARC1; p=bogus", ""},
		{"v=DMARC1", ""},
		{"v=dmarc1; p=reject", ""},  // the version is case-sensitive
		{"p=reject; v=DMARC1", ""},  // and first
		{"v=DMARC10; p=reject", ""}, // and exact
		{"v=spf1 -all", ""},
	}
	for _, tt := range tests {
		rec, ok := parseDMARC(tt.txt)
		got := ""
		if ok {
			sp := string(rec.sp)
			if sp == "" {
				sp = "-"
			}
			got = strings.Join([]string{string(rec.p), sp, string(rec.adkim), string(rec.aspf), strconv.Itoa(rec.pct)}, " ")
		}
		if got != tt.want {
			t.Errorf("parseDMARC(%q) = %q, want %q", tt.txt, got, tt.want)
		}
	}
}

// dmarcZone has the policies the DMARC tests look up.
func dmarcZone() *memDNS {
	return newMemDNS().
		txt("_dmarc.example.com", "v=DMARC1; p=reject; sp=quarantine").
		txt("_dmarc.strict.example", "v=DMARC1; p=reject; adkim=s; aspf=s").
		txt("_dmarc.half.example", "v=DMARC1; p=reject; pct=50").
		txt("_dmarc.own.example.com", "v=DMARC1; p=none").
		txt("_dmarc.two.example", "v=DMARC1; p=reject").
		txt("_dmarc.two.example", "v=DMARC1; p=none").
		txt("_dmarc.nopolicy.example", "v=spf1 -all").
		add("_dmarc.slow.example", "TIMEOUT", nil).
		txt("_dmarc.xn--bcher-kva.example", "v=DMARC1; p=reject")
}

func TestEvalDMARC(t *testing.T) {
	pass := func(d string) SPFResult { return SPFResult{Result: Pass, Domain: d} }
	sig := func(r Result, d string) []DKIMResult { return []DKIMResult{{Result: r, Domain: d}} }
	noDKIM := []DKIMResult{{Result: None}}
	tests := []struct {
		name   string
		from   string
		spf    SPFResult
		dkim   []DKIMResult
		sample int // what Rand returns
		want   string
	}{
		{"spf aligned", "a@example.com", pass("example.com"), noDKIM, 0, "pass reject none example.com"},
		{"spf relaxed alignment", "a@example.com", pass("bounce.example.com"), noDKIM, 0, "pass reject none example.com"},
		{"spf not passed", "a@example.com", SPFResult{Result: SoftFail, Domain: "example.com"}, noDKIM, 0, "fail reject reject example.com"},
		{"dkim aligned", "a@example.com", pass("other.example"), sig(Pass, "mail.example.com"), 0, "pass reject none example.com"},
		{"dkim not aligned", "a@example.com", pass("other.example"), sig(Pass, "example.net"), 0, "fail reject reject example.com"},
		{"dkim failed", "a@example.com", SPFResult{Result: Fail}, sig(Fail, "example.com"), 0, "fail reject reject example.com"},
		{"strict: subdomain not aligned", "a@strict.example", pass("mail.strict.example"), sig(Pass, "mail.strict.example"), 0, "fail reject reject strict.example"},
		{"strict: same domain", "a@strict.example", pass("strict.example"), noDKIM, 0, "pass reject none strict.example"},
		{"subdomain: sp of the organizational domain", "a@news.example.com", SPFResult{Result: Fail}, noDKIM, 0, "fail quarantine quarantine example.com"},
		{"subdomain with its own record", "a@own.example.com", SPFResult{Result: Fail}, noDKIM, 0, "fail none none own.example.com"},
		{"pct: sampled", "a@half.example", SPFResult{Result: Fail}, noDKIM, 49, "fail reject reject half.example"},
		{"pct: not sampled, one step milder", "a@half.example", SPFResult{Result: Fail}, noDKIM, 50, "fail reject quarantine half.example"},
		{"no record", "a@example.org", SPFResult{Result: Fail}, noDKIM, 0, "none  none "},
		{"two records are none", "a@two.example", SPFResult{Result: Fail}, noDKIM, 0, "none  none "},
		{"no DMARC record among the TXT", "a@nopolicy.example", SPFResult{Result: Fail}, noDKIM, 0, "none  none "},
		{"DNS fails", "a@slow.example", SPFResult{Result: Fail}, noDKIM, 0, "temperror  none "},
		{"U-label From", "a@bücher.example", SPFResult{Result: Fail}, noDKIM, 0, "fail reject reject xn--bcher-kva.example"},
	}
	for _, tt := range tests {
		c := &Checker{Resolver: dmarcZone(), Rand: func(int) int { return tt.sample }}
		header := "From: Someone <" + tt.from + ">\r\nSubject: x\r\n\r\n"
		r := c.EvalDMARC(context.Background(), []byte(header), tt.spf, tt.dkim)
		got := strings.Join([]string{string(r.Result), string(r.Policy), string(r.Disposition), r.Record}, " ")
		if got != tt.want {
			t.Errorf("%s: %s, want %s (%s)", tt.name, got, tt.want, r)
		}
	}
}

func TestDMARCFrom(t *testing.T) {
	// Several author domains: the strictest failing disposition applies
	// (RFC 7489 §6.6.1), whether in one From field or in two.
	c := &Checker{Resolver: dmarcZone(), Rand: func(int) int { return 0 }}
	fail := SPFResult{Result: Fail}
	dkim := []DKIMResult{{Result: Pass, Domain: "example.org"}}
	tests := []struct {
		name, header string
		want         string
	}{
		{"one From, two domains", "From: a@example.org, b@example.com\r\n\r\n", "fail reject example.com"},
		{"two From fields", "From: a@example.org\r\nFrom: b@example.com\r\n\r\n", "fail reject example.com"},
		{"two From fields, quarantine and reject", "From: a@news.example.com\r\nfrom : b@half.example\r\n\r\n", "fail reject half.example"},
		{"folded From", "From: Someone\r\n <a@example.com>\r\n\r\n", "fail reject example.com"},
		{"malformed From still checked", "From: \"unclosed <a@example.com>\r\n\r\n", "fail reject example.com"},
		{"no From", "Subject: x\r\n\r\n", "permerror none "},
		{"From without a domain", "From: undisclosed-recipients:;\r\n\r\n", "permerror none "},
		{"From after the header is not a From", "Subject: x\r\n\r\nFrom: a@example.com\r\n", "permerror none "},
	}
	for _, tt := range tests {
		r := c.EvalDMARC(context.Background(), []byte(tt.header), fail, dkim)
		got := strings.Join([]string{string(r.Result), string(r.Disposition), r.From}, " ")
		if got != tt.want {
			t.Errorf("%s: %s, want %s (%s)", tt.name, got, tt.want, r)
		}
	}
}
