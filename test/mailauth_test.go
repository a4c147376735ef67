package test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// Mail authentication through the real smtpfs: SPF, DKIM and DMARC of
// what arrives, answered by a fake DNS server on loopback
// ($SMTPFS_RESOLVER), and DKIM signatures on what leaves, checked by
// another implementation, Debian's dkimpy, against the records the tree's
// dkim/ file prints.

const python = "/usr/bin/python3"

// dkimpyScript is the script of smtp/mailauth's interop tests: it signs
// and verifies with dkimpy.
var dkimpyScript = filepath.Join("..", "smtp", "mailauth", "testdata", "dkimpy.py")

// needDkimpy skips the test when dkimpy is not there.
func needDkimpy(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import dkim, nacl").Run(); err != nil {
		t.Skipf("skipped: %s cannot import dkim and nacl (%v); install python3-dkim and python3-nacl", python, err)
	}
}

// dkimpy runs the script with msg on its standard input.
func dkimpy(t *testing.T, msg string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{dkimpyScript}, args...)...)
	cmd.Stdin = strings.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy %s: %v\n%s", args[0], err, stderr.String())
	}
	return string(out)
}

// senderKey makes an Ed25519 key for an outside domain: the seed file
// dkimpy signs with, and the TXT record that publishes it.
func senderKey(t *testing.T) (seedFile, record string) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seedFile = filepath.Join(t.TempDir(), "seed")
	if err := os.WriteFile(seedFile, []byte(base64.StdEncoding.EncodeToString(priv.Seed())), 0600); err != nil {
		t.Fatal(err)
	}
	return seedFile, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
}

// fields returns the unfolded fields named name of a message's header.
func fields(msg, name string) []string {
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	head, _, _ := strings.Cut(msg, "\n\n")
	var out []string
	lines := strings.Split(head, "\n")
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(strings.ToLower(lines[i]), strings.ToLower(name)+":") {
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

// TestMailAuthInbound: sender.example publishes SPF for 127.0.0.5, an
// Ed25519 DKIM key, and DMARC p=reject. Its message, signed by dkimpy,
// with a forged Authentication-Results field of ours on top, arrives in
// the Maildir with exactly one such field, ours, saying spf, dkim and
// dmarc pass. Under enforce, a client at another address is refused at
// RCPT (550 5.7.23), and a message whose From: is sender.example without
// its signature after DATA (550 5.7.1); under tag (through ctl) both are
// delivered, their failures recorded. The log has a line per verdict and
// stats counts them.
func TestMailAuthInbound(t *testing.T) {
	needDkimpy(t)
	seed, rec := senderKey(t)
	dns := testlib.NewDNS(t, `sender.example. 300 IN TXT "v=spf1 ip4:127.0.0.5 -all"
_dmarc.sender.example. 300 IN TXT "v=DMARC1; p=reject"
sel._domainkey.sender.example. 300 IN TXT "`+rec+`"`)
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	d := startMail(t, "defaultdomain example.org\nhostname mx.example.org\nspf enforce\ndmarc enforce\n", "-9", "tcp!127.0.0.1!0")

	body := "From: Alice <alice@sender.example>\r\nTo: bob@example.org\r\nSubject: signed\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\n\r\nHello, Bob.\r\n"
	sig := dkimpy(t, body, "sign", "sel", "sender.example", seed, "ed25519-sha256", "relaxed/relaxed")
	forged := "Authentication-Results: mx.example.org; dkim=pass header.d=bank.example\r\n"
	r := ehloFrom(t, d, "127.0.0.5", "mail.sender.example")
	if got := r.transaction("alice@sender.example", []string{"bob@example.org"}, forged+sig+body); got != "250 2.5.0 sent" {
		t.Fatalf("signed message: %q", got)
	}
	msgs := boxMessages(t, d.Root, "bob")
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages", len(msgs))
	}
	ar := fields(msgs[0], "Authentication-Results")
	if len(ar) != 1 || !strings.HasPrefix(ar[0], "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=sender.example; dkim=pass header.d=sender.example header.s=sel header.a=ed25519-sha256 header.b=") ||
		!strings.HasSuffix(ar[0], "; dmarc=pass (p=reject dis=none) header.from=sender.example") || strings.Contains(msgs[0], "bank.example") {
		t.Errorf("Authentication-Results %q in\n%s", ar, msgs[0])
	}

	// Under enforce: SPF fail at RCPT, DMARC reject after DATA.
	r = ehloFrom(t, d, "127.0.0.6", "mail.elsewhere.example")
	r.Send("MAIL FROM:<alice@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<bob@example.org>")
	if got := r.Reply(); len(got) != 1 || got[0] != "550 5.7.23 SPF fail: sender.example does not allow 127.0.0.6 to send its mail (matched -all of sender.example)" {
		t.Errorf("RCPT of an SPF fail: %q", got)
	}
	r.Send("RSET")
	r.Expect("250 ")
	unsigned := "From: alice@sender.example\r\nTo: bob@example.org\r\nSubject: pay now\r\n\r\nSend money.\r\n"
	if got := r.transaction("eve@elsewhere.example", []string{"bob@example.org"}, unsigned); !strings.HasPrefix(got, "550 5.7.1 message refused: the DMARC policy of sender.example is reject") {
		t.Errorf("DMARC reject: %q", got)
	}

	// Under tag both are delivered, their results recorded.
	fsys := fstest.Dial(t, d.NineP[0])
	ninepCtl(t, fsys, "spf tag\ndmarc tag\n")
	r.Send("MAIL FROM:<alice@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<bob@example.org>")
	r.Expect("250 ")
	r.Send("RSET")
	r.Expect("250 ")
	if got := r.transaction("eve@elsewhere.example", []string{"bob@example.org"}, unsigned); got != "250 2.5.0 sent" {
		t.Errorf("DMARC fail under tag: %q", got)
	}
	msgs = boxMessages(t, d.Root, "bob")
	if len(msgs) != 2 {
		t.Fatalf("bob has %d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		if strings.Contains(m, "Subject: pay now") {
			if ar := fields(m, "Authentication-Results"); len(ar) != 1 || !strings.Contains(ar[0], "dkim=none") || !strings.Contains(ar[0], "dmarc=fail (p=reject dis=reject)") {
				t.Errorf("tagged message: %q", ar)
			}
		}
	}
	for _, want := range []string{"spf=pass mailfrom='sender.example' ip=127.0.0.5", "dkim=pass d='sender.example' s='sel' a='ed25519-sha256'",
		"dmarc=pass from='sender.example'", "spf=fail mailfrom='sender.example' ip=127.0.0.6", "dmarc=fail from='sender.example' p=reject dis=reject",
		"removed Authentication-Results fields claiming to be ours (mx.example.org)"} {
		waitLog(t, d, want)
	}
	st := ninepStats(t, fsys)
	for name, want := range map[string]int64{"spf.pass": 1, "spf.fail": 2, "dkim.pass": 1, "dkim.none": 2, "dmarc.pass": 1, "dmarc.fail": 2, "dmarc.reject": 2} {
		if st[name] != want {
			t.Errorf("stats %s %d, want %d", name, st[name], want)
		}
	}
}

// ehloFrom dials the daemon from the loopback address from and says EHLO
// helo.
func ehloFrom(t *testing.T, d *Daemon, from, helo string) *Raw {
	t.Helper()
	r := dialRaw(t, d.SMTP[0], from)
	r.Expect("220 ")
	r.Send("EHLO " + helo)
	r.Expect("250 ")
	return r
}

var txtParts = regexp.MustCompile(`"([^"]*)"`)

// zoneOf turns the text of a dkim/<domain> file, zone-file lines, into
// the "name<TAB>text" lines dkimpy.py looks its keys up in: what is
// published.
func zoneOf(t *testing.T, records string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range strings.Split(records, "\n") {
		if l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		name, _, _ := strings.Cut(l, " ")
		b.WriteString(strings.TrimSuffix(name, ".") + "\t")
		for _, m := range txtParts.FindAllStringSubmatch(l, -1) {
			b.WriteString(m[1])
		}
		b.WriteString("\n")
	}
	file := filepath.Join(t.TempDir(), "zone")
	if err := os.WriteFile(file, []byte(b.String()), 0600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestMailAuthOutbound: keys made through ctl (dkim newkey, mode 0600)
// and chosen by a dkim line sign what leaves: a message written to the
// queue file, one sent by a trusted client, and the bounce of a refused
// recipient; the smarthost gets them signed, and dkimpy verifies each
// signature against the records cat dkim/example.org printed.
func TestMailAuthOutbound(t *testing.T) {
	needDkimpy(t)
	sink := testlib.NewSink(t, testlib.SinkOptions{})
	sink.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" && strings.Contains(arg, "nobody@") {
			return smtp.Replyf(550, "5.1.1", "no such user")
		}
		return nil
	})
	d := startNinep(t, "defaultdomain example.org\nhostname mx.example.org\nournets 127.0.0.7\nsmarthost tcp!127.0.0.1!"+sink.Port()+"\n")
	fsys := fstest.Dial(t, d.NineP[0])
	ninepCtl(t, fsys, "dkim newkey example.org ed1 ed25519\ndkim newkey example.org rsa1\n")
	for _, sel := range []string{"ed1", "rsa1"} {
		fi, err := os.Stat(filepath.Join(d.Root, "lib", "dkim", "example.org", sel+".key"))
		if err != nil || fi.Mode().Perm() != 0600 {
			t.Fatalf("key %s: %v %v", sel, fi, err)
		}
	}
	records := fstest.Read(t, fsys, "dkim/example.org")
	if !strings.Contains(records, "; selector ed1: ed25519, not signing yet\ned1._domainkey.example.org. IN TXT \"v=DKIM1; k=ed25519; p=") ||
		!strings.Contains(records, "; selector rsa1: rsa 2048 bits, not signing yet\nrsa1._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p=") {
		t.Errorf("cat dkim/example.org:\n%s", records)
	}
	ninepCtl(t, fsys, "dkim example.org ed1 rsa1\n")
	if got := fstest.Read(t, fsys, "ctl"); !strings.Contains(got, "\ndkim example.org ed1 rsa1\n") {
		t.Errorf("ctl lacks the dkim line:\n%s", got)
	}
	zone := zoneOf(t, fstest.Read(t, fsys, "dkim/example.org"))

	// The queue file, and a trusted client.
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, "From: glenda@example.org\nTo: rob@example.net\nSubject: through 9P\n\nHello, Rob.\n"); err != nil {
		t.Fatal(err)
	}
	r := ehloFrom(t, d, "127.0.0.7", "ws.example.org")
	if got := r.transaction("glenda@example.org", []string{"ken@example.net", "nobody@example.net"},
		"From: Glenda <glenda@example.org>\r\nTo: ken@example.net\r\nSubject: by SMTP\r\n\r\nHello, Ken.\r\n"); got != "250 2.5.0 sent" {
		t.Fatalf("trusted client: %q", got)
	}
	msgs := sink.Wait(t, 2, 20*time.Second)
	for _, m := range msgs {
		if n := len(fields(string(m.Data), "DKIM-Signature")); n != 2 {
			t.Errorf("message to %s has %d signatures:\n%s", m.Rcpts, n, m.Data)
		}
		if got := dkimpy(t, string(m.Data), "verify", zone); got != "pass\npass\n" {
			t.Errorf("dkimpy on the message to %s: %q\n%s", m.Rcpts, got, m.Data)
		}
	}
	// The bounce of nobody@ comes back to glenda, a local user, signed.
	testlib.WaitFor(t, 20*time.Second, "the bounce in glenda's Maildir", func() bool { return len(boxMessages(t, d.Root, "glenda")) == 1 })
	bounce := boxMessages(t, d.Root, "glenda")[0]
	_, bounce, _ = strings.Cut(bounce, "\nDelivered-To: glenda@example.org\n") // the Maildir's own lines
	bounce = strings.ReplaceAll(bounce, "\n", "\r\n")
	if !strings.Contains(bounce, "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>") {
		t.Fatalf("glenda's message is no bounce:\n%s", bounce)
	}
	if got := dkimpy(t, bounce, "verify", zone); got != "pass\npass\n" {
		t.Errorf("dkimpy on the bounce: %q\n%s", got, bounce)
	}
	waitLog(t, d, "dkim: signed d=example.org s=ed1 a=ed25519-sha256, d=example.org s=rsa1 a=rsa-sha256")
}

// TestMailAuthGreylist: with SPF on, a sender whose domain passes SPF is
// greylisted by (domain, recipient): farm.example's retry from another of
// its servers passes, and that server is whitelisted. A sender without
// SPF, and one whose record lets anyone send (+all), are greylisted by
// address as before.
func TestMailAuthGreylist(t *testing.T) {
	dns := testlib.NewDNS(t, `farm.example. 300 IN TXT "v=spf1 ip4:127.0.0.5 ip4:127.0.0.6 -all"
open.example. 300 IN TXT "v=spf1 +all"`)
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	d := startMail(t, "defaultdomain example.org\ngreylist on\n")
	if got := greyTry(t, d, "127.0.0.5", "alice@farm.example", "bob@example.org"); got != greyRefusal {
		t.Fatalf("first attempt: %q", got)
	}
	tr := filepath.Join(d.Root, "grey", "tmp", "127.0.0.1", "@farm.example", "bob@example.org")
	backdate(t, tr, 6*time.Minute)
	if got := greyTry(t, d, "127.0.0.6", "alice@farm.example", "bob@example.org"); got != greySent {
		t.Errorf("retry from the farm's other server: %q", got)
	}
	if got := whitelistText(t, d); got != "127.0.0.6\n" {
		t.Errorf("whitelist %q", got)
	}
	// Keyed by address: a sender without SPF, and one of +all.
	for _, from := range []string{"carol@nospf.example", "dave@open.example"} {
		if got := greyTry(t, d, "127.0.0.7", from, "bob@example.org"); got != greyRefusal {
			t.Errorf("%s, first attempt: %q", from, got)
		}
	}
	if _, err := os.Stat(triplet(d, "127.0.0.7", "bob@example.org")); err != nil {
		t.Errorf("the address's triplet: %v", err)
	}
	logHas(t, logText(t, d), "farm.example passed SPF for 127.0.0.5: greylisting its domain's triplets",
		"127.0.0.6/bob@example.org was grey; adding IP to white", "no call registered for 127.0.0.7/bob@example.org; registering")
	if strings.Contains(logText(t, d), "open.example passed SPF") {
		t.Errorf("a pass through +all keyed the greylist by domain:\n%s", logText(t, d))
	}
}

// TestMailAuthGreylistRedis: SPF-aware greylisting on the Redis store,
// across MX hosts: farm.example's first try from one of its servers at A
// is refused; its retry from another server at B passes, and B's
// whitelist has that server. The domain's triplet is in the domain's set
// and, for greyperclient, in the set of the client that registered it.
func TestMailAuthGreylistRedis(t *testing.T) {
	dns := testlib.NewDNS(t, `farm.example. 300 IN TXT "v=spf1 ip4:127.0.0.5 ip4:127.0.0.6 -all"`)
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	r := testlib.NewRedis(t)
	rc := redisClient(t, r)
	ctx := context.Background()
	const conf = "defaultdomain example.org\ngreylist on\n"
	a := startRedisHost(t, r, conf)
	b := startRedisHost(t, r, conf, "-l", "tcp!127.0.0.2!0")
	if got := greyTry(t, a, "127.0.0.5", "alice@farm.example", "bob@example.org"); got != greyRefusal {
		t.Fatalf("first attempt at A: %q", got)
	}
	if _, err := rc.ZScore(ctx, "smtpfs:t:127.0.0.5", "@farm.example/bob@example.org").Result(); err != nil {
		t.Errorf("the triplet in its client's set: %v", err)
	}
	// Six minutes pass for the domain's triplet.
	if err := rc.ZIncrBy(ctx, "smtpfs:d:farm.example", -float64((6 * time.Minute).Milliseconds()), "bob@example.org").Err(); err != nil {
		t.Fatal(err)
	}
	if got := greyTry(t, b, "127.0.0.6", "alice@farm.example", "bob@example.org"); got != greySent {
		t.Errorf("retry from the farm's other server at B: %q", got)
	}
	if got := ninepRead(t, b, "whitelist"); !strings.Contains(got, "127.0.0.6") {
		t.Errorf("B's whitelist %q lacks the server that passed", got)
	}
	logHas(t, logText(t, a), "farm.example passed SPF for 127.0.0.5: greylisting its domain's triplets")
	logHas(t, logText(t, b), "127.0.0.6/bob@example.org was grey; adding IP to white")
}
