package mailauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// testKeys are keys made once for the package's tests: an RSA and an
// Ed25519 key for example.com, in a store under a temporary directory.
var testKeys struct {
	once sync.Once
	dir  string
	rsa  *Key
	ed   *Key
	err  error
}

func keys(t testing.TB) (rsaKey, edKey *Key) {
	t.Helper()
	testKeys.once.Do(func() {
		// Not t.TempDir: the keys outlive the test that makes them.
		dir, err := mkdirTemp()
		if err != nil {
			testKeys.err = err
			return
		}
		ks, err := OpenKeyStore(dir)
		if err == nil {
			testKeys.rsa, err = ks.NewKey("example.com", "r2026", "rsa")
		}
		if err == nil {
			testKeys.ed, err = ks.NewKey("example.com", "e2026", "ed25519")
		}
		testKeys.dir, testKeys.err = dir, err
	})
	if testKeys.err != nil {
		t.Fatal(testKeys.err)
	}
	return testKeys.rsa, testKeys.ed
}

// publish puts the keys' records in a zone.
func publish(m *memDNS, keys ...*Key) *memDNS {
	for _, k := range keys {
		m.txt(k.Selector+"._domainkey."+k.Domain, keyRecord(k))
	}
	return m
}

// signer returns a Signer for the test keys, both chosen for example.com.
func signer(t testing.TB) *Signer {
	r, e := keys(t)
	ks, err := OpenKeyStore(testKeys.dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Select(map[string][]string{"example.com": {r.Selector, e.Selector}}); err != nil {
		t.Fatal(err)
	}
	return &Signer{Keys: ks}
}

const testMsg = "From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: a test\r\n" +
	"\twith a folded subject\r\n" +
	"Date: Mon, 24 Nov 2025 15:23:01 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"List-Id: <list.example.com>\r\n" +
	"X-Unsigned: yes\r\n" +
	"\r\n" +
	"Hello,  Bob.\r\n" +
	"Caf\xc3\xa9 au lait.\r\n" +
	"\r\n\r\n"

// signed signs msg and returns it with its signatures on top.
func signed(t testing.TB, s *Signer, msg string) string {
	t.Helper()
	h, err := s.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return string(h) + msg
}

func results(rs []DKIMResult) string {
	var l []string
	for _, r := range rs {
		l = append(l, fmt.Sprintf("%s/%s/%s", r.Result, r.Domain, r.Selector))
	}
	return strings.Join(l, " ")
}

func TestSignVerify(t *testing.T) {
	r, e := keys(t)
	c := &Checker{Resolver: publish(newMemDNS(), r, e)}
	msg := signed(t, signer(t), testMsg)
	got := c.VerifyDKIM(context.Background(), strings.NewReader(msg))
	if s := results(got); s != "pass/example.com/r2026 pass/example.com/e2026" {
		t.Fatalf("verify: %s\n%v\n%s", s, got, msg)
	}
	if got[0].Algorithm != "rsa-sha256" || got[1].Algorithm != "ed25519-sha256" {
		t.Errorf("algorithms %s and %s", got[0].Algorithm, got[1].Algorithm)
	}
	// What the signature covers: the fields of signedFields present, the
	// List-Id, and From oversigned; not X-Unsigned.
	if !strings.Contains(msg, "h=From:To:Subject:Date:Message-ID:List-Id:From;") {
		t.Errorf("signed fields are not the expected ones:\n%s", msg)
	}

	tampered := map[string]string{
		"body":        strings.Replace(msg, "Bob.", "Eve.", 1),
		"subject":     strings.Replace(msg, "a test", "a tset", 1),
		"second From": strings.Replace(msg, "\r\nTo: bob", "\r\nFrom: eve@example.org\r\nTo: bob", 1),
	}
	for what, m := range tampered {
		got := c.VerifyDKIM(context.Background(), strings.NewReader(m))
		if s := results(got); s != "fail/example.com/r2026 fail/example.com/e2026" {
			t.Errorf("changed %s: %s, want both to fail", what, s)
		}
	}
	// Relaxed canonicalization: re-folding and white space at line ends
	// do not matter.
	refolded := strings.Replace(msg, "Subject: a test\r\n\twith", "Subject:   a test\r\n        with", 1)
	refolded = strings.Replace(refolded, "Bob.\r\n", "Bob.  \r\n", 1)
	if s := results(c.VerifyDKIM(context.Background(), strings.NewReader(refolded))); s != "pass/example.com/r2026 pass/example.com/e2026" {
		t.Errorf("refolded: %s, want pass", s)
	}
}

func TestVerifyDKIMOutcomes(t *testing.T) {
	r, e := keys(t)
	ctx := context.Background()
	msg := signed(t, signer(t), testMsg)

	c := &Checker{Resolver: newMemDNS()}
	if s := results(c.VerifyDKIM(ctx, strings.NewReader(msg))); s != "permerror/example.com/r2026 permerror/example.com/e2026" {
		t.Errorf("no key published: %s", s)
	}
	timeout := newMemDNS().add("r2026._domainkey.example.com", "TIMEOUT", nil).add("e2026._domainkey.example.com", "TIMEOUT", nil)
	c = &Checker{Resolver: timeout}
	if s := results(c.VerifyDKIM(ctx, strings.NewReader(msg))); s != "temperror/example.com/r2026 temperror/example.com/e2026" {
		t.Errorf("key lookups time out: %s", s)
	}
	revoked := newMemDNS().txt("r2026._domainkey.example.com", "v=DKIM1; k=rsa; p=")
	publish(revoked, e)
	c = &Checker{Resolver: revoked}
	if s := results(c.VerifyDKIM(ctx, strings.NewReader(msg))); s != "permerror/example.com/r2026 pass/example.com/e2026" {
		t.Errorf("rsa key revoked: %s", s)
	}
	c = &Checker{Resolver: publish(newMemDNS(), r, e)}
	if got := c.VerifyDKIM(ctx, strings.NewReader(testMsg)); len(got) != 1 || got[0].Result != None {
		t.Errorf("unsigned message: %v, want one none", got)
	}
	// A message that cannot be read to its end has no verdict.
	cut := io.MultiReader(strings.NewReader(msg[:len(msg)-10]), iotest.ErrReader(errors.New("connection reset")))
	if s := results(c.VerifyDKIM(ctx, cut)); s != "temperror/example.com/r2026 temperror/example.com/e2026" {
		t.Errorf("message cut by a read error: %s", s)
	}
	// A message of only a header, without the empty line.
	onlyHead := signed(t, signer(t), "From: alice@example.com\r\nSubject: x\r\n")
	if s := results(c.VerifyDKIM(ctx, strings.NewReader(onlyHead))); s != "pass/example.com/r2026 pass/example.com/e2026" {
		t.Errorf("message without a body: %s", s)
	}
}

func TestVerifyDKIMBounds(t *testing.T) {
	r, e := keys(t)
	s := signer(t)
	msg := testMsg
	for range 4 { // 8 signatures
		msg = signed(t, s, msg)
	}
	c := &Checker{Resolver: publish(newMemDNS(), r, e), MaxSignatures: 3}
	got := c.VerifyDKIM(context.Background(), strings.NewReader(msg))
	var rs []string
	for _, g := range got {
		rs = append(rs, string(g.Result))
	}
	// The outer signatures sign a message that later signatures changed
	// only by adding DKIM-Signature fields, which they do not cover.
	// 3 verified, 3 more reported, the last 2 not.
	if want := "pass pass pass neutral neutral neutral"; strings.Join(rs, " ") != want {
		t.Errorf("8 signatures, 3 verified: %s, want %s", strings.Join(rs, " "), want)
	}

	huge := "From: a@example.com\r\nDKIM-Signature: v=1; d=example.com; s=x; b=abc\r\nX: " + strings.Repeat("y", maxHeader) + "\r\n\r\nbody\r\n"
	got = c.VerifyDKIM(context.Background(), strings.NewReader(huge))
	if len(got) != 1 || got[0].Result != PermError || !strings.Contains(got[0].Reason, "header longer") {
		t.Errorf("header over the bound: %v, want permerror", got)
	}
}

func TestVerifyDKIMBodyLength(t *testing.T) {
	// go-msgauth does not sign with l=, so the signature is made by hand
	// with the tag in; the verifier must not pass it.
	r, e := keys(t)
	c := &Checker{Resolver: publish(newMemDNS(), r, e)}
	msg := signed(t, signer(t), testMsg)
	withL := strings.Replace(msg, "DKIM-Signature: a=rsa-sha256;", "DKIM-Signature: a=rsa-sha256; l=5;", 1)
	got := c.VerifyDKIM(context.Background(), strings.NewReader(withL))
	if got[0].Result != Policy {
		t.Errorf("signature with l=: %v, want policy", got[0])
	}
}

func TestSignNoKey(t *testing.T) {
	s := signer(t)
	h, err := s.Sign(strings.NewReader("From: a@example.org\r\n\r\nx\r\n"))
	if h != nil || err != nil {
		t.Errorf("Sign for a domain without keys = %q, %v; want nothing", h, err)
	}
	for _, msg := range []string{"To: a@example.com\r\n\r\n", "From: a@example.com, b@example.org\r\n\r\n", "From: a@example.com\r\nFrom: a@example.com\r\n\r\n"} {
		if _, err := s.Sign(strings.NewReader(msg)); err != ErrNoFromDomain {
			t.Errorf("Sign(%q): %v, want ErrNoFromDomain", msg, err)
		}
	}
	// A subdomain is signed with its parent's keys, up to the
	// organizational domain.
	h, err = s.Sign(strings.NewReader("From: a@lists.example.com\r\n\r\nx\r\n"))
	if err != nil || !bytes.Contains(h, []byte("d=example.com;")) {
		t.Errorf("Sign for a subdomain = %q, %v; want d=example.com", h, err)
	}
}

// A message larger than what VerifyDKIM keeps in memory streams past it
// and verifies the same; changed beyond that point, it fails. Pooled
// buffers carry nothing from one message to the next.
func TestVerifyDKIMLarge(t *testing.T) {
	r, e := keys(t)
	c := &Checker{Resolver: publish(newMemDNS(), r, e)}
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n"
	body := strings.Repeat(line, 3*inMemory/len(line)/2)
	msg := signed(t, signer(t), "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: large\r\n\r\n"+body)
	ctx := context.Background()
	for range 2 {
		if s := results(c.VerifyDKIM(ctx, strings.NewReader(msg))); s != "pass/example.com/r2026 pass/example.com/e2026" {
			t.Errorf("large message: %s, want pass", s)
		}
	}
	changed := msg[:len(msg)-len(line)] + strings.ToUpper(line)
	if s := results(c.VerifyDKIM(ctx, strings.NewReader(changed))); s != "fail/example.com/r2026 fail/example.com/e2026" {
		t.Errorf("large message changed near its end: %s, want fail", s)
	}
	small := signed(t, signer(t), testMsg)
	if s := results(c.VerifyDKIM(ctx, strings.NewReader(small))); s != "pass/example.com/r2026 pass/example.com/e2026" {
		t.Errorf("small message after a large one: %s, want pass", s)
	}
}
