package smtpd

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/smtp/mailauth"
	"smtpfs/smtpd/conf"
)

// txtDNS is a mailauth.Resolver answering TXT questions from a map; other
// questions find nothing, and a name mapped to nil times out.
type txtDNS struct {
	mu  sync.Mutex
	txt map[string][]string
}

func (d *txtDNS) set(name string, txt ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.txt == nil {
		d.txt = map[string][]string{}
	}
	d.txt[strings.ToLower(strings.TrimSuffix(name, "."))] = txt
}

func (d *txtDNS) LookupTXT(ctx context.Context, name string) ([]string, mailauth.Answer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	txt, ok := d.txt[strings.ToLower(strings.TrimSuffix(name, "."))]
	switch {
	case ok && txt == nil:
		return nil, mailauth.Answer{}, &mailauth.DNSError{Name: name, Type: "TXT", Err: "i/o timeout"}
	case !ok:
		return nil, mailauth.Answer{TTL: time.Minute, NotFound: true}, nil
	}
	return txt, mailauth.Answer{TTL: time.Minute}, nil
}

func (d *txtDNS) LookupIP(context.Context, string, string) ([]netip.Addr, mailauth.Answer, error) {
	return nil, mailauth.Answer{NotFound: true}, nil
}

func (d *txtDNS) LookupMX(context.Context, string) ([]mailauth.MX, mailauth.Answer, error) {
	return nil, mailauth.Answer{NotFound: true}, nil
}

func (d *txtDNS) LookupPTR(context.Context, netip.Addr) ([]string, mailauth.Answer, error) {
	return nil, mailauth.Answer{NotFound: true}, nil
}

// authWorld is the outside world of the mail authentication tests:
// sender.net lets 192.0.2.7 send its mail (SPF, with an explanation for
// the others), signs with an Ed25519 key and asks DMARC to reject what
// fails; quar.net asks to quarantine; tmp.net's SPF record times out.
type authWorld struct {
	dns  *txtDNS
	keys *mailauth.KeyStore
}

func newAuthWorld(t *testing.T) *authWorld {
	t.Helper()
	w := &authWorld{dns: &txtDNS{}}
	var err error
	if w.keys, err = mailauth.OpenKeyStore(filepath.Join(t.TempDir(), "dkim")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"sender.net", "quar.net"} {
		if _, err := w.keys.NewKey(d, "sel", "ed25519"); err != nil {
			t.Fatal(err)
		}
		w.dns.set("sel._domainkey."+d, txtOf(t, w.keys.DNSRecords(d)))
		w.dns.set(d, "v=spf1 ip4:192.0.2.7 -all exp=why."+d)
		w.dns.set("why."+d, "%{i} may not send the mail of %{d}")
	}
	w.dns.set("_dmarc.sender.net", "v=DMARC1; p=reject")
	w.dns.set("_dmarc.quar.net", "v=DMARC1; p=quarantine")
	w.dns.set("tmp.net", []string(nil)...)
	if err := w.keys.Select(map[string][]string{"sender.net": {"sel"}, "quar.net": {"sel"}}); err != nil {
		t.Fatal(err)
	}
	return w
}

var txtString = regexp.MustCompile(`"([^"]*)"`)

// txtOf returns the text of the one TXT record of a dkim/<domain> file.
func txtOf(t *testing.T, zone string) string {
	t.Helper()
	var s strings.Builder
	for _, m := range txtString.FindAllStringSubmatch(zone, -1) {
		s.WriteString(m[1])
	}
	if s.Len() == 0 {
		t.Fatalf("no TXT record in %q", zone)
	}
	return s.String()
}

// sign returns msg with the DKIM signature of its From domain on top.
func (w *authWorld) sign(t *testing.T, msg string) string {
	t.Helper()
	sig, err := (&mailauth.Signer{Keys: w.keys}).Sign(strings.NewReader(msg))
	if err != nil || sig == nil {
		t.Fatalf("signing: %v %q", err, sig)
	}
	return string(sig) + msg
}

// server returns a test server whose MailAuth asks w's DNS.
func (w *authWorld) server(t *testing.T, conf string) *testServer {
	return newTestServerWith(t, conf, func(s *Server) {
		s.MailAuth = &mailauth.Checker{Resolver: w.dns, Hostname: "mx.example.org"}
	})
}

// authResults returns the Authentication-Results fields of a delivered
// message (LF line ends), unfolded.
func authResults(msg string) []string {
	head, _, _ := strings.Cut(msg, "\n\n")
	var out []string
	lines := strings.Split(head, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(strings.ToLower(lines[i]), "authentication-results:") {
			continue
		}
		f := lines[i]
		for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
			i++
			f += " " + strings.TrimSpace(lines[i])
		}
		out = append(out, f)
	}
	return out
}

// TestSPFEnforce: under spf enforce a sender whose domain's SPF record
// fails the client is refused at each RCPT with 550 5.7.23 and the
// domain's explanation, and a temperror gets 451 4.7.24; under tag both
// are accepted and the result recorded; trusted clients are not checked.
func TestSPFEnforce(t *testing.T) {
	w := newAuthWorld(t)
	ts := w.server(t, "spf enforce\nournets 10.0.0.0/8")
	c := ts.ehloed("198.51.100.1")
	c.send("MAIL FROM:<alice@sender.net>")
	c.expect("250 ")
	c.send("RCPT TO:<bob@example.org>")
	got := c.reply()
	want := []string{"550-5.7.23 SPF fail: sender.net does not allow 198.51.100.1 to send its mail (matched -all of sender.net)",
		"550 5.7.23 198.51.100.1 may not send the mail of sender.net"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("RCPT after an SPF fail:\n got %q\nwant %q", got, want)
	}
	c.send("RSET")
	c.expect("250 ")
	c.send("MAIL FROM:<alice@tmp.net>")
	c.expect("250 ")
	c.check("RCPT TO:<bob@example.org>", "451 4.7.24 SPF temporary error for tmp.net (")

	// The sender's own address passes.
	c = ts.ehloed("192.0.2.7")
	if got := c.mail("alice@sender.net", []string{"bob@example.org"}, "From: alice@sender.net\r\n\r\nhi\r\n"); got[0] != "250 2.5.0 sent" {
		t.Errorf("SPF pass: %q", got)
	}
	// A trusted client is not checked.
	c = ts.ehloed("10.1.2.3")
	if got := c.mail("alice@sender.net", []string{"bob@example.org"}, "From: alice@sender.net\r\n\r\nhi\r\n"); got[0] != "250 2.5.0 sent" {
		t.Errorf("trusted client: %q", got)
	}
	msgs := boxFiles(t, ts.Root, "bob")
	if len(msgs) != 2 {
		t.Fatalf("bob has %d messages, want 2", len(msgs))
	}
	var outside, inside string
	for _, m := range msgs {
		if strings.Contains(m, "[10.1.2.3]") {
			inside = m
		} else {
			outside = m
		}
	}
	if ar := authResults(outside); len(ar) != 1 || !strings.Contains(ar[0], "spf=pass smtp.mailfrom=sender.net") {
		t.Errorf("Authentication-Results of a pass: %q", ar)
	}
	if ar := authResults(inside); len(ar) != 0 {
		t.Errorf("a trusted client's message has %q", ar)
	}

	// Under tag the fail is only recorded.
	ts.apply("spf tag")
	c = ts.ehloed("198.51.100.1")
	removeBox(t, ts.Root, "bob")
	if got := c.mail("alice@sender.net", []string{"bob@example.org"}, "From: alice@sender.net\r\n\r\nhi\r\n"); got[0] != "250 2.5.0 sent" {
		t.Errorf("SPF fail under tag: %q", got)
	}
	msgs = boxFiles(t, ts.Root, "bob")
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(msgs))
	}
	if ar := authResults(msgs[0]); len(ar) != 1 || !strings.Contains(ar[0], "spf=fail") {
		t.Errorf("Authentication-Results of a fail under tag: %q", ar)
	}
	for _, want := range []string{"spf=fail mailfrom='sender.net' ip=198.51.100.1", "spf=pass mailfrom='sender.net' ip=192.0.2.7",
		"spf=temperror mailfrom='tmp.net'", `"RCPT TO:<bob@example.org>": 550 5.7.23 SPF fail`} {
		if !strings.Contains(ts.logbuf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, ts.logbuf)
		}
	}
	n := map[string]int64{}
	for _, c := range ts.AuthStats.Snapshot() {
		n[c.Name] = c.Value
	}
	if n["spf.fail"] != 2 || n["spf.pass"] != 1 || n["spf.temperror"] != 1 {
		t.Errorf("counters %v", n)
	}
}

// TestDMARCEnforce: after DATA, under dmarc enforce, a message whose From
// domain asks to reject what fails DMARC is refused with 550 5.7.1; one
// asking to quarantine is delivered with X-Smtpfs-Quarantine:; a signed
// message passes; under tag all are delivered and the verdicts recorded,
// one Authentication-Results field each.
func TestDMARCEnforce(t *testing.T) {
	w := newAuthWorld(t)
	ts := w.server(t, "dmarc enforce")
	forged := "From: boss@sender.net\r\nTo: bob@example.org\r\nSubject: pay\r\n\r\nnow\r\n"
	c := ts.ehloed("198.51.100.1")
	got := c.mail("eve@elsewhere.example", []string{"bob@example.org"}, forged)
	if want := "550 5.7.1 message refused: the DMARC policy of sender.net is reject ("; !strings.HasPrefix(got[0], want) {
		t.Errorf("forged From: %q, want %q", got, want)
	}
	quar := "From: boss@quar.net\r\nTo: bob@example.org\r\n\r\nnow\r\n"
	if got := c.mail("eve@elsewhere.example", []string{"bob@example.org"}, quar); got[0] != "250 2.5.0 sent" {
		t.Errorf("quarantined: %q", got)
	}
	signed := w.sign(t, "From: alice@sender.net\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nsigned\r\n")
	if got := c.mail("alice@sender.net", []string{"bob@example.org"}, signed); got[0] != "250 2.5.0 sent" {
		t.Errorf("signed: %q", got)
	}
	msgs := boxFiles(t, ts.Root, "bob")
	if len(msgs) != 2 {
		t.Fatalf("bob has %d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		ar := authResults(m)
		if len(ar) != 1 {
			t.Errorf("%d Authentication-Results fields:\n%s", len(ar), m)
			continue
		}
		switch {
		case strings.Contains(m, "boss@quar.net"):
			if !strings.Contains(m, "\nX-Smtpfs-Quarantine: dmarc (quar.net p=quarantine)\n") ||
				!strings.Contains(ar[0], "dkim=none") || !strings.Contains(ar[0], "dmarc=fail (p=quarantine dis=quarantine)") {
				t.Errorf("quarantined message:\n%s", m)
			}
		default:
			if strings.Contains(m, "X-Smtpfs-Quarantine") || !strings.Contains(ar[0], "dkim=pass") ||
				!strings.Contains(ar[0], "header.d=sender.net") || !strings.Contains(ar[0], "dmarc=pass") || !strings.Contains(ar[0], "spf=fail") {
				t.Errorf("signed message:\n%s", m)
			}
		}
	}
	// Under tag the forgery is delivered, its verdict recorded.
	ts.apply("dmarc tag")
	removeBox(t, ts.Root, "bob")
	if got := c.mail("eve@elsewhere.example", []string{"bob@example.org"}, forged); got[0] != "250 2.5.0 sent" {
		t.Errorf("forged From under tag: %q", got)
	}
	msgs = boxFiles(t, ts.Root, "bob")
	if len(msgs) != 1 || strings.Contains(msgs[0], "X-Smtpfs-Quarantine") {
		t.Fatalf("under tag: %q", msgs)
	}
	if ar := authResults(msgs[0]); len(ar) != 1 || !strings.Contains(ar[0], "dmarc=fail (p=reject dis=reject)") || !strings.Contains(ar[0], "spf=none reason=\"no SPF record at 'elsewhere.example'\" smtp.mailfrom=elsewhere.example") {
		t.Errorf("under tag: %q", ar)
	}
	for _, want := range []string{"dkim=pass d='sender.net' s='sel' a='ed25519-sha256'", "dmarc=fail from='quar.net' p=quarantine dis=quarantine",
		"quarantined: the DMARC policy of quar.net is quarantine", "dmarc=pass from='sender.net'", "dkim=none"} {
		if !strings.Contains(ts.logbuf.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, ts.logbuf)
		}
	}
	n := map[string]int64{}
	for _, c := range ts.AuthStats.Snapshot() {
		n[c.Name] = c.Value
	}
	if n["dmarc.reject"] != 2 || n["dmarc.quarantine"] != 1 || n["dmarc.pass"] != 1 || n["dkim.pass"] != 1 {
		t.Errorf("counters %v", n)
	}
}

// TestAuthResultsForged: Authentication-Results fields that claim our
// host name are removed from every message, however written, before ours
// is added; those of others stay; with spf and dmarc off ours says none.
func TestAuthResultsForged(t *testing.T) {
	w := newAuthWorld(t)
	ts := w.server(t, "spf off\ndmarc off\nournets 10.0.0.0/8")
	msg := "Authentication-Results: MX.example.org.;\r\n\tdkim=pass header.d=bank.example\r\n" +
		"Authentication-Results: other.example; spf=pass\r\n" +
		"From: a@sender.net\r\n" +
		"AUTHENTICATION-RESULTS: (forged)\r\n \"mx.example.org\"; dmarc=pass\r\n" +
		"Subject: x\r\n\r\nbody\r\nAuthentication-Results: mx.example.org; in the body stays\r\n"
	for _, ip := range []string{"198.51.100.1", "10.0.0.1"} {
		c := ts.ehloed(ip)
		if got := c.mail("a@sender.net", []string{"bob@example.org"}, msg); got[0] != "250 2.5.0 sent" {
			t.Fatalf("from %s: %q", ip, got)
		}
		msgs := boxFiles(t, ts.Root, "bob")
		removeBox(t, ts.Root, "bob")
		if len(msgs) != 1 {
			t.Fatalf("%d messages", len(msgs))
		}
		m := msgs[0]
		ar := authResults(m)
		wantAR := []string{"Authentication-Results: mx.example.org; none", "Authentication-Results: other.example; spf=pass"}
		if ip == "10.0.0.1" {
			wantAR = wantAR[1:] // trusted: ours is not added
		}
		if strings.Join(ar, "|") != strings.Join(wantAR, "|") {
			t.Errorf("from %s: fields %q, want %q\n%s", ip, ar, wantAR, m)
		}
		if !strings.HasSuffix(m, "\nFrom: a@sender.net\nSubject: x\n\nbody\nAuthentication-Results: mx.example.org; in the body stays\n") {
			t.Errorf("from %s: message\n%s", ip, m)
		}
	}
	if !strings.Contains(ts.logbuf.String(), "removed Authentication-Results fields claiming to be ours (mx.example.org)") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}

// TestHeaderOverLimit: the header is read whole to find forged fields; a
// header longer than 1 MiB is refused, one of 200 KiB is delivered with
// its forged field removed.
func TestHeaderOverLimit(t *testing.T) {
	ts := newTestServerWith(t, "maxsize 4m", func(s *Server) { s.MailAuth = &mailauth.Checker{Resolver: &txtDNS{}} })
	field := "X-Filler: " + strings.Repeat("x", 900) + "\r\n"
	long := strings.Repeat(field, 200) + "Authentication-Results: mx.example.org; dkim=pass\r\n\r\nbody\r\n"
	c := ts.ehloed("198.51.100.1")
	if got := c.mail("a@sender.net", []string{"bob@example.org"}, long); got[0] != "250 2.5.0 sent" {
		t.Fatalf("200 KiB header: %q", got)
	}
	msgs := boxFiles(t, ts.Root, "bob")
	if len(msgs) != 1 || strings.Contains(msgs[0], "dkim=pass") || len(authResults(msgs[0])) != 1 {
		t.Errorf("200 KiB header: forged field kept, or ours missing")
	}
	tooLong := strings.Repeat(field, 1200) + "\r\nbody\r\n"
	if got := c.mail("a@sender.net", []string{"bob@example.org"}, tooLong); got[0] != "554 5.6.0 message refused: header longer than 1 MiB" {
		t.Errorf("1 MiB header: %q", got)
	}
}

// fakeSigner signs every message with a made-up field, and records what
// it read.
type fakeSigner struct {
	mu   sync.Mutex
	read []string
}

func (f *fakeSigner) Sign(msg io.Reader) ([]byte, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read = append(f.read, string(b))
	return []byte(fmt.Sprintf("DKIM-Signature: v=1; n=%d\r\n", len(f.read))), nil
}

// TestSignQueued: what a trusted client queues is signed, the signature
// on top of the message as queued; mail from outside is not, nor is what
// is delivered here.
func TestSignQueued(t *testing.T) {
	q := &fakeQueue{}
	sg := &fakeSigner{}
	ts := newTestServerWith(t, "ournets 10.0.0.0/8\nnorelay off", func(s *Server) { s.Queue, s.Signer = q, sg })
	msg := "From: alice@example.org\r\nTo: bob@elsewhere.example\r\n\r\nhi\r\n"
	c := ts.ehloed("10.0.0.1")
	if got := c.mail("alice@example.org", []string{"bob@elsewhere.example", "carol@example.org"}, msg); got[0] != "250 2.5.0 sent" {
		t.Fatal(got)
	}
	c = ts.ehloed("198.51.100.1")
	if got := c.mail("alice@example.org", []string{"bob@elsewhere.example"}, msg); got[0] != "250 2.5.0 sent" {
		t.Fatal(got)
	}
	all := q.all()
	if len(all) != 2 || len(sg.read) != 1 {
		t.Fatalf("%d queued, %d signed", len(all), len(sg.read))
	}
	if !strings.HasPrefix(all[0].data, "DKIM-Signature: v=1; n=1\r\n") || all[0].data[len("DKIM-Signature: v=1; n=1\r\n"):] != sg.read[0] ||
		!strings.HasPrefix(sg.read[0], "Received: from client.example.net ([10.0.0.1])") {
		t.Errorf("trusted client's message as queued:\n%s\nas signed:\n%s", all[0].data, sg.read[0])
	}
	if strings.Contains(all[1].data, "DKIM-Signature") {
		t.Errorf("untrusted client's message signed:\n%s", all[1].data)
	}
	if m := boxFiles(t, ts.Root, "carol"); len(m) != 1 || strings.Contains(m[0], "DKIM-Signature") {
		t.Errorf("local copy: %q", m)
	}
}

type errSigner struct{}

func (errSigner) Sign(io.Reader) ([]byte, error) { return nil, mailauth.ErrNoFromDomain }

// TestSignFails: a message that cannot be signed is queued as it is, and
// the log says why.
func TestSignFails(t *testing.T) {
	q := &fakeQueue{}
	ts := newTestServerWith(t, "ournets 10.0.0.0/8", func(s *Server) { s.Queue, s.Signer = q, errSigner{} })
	c := ts.ehloed("10.0.0.1")
	if got := c.mail("alice@example.org", []string{"bob@elsewhere.example"}, "Subject: x\r\n\r\nhi\r\n"); got[0] != "250 2.5.0 sent" {
		t.Fatal(got)
	}
	if all := q.all(); len(all) != 1 || strings.Contains(all[0].data, "DKIM-Signature") {
		t.Errorf("queued %+v", all)
	}
	if want := "example.org!alice: not DKIM-signed: dkim: no single From domain to sign for"; !strings.Contains(ts.logbuf.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, ts.logbuf)
	}
}

// bdat sends msg in two BDAT chunks, the second LAST, and returns the
// reply to the last.
func (c *client) bdat(msg string) []string {
	c.t.Helper()
	half := len(msg) / 2
	c.write(fmt.Sprintf("BDAT %d\r\n%sBDAT %d LAST\r\n%s", half, msg[:half], len(msg)-half, msg[half:]))
	c.expect(fmt.Sprintf("250 2.0.0 %d octets received", half))
	return c.reply()
}

// TestBdatMailAuth: a message sent with BDAT has DATA's checks after its
// last chunk: under dmarc enforce, p=reject refused with 550 5.7.1 and
// p=quarantine marked; forged Authentication-Results fields removed and
// ours added, one; SPF refused at RCPT as ever.
func TestBdatMailAuth(t *testing.T) {
	w := newAuthWorld(t)
	ts := w.server(t, "dmarc enforce\nspf enforce")
	c := ts.ehloed("198.51.100.1")
	c.begin("eve@elsewhere.example", "bob@example.org")
	got := c.bdat("From: boss@sender.net\r\nTo: bob@example.org\r\nSubject: pay\r\n\r\nnow\r\n")
	if want := "550 5.7.1 message refused: the DMARC policy of sender.net is reject ("; !strings.HasPrefix(got[0], want) {
		t.Errorf("forged From in BDAT: %q, want %q", got, want)
	}
	c.begin("eve@elsewhere.example", "bob@example.org")
	quar := "Authentication-Results: mx.example.org; dmarc=pass\r\nFrom: boss@quar.net\r\nTo: bob@example.org\r\n\r\nnow\r\n"
	if got := c.bdat(quar); got[0] != "250 2.5.0 sent" {
		t.Errorf("quarantined in BDAT: %q", got)
	}
	m := boxFiles(t, ts.Root, "bob")
	if len(m) != 1 {
		t.Fatalf("bob has %d messages", len(m))
	}
	if ar := authResults(m[0]); len(ar) != 1 || !strings.Contains(ar[0], "dmarc=fail (p=quarantine dis=quarantine)") ||
		!strings.Contains(m[0], "\nX-Smtpfs-Quarantine: dmarc (quar.net p=quarantine)\n") {
		t.Errorf("quarantined BDAT message, fields %q:\n%s", ar, m[0])
	}
	c.send("MAIL FROM:<alice@sender.net>")
	c.expect("250 ")
	c.check("RCPT TO:<bob@example.org>", "550-5.7.23 SPF fail")
}

// TestSubmissionMailAuth: an authenticated submission client is never
// SPF or DMARC checked, even under enforce and from an address the
// sender's SPF fails, its message carries no Authentication-Results field
// of ours, and what it queues is DKIM-signed before it is queued, whether
// sent with DATA or BDAT.
func TestSubmissionMailAuth(t *testing.T) {
	w := newAuthWorld(t)
	q, sg := &fakeQueue{}, &fakeSigner{}
	ts, _ := newSubmitServerWith(t, conf.RoleSubmission, "spf enforce\ndmarc enforce\nsendas glenda @sender.net", func(s *Server) {
		s.MailAuth = &mailauth.Checker{Resolver: w.dns, Hostname: "mx.example.org"}
		s.Queue, s.Signer = q, sg
	})
	c := ts.ehloed("198.51.100.1") // not 192.0.2.7, which sender.net's SPF lets send
	c.starttls(t)
	c.send("EHLO client.example.net")
	c.reply()
	c.send("AUTH PLAIN " + b64("\x00glenda\x00s3cret"))
	c.expect("235 ")
	msg := "From: boss@sender.net\r\nTo: bob@elsewhere.example\r\nSubject: pay\r\n\r\nnow\r\n"
	if got := c.mail("boss@sender.net", []string{"bob@elsewhere.example"}, msg); got[0] != "250 2.5.0 sent" {
		t.Fatalf("DATA: %q", got)
	}
	c.begin("boss@sender.net", "bob@elsewhere.example")
	if got := c.bdat(msg); got[0] != "250 2.5.0 sent" {
		t.Fatalf("BDAT: %q", got)
	}
	all := q.all()
	if len(all) != 2 || len(sg.read) != 2 {
		t.Fatalf("%d queued, %d signed", len(all), len(sg.read))
	}
	for i, m := range all {
		sig := fmt.Sprintf("DKIM-Signature: v=1; n=%d\r\n", i+1)
		if !strings.HasPrefix(m.data, sig) || m.data[len(sig):] != sg.read[i] {
			t.Errorf("message %d as queued:\n%s\nas signed:\n%s", i, m.data, sg.read[i])
		}
		if strings.Contains(m.data, "Authentication-Results") || strings.Contains(m.data, "X-Smtpfs-Quarantine") {
			t.Errorf("message %d has our checks' fields:\n%s", i, m.data)
		}
	}
	if n := ts.AuthStats.Snapshot(); func() bool {
		for _, c := range n {
			if c.Value != 0 {
				return true
			}
		}
		return false
	}() {
		t.Errorf("counters %v: an authenticated client was checked", n)
	}
	if strings.Contains(ts.logbuf.String(), "spf=") || strings.Contains(ts.logbuf.String(), "dmarc=") {
		t.Errorf("log has a verdict:\n%s", ts.logbuf)
	}
}
