package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// The TLS policy of outbound mail end to end (issue 14): the queue of the
// real daemon and the smtp program, a fake DNS with and without the AD
// bit, an MTA-STS HTTPS server with a throwaway certificate trusted
// through $SMTPFS_TLS_CA, and sinks on one port, each an MX host at an
// address of its own:
//
//	good.mx.test        127.0.0.1  STARTTLS, a trusted certificate for its name
//	wrongname.mx.test   127.0.0.2  STARTTLS, a trusted certificate for another name
//	selfsigned.mx.test  127.0.0.3  STARTTLS, an untrusted self-signed certificate
//	plain.mx.test       127.0.0.4  no STARTTLS (as after an attacker stripped it)
//	stripped.mx.test    127.0.0.4  the same, with TLSA records
type policyWorld struct {
	sinks map[string]*testlib.Sink
	dns   *testlib.DNS // AD bit on
	noAD  *testlib.DNS // the same zone, AD bit off
	sts   *testlib.STSServer
	env   []string // SMTPFS_ settings of both programs
}

var tlsHosts = []string{"good", "wrongname", "selfsigned", "plain"}

// tlsDests are the destination domains and their MX host.
var tlsDests = map[string]string{
	"sts-good.test": "good", "sts-strip.test": "plain", "sts-nomatch.test": "plain",
	"dane-self.test": "selfsigned", "dane-stripped.test": "stripped",
	"verify-good.test": "good", "verify-wrong.test": "wrongname", "verify-self.test": "selfsigned",
	"encrypt-self.test": "selfsigned", "none-good.test": "good",
}

func newPolicyWorld(t *testing.T) *policyWorld {
	t.Helper()
	dir := t.TempDir()
	cert := func(sub string, names ...string) *testlib.Cert {
		d := filepath.Join(dir, sub)
		if err := os.Mkdir(d, 0700); err != nil {
			t.Fatal(err)
		}
		return testlib.NewCert(t, d, names...)
	}
	good, wrong, self := cert("good", "good.mx.test"), cert("wrong", "elsewhere.mx.test"), cert("self", "selfsigned.mx.test")
	sinks := testlib.NewSinksOnePort(t, testlib.SinkOptions{TLS: good.ServerConfig(), ReqTLS: true}, testlib.SinkOptions{TLS: wrong.ServerConfig()},
		testlib.SinkOptions{TLS: self.ServerConfig()}, testlib.SinkOptions{})
	w := &policyWorld{sinks: map[string]*testlib.Sink{}}
	for i, h := range tlsHosts {
		w.sinks[h] = sinks[i]
	}
	port := sinks[0].Port()
	w.sts = testlib.NewSTSServer(t, dir, "sts-good.test", "sts-strip.test", "sts-nomatch.test")
	var zone strings.Builder
	for i, h := range tlsHosts {
		fmt.Fprintf(&zone, "%s.mx.test. A 127.0.0.%d\n", h, i+1)
	}
	zone.WriteString("stripped.mx.test. A 127.0.0.4\n")
	for d, h := range tlsDests {
		fmt.Fprintf(&zone, "%s. MX 10 %s.mx.test.\n", d, h)
	}
	for d, p := range map[string]string{
		"sts-good.test":    testlib.Policy("enforce", "good.mx.test"),
		"sts-strip.test":   testlib.Policy("enforce", "*.mx.test"),
		"sts-nomatch.test": testlib.Policy("enforce", "good.mx.test"),
	} {
		w.sts.Set(d, p)
		fmt.Fprintf(&zone, "_mta-sts.%s. TXT \"v=STSv1; id=7\"\nmta-sts.%s. A 127.0.0.1\n", d, d)
	}
	for _, h := range []string{"selfsigned", "stripped"} {
		fmt.Fprintf(&zone, "_%s._tcp.%s.mx.test. TLSA %s\n", port, h, testlib.TLSA311(self))
	}
	w.dns = testlib.NewDNS(t, zone.String())
	w.dns.AD.Store(true)
	w.noAD = testlib.NewDNS(t, zone.String())
	var pem []byte
	for _, c := range []*testlib.Cert{good, wrong, w.sts.Cert} {
		b, err := os.ReadFile(c.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		pem = append(pem, b...)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem, 0600); err != nil {
		t.Fatal(err)
	}
	w.env = []string{"SMTPFS_RESOLVER=" + w.dns.Addr, "SMTPFS_SMTP_PORT=" + port,
		"SMTPFS_TLS_CA=" + ca, "SMTPFS_MTASTS_PORT=" + w.sts.Port()}
	return w
}

// TestTLSPolicyQueue: the queue delivers where each policy lets it, over
// TLS or not as it says, and holds the message where it must: the queue
// file says why, the sink never sees MAIL FROM (a stripped STARTTLS under
// MTA-STS enforce or DANE sends nothing in the clear), and when the
// message's lifetime ends the sender gets a bounce with the reason. The
// log names each attempt's policy, stats counts them, and the MTA-STS
// policy is cached under lib/mta-sts.
func TestTLSPolicyQueue(t *testing.T) {
	tw := newPolicyWorld(t)
	for _, e := range tw.env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	conf := "daneresolver " + tw.dns.Addr + "\ntlspolicy verify-good.test verify\ntlspolicy verify-wrong.test verify\n" +
		"tlspolicy encrypt-self.test encrypt\ntlspolicy none-good.test none\nbackoff 1h\n"
	w := &queueWorld{t: t, sink: tw.sinks["good"]}
	w.d = startMail(t, queueConf+conf)
	w.fsys = fstest.Dial(t, w.d.NineP[0])
	if err := w.ctl("tlspolicy verify-good.test strict"); err == nil || !strings.Contains(err.Error(), `invalid TLS policy level "strict"`) {
		t.Errorf("ctl tlspolicy with a bad level: %v", err)
	}
	if ctl := fstest.Read(t, w.fsys, "ctl"); !strings.Contains(ctl, "\ntlspolicy encrypt-self.test encrypt\ntlspolicy none-good.test none\ntlspolicy verify-good.test verify\n") ||
		!strings.Contains(ctl, "\ndaneresolver "+tw.dns.Addr+"\n") {
		t.Errorf("cat ctl:\n%s", ctl)
	}

	tests := []struct {
		dest string
		sink string // where it goes, "" held
		tls  bool
		why  string // in the queue file's last error, for one held
		dsn  string // in its bounce
	}{
		{"sts-good.test", "good", true, "", ""},
		{"dane-self.test", "selfsigned", true, "", ""},
		{"verify-good.test", "good", true, "", ""},
		{"encrypt-self.test", "selfsigned", true, "", ""},
		{"none-good.test", "good", false, "", ""},
		{"sts-strip.test", "", false, "plain.mx.test (127.0.0.4:" + tw.sinks["plain"].Port() + ") starttls: TLS required (mta-sts enforce: TLS required, certificate verified for plain.mx.test", "TLS required (mta-sts enforce"},
		{"dane-stripped.test", "", false, "TLS required (dane: TLS required, 1 usable TLSA records at _" + tw.sinks["plain"].Port() + "._tcp.stripped.mx.test), but the server does not offer STARTTLS", "TLS required (dane"},
		{"sts-nomatch.test", "", false, "sts-nomatch.test tls: mta-sts enforce: plain.mx.test does not match the policy of sts-nomatch.test", "does not match the policy"},
		{"verify-wrong.test", "", false, "tls: verify: certificate of wrongname.mx.test: x509: certificate is valid for elsewhere.mx.test, not wrongname.mx.test", "verify: certificate of wrongname.mx.test"},
	}
	held := 0
	for _, tt := range tests {
		w.send("alice@example.org", []string{"bob@" + tt.dest}, testMsg(tt.dest, "tok-"+tt.dest))
		if tt.sink == "" {
			held++
		}
	}
	q := w.waitQueue(held, fmt.Sprintf("%d messages held", held))
	testlib.WaitFor(t, 15*time.Second, "every held message tried", func() bool {
		q = w.list()
		for _, l := range q {
			if l.Tries != "1" {
				return false
			}
		}
		return len(q) == held
	})
	for _, tt := range tests {
		if tt.sink == "" {
			var l *queueLine
			for i := range q {
				if q[i].Rcpts == "bob@"+tt.dest {
					l = &q[i]
				}
			}
			if l == nil || !strings.Contains(l.LastErr, tt.why) {
				t.Errorf("%s: queue line %+v, want %q in its error", tt.dest, l, tt.why)
			}
			if tw.sawRcpt("bob@" + tt.dest) {
				t.Errorf("%s: a sink was sent the message's envelope", tt.dest)
			}
			continue
		}
		var got *testlib.SinkMsg
		for _, m := range tw.sinks[tt.sink].Messages() {
			if strings.Contains(string(m.Data), "token tok-"+tt.dest+"\r\n") {
				got = &m
			}
		}
		if got == nil || got.TLS != tt.tls {
			t.Errorf("%s: at %s: %+v, want TLS %v", tt.dest, tt.sink, got, tt.tls)
		}
	}
	for _, sess := range tw.sinks["plain"].Sessions() {
		for _, c := range sess {
			if strings.HasPrefix(c, "MAIL") {
				t.Errorf("the sink without STARTTLS was sent %q", c)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(w.d.Root, "lib", "mta-sts", "sts-good.test")); err != nil || !strings.Contains(string(b), "mode: enforce") {
		t.Errorf("cached policy: %q, %v", b, err)
	}
	smtpLog, _ := os.ReadFile(filepath.Join(w.d.Root, "log", "smtp"))
	for _, want := range []string{"tls policy sts-good.test: tlspolicy default; ", "tls policy selfsigned.mx.test (127.0.0.3:", "): dane: TLS required, 1 usable TLSA records"} {
		if !strings.Contains(string(smtpLog), want) {
			t.Errorf("log/smtp lacks %q:\n%s", want, smtpLog)
		}
	}
	stats := fstest.Read(t, w.fsys, "stats")
	for _, want := range []string{"\ntls.dane 2\n", "\ntls.mtasts 2\n", "\ntls.verify 2\n", "\ntls.encrypt 1\n", "\ntls.none 1\n", "\ntls.refused 4\n"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats lacks %q:\n%s", strings.TrimSpace(want), stats)
		}
	}

	// The lifetime ends: each held message bounces with its reason.
	testlib.WaitFor(t, 15*time.Second, "held messages older than 1s", func() bool {
		for _, l := range w.list() {
			if age, err := time.ParseDuration(l.Age); err != nil || age < 2*time.Second {
				return false
			}
		}
		return true
	})
	w.mustCtl("lifetime 1s")
	w.mustCtl("kick")
	box := w.waitBox("alice", held)
	var all string
	for _, m := range box {
		all += m
	}
	for _, tt := range tests {
		if tt.sink == "" && !strings.Contains(all, tt.dsn) {
			t.Errorf("%s: no bounce quotes %q:\n%s", tt.dest, tt.dsn, all)
		}
	}
	w.waitEmpty()
}

// sawRcpt reports whether any sink was sent RCPT TO for rcpt.
func (w *policyWorld) sawRcpt(rcpt string) bool {
	for _, s := range w.sinks {
		for _, sess := range s.Sessions() {
			for _, c := range sess {
				if strings.Contains(c, "<"+rcpt+">") {
					return true
				}
			}
		}
	}
	return false
}

// TestTLSPolicySMTP: the smtp program with -P and -D: -p reports the
// policy it found; DANE with the validating resolver's AD bit holds a
// message to a host whose STARTTLS is gone (exit 2, nothing sent), and
// without the AD bit there is no DANE and it goes as under may.
func TestTLSPolicySMTP(t *testing.T) {
	tw := newPolicyWorld(t)
	w := &smtpWorld{t: t, root: t.TempDir(), sink: tw.sinks["good"], env: append(os.Environ(), tw.env...)}
	code, stdout, stderr := w.run("", "-p", "-P", "default", "sts-good.test", "glenda@example.com", "bob")
	if code != 0 || !strings.Contains(stdout, "tls policy: sts-good.test: tlspolicy default; no dane: no validating resolver (daneresolver); mta-sts: policy id 7 fetched (enforce)\n") ||
		!strings.Contains(stdout, "tls policy: good.mx.test: mta-sts enforce: TLS required, certificate verified for good.mx.test") {
		t.Errorf("smtp -p -P default: exit %d\n%s%s", code, stdout, stderr)
	}
	code, _, stderr = w.run(smtpMsg, "-D", tw.dns.Addr, "dane-stripped.test", "glenda@example.com", "bob")
	if code != 2 || !strings.Contains(stderr, "TLS required (dane: TLS required, 1 usable TLSA records") || tw.sawRcpt("bob@dane-stripped.test") {
		t.Errorf("smtp -D with the AD bit: exit %d, RCPT seen %v\n%s", code, tw.sawRcpt("bob@dane-stripped.test"), stderr)
	}
	code, _, stderr = w.run(smtpMsg, "-D", tw.noAD.Addr, "dane-stripped.test", "glenda@example.com", "bob")
	if code != 0 || len(tw.sinks["plain"].Messages()) != 1 {
		t.Errorf("smtp -D without the AD bit: exit %d\n%s", code, stderr)
	}
	code, _, stderr = w.run(smtpMsg, "-P", "verify", "verify-self.test", "glenda@example.com", "bob")
	if code != 2 || !strings.Contains(stderr, "verify: certificate of selfsigned.mx.test: x509: certificate signed by unknown authority") {
		t.Errorf("smtp -P verify to a self-signed certificate: exit %d\n%s", code, stderr)
	}
	code, _, stderr = w.run(smtpMsg, "-P", "strict", "verify-self.test", "glenda@example.com", "bob")
	if code != 1 || !strings.Contains(stderr, `-P: invalid TLS policy level "strict"`) {
		t.Errorf("smtp -P strict: exit %d\n%s", code, stderr)
	}
	// A level the policy cannot apply (a destination with a port, an
	// address literal: no MX hosts) is refused, not dropped: asked for
	// verified TLS, smtp must not send in the clear.
	host, port, _ := net.SplitHostPort(tw.sinks["plain"].Addr)
	for _, dest := range []string{"tcp!" + host + "!" + port, "[" + host + "]"} {
		before := len(tw.sinks["plain"].Messages())
		code, _, stderr = w.run(smtpMsg, "-P", "verify", dest, "glenda@example.com", "bob@example.com")
		if code != 1 || !strings.Contains(stderr, "the TLS policy does not apply") || len(tw.sinks["plain"].Messages()) != before {
			t.Errorf("smtp -P verify %s: exit %d, %d messages sent in the clear\n%s", dest, code, len(tw.sinks["plain"].Messages())-before, stderr)
		}
	}
}

// TestTLSPolicySMTPRequireTLS: smtp -T sends REQUIRETLS (RFC 8689) on
// MAIL FROM to an MX host the policy authenticates (MTA-STS enforce,
// with -P); without -P or -D nothing is authenticated, and the message
// fails for good (5.7.30) without a recipient being named.
func TestTLSPolicySMTPRequireTLS(t *testing.T) {
	tw := newPolicyWorld(t)
	w := &smtpWorld{t: t, root: t.TempDir(), sink: tw.sinks["good"], env: append(os.Environ(), tw.env...)}
	code, _, stderr := w.run(smtpMsg, "-T", "-P", "default", "sts-good.test", "glenda@example.com", "bob")
	sess := w.sink.Sessions()
	if code != 0 || len(sess) == 0 || !slices.ContainsFunc(sess[len(sess)-1], func(l string) bool {
		return strings.HasPrefix(l, "MAIL FROM:<glenda@example.com>") && strings.Contains(l+" ", " REQUIRETLS ")
	}) {
		t.Errorf("smtp -T -P default: exit %d, sessions %q\n%s", code, sess, stderr)
	}
	code, _, stderr = w.run(smtpMsg, "-T", "sts-good.test", "glenda@example.com", "carol")
	if code != 1 || !strings.Contains(stderr, "5.7.30") || tw.sawRcpt("carol@sts-good.test") {
		t.Errorf("smtp -T without a policy: exit %d, RCPT seen %v\n%s", code, tw.sawRcpt("carol@sts-good.test"), stderr)
	}
}
