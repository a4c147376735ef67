package mailauth

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAuthResults(t *testing.T) {
	spf := &SPFResult{Result: Pass, Identity: "mailfrom", Domain: "example.com"}
	dkim := []DKIMResult{
		{Result: Pass, Domain: "example.com", Selector: "r2026", Algorithm: "rsa-sha256", Signature: "AbCdEfGh12+/xyz="},
		{Result: Fail, Domain: "example.com", Selector: "e2026", Algorithm: "ed25519-sha256", Signature: "AbCdEfGh34", Reason: "signature did not verify"},
	}
	dmarc := &DMARCResult{Result: Pass, From: "example.com", Policy: Reject, Disposition: DispositionNone}
	got := AuthResults("mx.example.org", Verdict{SPF: spf, DKIM: dkim, DMARC: dmarc})
	want := "Authentication-Results: mx.example.org;\r\n" +
		"\tspf=pass smtp.mailfrom=example.com;\r\n" +
		"\tdkim=pass header.d=example.com header.s=r2026 header.a=rsa-sha256 header.b=AbCdEfGh1;\r\n" +
		"\tdkim=fail reason=\"signature did not verify\" header.d=example.com header.s=e2026 header.a=ed25519-sha256 header.b=AbCdEfGh3;\r\n" +
		"\tdmarc=pass (p=reject dis=none) header.from=example.com\r\n"
	if got != want {
		t.Errorf("AuthResults:\n%s\nwant:\n%s", got, want)
	}

	helo := &SPFResult{Result: Fail, Identity: "helo", Domain: "[192.0.2.1]", Reason: `a "quoted" \ reason` + "\r\nX-Injected: yes"}
	got = AuthResults("mx.example.org", Verdict{SPF: helo, DKIM: []DKIMResult{{Result: None}}})
	want = "Authentication-Results: mx.example.org;\r\n" +
		"\tspf=fail reason=\"a \\\"quoted\\\" \\\\ reasonX-Injected: yes\" smtp.helo=\"[192.0.2.1]\";\r\n" +
		"\tdkim=none\r\n"
	if got != want {
		t.Errorf("AuthResults with quoting:\n%q\nwant:\n%q", got, want)
	}
	if got := AuthResults("mx.example.org", Verdict{}); got != "Authentication-Results: mx.example.org;\r\n\tnone\r\n" {
		t.Errorf("nothing checked: %q", got)
	}
}

func TestAuthResultsBounded(t *testing.T) {
	r := &SPFResult{Result: PermError, Domain: "example.com", Reason: strings.Repeat("x", 5000)}
	for _, line := range strings.Split(AuthResults("mx.example.org", Verdict{SPF: r}), "\r\n") {
		if len(line) > 200 {
			t.Errorf("a line of %d octets", len(line))
		}
	}
}

func TestStripAuthResults(t *testing.T) {
	header := "Received: from a by b\r\n" +
		"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.com\r\n" +
		"authentication-results :\r\n (a comment (nested)) MX.Example.ORG. 1;\r\n\tdkim=pass\r\n" +
		"Authentication-Results: \"mx.example.org\"; dmarc=pass\r\n" +
		"Authentication-Results: (mx.example.org) other.example.net; spf=pass\r\n" +
		"Authentication-Results: mx.example.org.evil.example; spf=pass\r\n" +
		"Authentication-Results: mx.example.orgx; spf=pass\r\n" +
		"X-Authentication-Results: mx.example.org; spf=pass\r\n" +
		"Subject: hello\r\n" +
		"\r\n" +
		"Authentication-Results: mx.example.org; in the body, kept\r\n"
	want := "Received: from a by b\r\n" +
		"Authentication-Results: (mx.example.org) other.example.net; spf=pass\r\n" +
		"Authentication-Results: mx.example.org.evil.example; spf=pass\r\n" +
		"Authentication-Results: mx.example.orgx; spf=pass\r\n" +
		"X-Authentication-Results: mx.example.org; spf=pass\r\n" +
		"Subject: hello\r\n" +
		"\r\n" +
		"Authentication-Results: mx.example.org; in the body, kept\r\n"
	if got := string(StripAuthResults([]byte(header), "mx.example.org")); got != want {
		t.Errorf("StripAuthResults:\n%s\nwant:\n%s", got, want)
	}
	// Bare LF line ends are kept as they are.
	lf := "A: 1\nAuthentication-Results: mx.example.org;\n none\nB: 2\n"
	if got := string(StripAuthResults([]byte(lf), "mx.example.org")); got != "A: 1\nB: 2\n" {
		t.Errorf("StripAuthResults with LF: %q", got)
	}
}

func TestAuthservIDOf(t *testing.T) {
	for in, want := range map[string]string{
		"example.org; spf=pass":         "example.org",
		"  (c) example.org 1; none":     "example.org",
		"((a)b\\)c) example.org;":       "example.org",
		"\"ex\\\"ample.org\"; x":        "ex\"ample.org",
		"\"unclosed; x":                 "",
		"(unclosed comment example.org": "",
		"":                              "",
	} {
		if got := authservIDOf(in); got != want {
			t.Errorf("authservIDOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResultStrings(t *testing.T) {
	spf := SPFResult{Result: Fail, Identity: "mailfrom", Domain: "example.com", IP: netip.MustParseAddr("192.0.2.1"), Lookups: 3, Reason: "matched -all of example.com"}
	dkim := DKIMResult{Result: Pass, Domain: "example.com", Selector: "s", Algorithm: "rsa-sha256", Signature: "AbCdEfGhIjKl"}
	dmarc := DMARCResult{Result: Fail, From: "example.com", Policy: Reject, Disposition: Quarantine, Record: "example.com", Reason: "not sampled\nby pct=50"}
	for _, tt := range []struct{ got, want string }{
		{spf.String(), "spf=fail mailfrom='example.com' ip=192.0.2.1 lookups=3 reason='matched -all of example.com'"},
		{dkim.String(), "dkim=pass d='example.com' s='s' a='rsa-sha256' b='AbCdEfGh'"},
		{DKIMResult{Result: None}.String(), "dkim=none"},
		{dmarc.String(), `dmarc=fail from='example.com' p=reject dis=quarantine record=example.com spf-aligned=false dkim-aligned=false reason='not sampled\x0aby pct=50'`},
	} {
		if tt.got != tt.want || strings.ContainsAny(tt.got, "\r\n") {
			t.Errorf("got  %s\nwant %s", tt.got, tt.want)
		}
	}
}
