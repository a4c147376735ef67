package smtp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

const testMsg = "Subject: test\r\nTo: bob@example.org\r\n\r\nHello.\r\n.dotted line\r\nbare lf\nend"

// wireMsg is testMsg as the sink records it: CRLF everywhere, unstuffed.
const wireMsg = "Subject: test\r\nTo: bob@example.org\r\n\r\nHello.\r\n.dotted line\r\nbare lf\r\nend\r\n"

// fast timeouts, so that a test that goes wrong ends soon.
var fast = smtp.Timeouts{Connect: 5 * time.Second, Greeting: 10 * time.Second, Command: 10 * time.Second,
	DataInit: 10 * time.Second, DataBlock: 10 * time.Second, DataDone: 10 * time.Second}

// setup starts a sink and a DNS whose example.org has two MX hosts: mx1,
// where nothing listens, and mx2, the sink; single.example has mx2 alone.
func setup(t *testing.T, opt testlib.SinkOptions) (*smtp.Client, *testlib.Sink) {
	t.Helper()
	s := testlib.NewSink(t, opt)
	d := testlib.NewDNS(t, `
example.org.      MX 10 mx1.example.org.
example.org.      MX 20 mx2.example.org.
mx1.example.org.  A 127.0.0.3
mx2.example.org.  A 127.0.0.1
single.example.   MX 10 mx2.example.org.
nullmx.example.   MX 0 .
broken.example    SERVFAIL
gone.example      NXDOMAIN
`)
	c := &smtp.Client{Hello: "client.example.net", Port: s.Port(), DNS: smtp.NewResolver(d.Addr), Timeouts: fast}
	return c, s
}

// phaseOf describes an error: its phase and class, "" for nil.
func phaseOf(err error) string {
	if err == nil {
		return ""
	}
	var e *smtp.Error
	if !errors.As(err, &e) {
		return "not an *smtp.Error: " + err.Error()
	}
	if e.Temporary() {
		return e.Phase + " temporary"
	}
	return e.Phase + " permanent"
}

func TestDeliverMXFallback(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	var logb, failb bytes.Buffer
	c.Log, c.FailLog = log.New(&logb, "", 0), log.New(&failb, "", 0)
	rcptErrs, err := c.Deliver(context.Background(), "example.org", "glenda@example.net",
		[]string{"bob@example.org", "alice@example.org"}, strings.NewReader(testMsg))
	if err != nil || len(rcptErrs) != 2 || rcptErrs[0] != nil || rcptErrs[1] != nil {
		t.Fatalf("Deliver = %v, %v", rcptErrs, err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("sink has %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "glenda@example.net" || strings.Join(m.Rcpts, ",") != "bob@example.org,alice@example.org" ||
		string(m.Data) != wireMsg || m.Helo != "client.example.net" {
		t.Errorf("sink got %+v\ndata %q, want %q", m, m.Data, wireMsg)
	}
	if want := fmt.Sprintf("glenda@example.net sent %d bytes to bob@example.org,alice@example.org (mx2.example.org 127.0.0.1:", len(testMsg)); !strings.Contains(logb.String(), want) {
		t.Errorf("log %q lacks %q", logb.String(), want)
	}
}

// TestDeliverAllHostsFail: mx1 cannot be reached, mx2 refuses for good:
// the answer is mx2's, but temporary, since mx1 may take the message later.
func TestDeliverAllHostsFail(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "greeting" {
			return smtp.Replyf(554, "", "no service")
		}
		return nil
	})
	_, err := c.Deliver(context.Background(), "example.org", "", []string{"x@example.org"}, strings.NewReader(testMsg))
	var r *smtp.Reply
	if phaseOf(err) != "greeting temporary" || !errors.As(err, &r) || r.Code != 554 {
		t.Errorf("Deliver = %v (%s), want mx2's 554, temporary", err, phaseOf(err))
	}
	_, err = c.Deliver(context.Background(), "single.example", "", []string{"x@example.org"}, strings.NewReader(testMsg))
	if phaseOf(err) != "greeting permanent" {
		t.Errorf("Deliver to the single MX = %v (%s), want permanent", err, phaseOf(err))
	}
}

func TestDeliverPartial(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	s.SetReply(func(phase, arg string) *smtp.Reply {
		switch {
		case phase == "RCPT" && strings.Contains(arg, "unknown"):
			return smtp.Replyf(550, "5.1.1", "no such user")
		case phase == "RCPT" && strings.Contains(arg, "full"):
			return smtp.Replyf(452, "4.2.2", "mailbox full")
		}
		return nil
	})
	rcpts := []string{"unknown@example.org", "bob@example.org", "full@example.org"}
	rcptErrs, err := c.Deliver(context.Background(), "example.org", "", rcpts, strings.NewReader(testMsg))
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	want := []string{"rcptto permanent", "", "rcptto temporary"}
	for i := range rcpts {
		if got := phaseOf(rcptErrs[i]); got != want[i] {
			t.Errorf("recipient %s: %q (%v), want %q", rcpts[i], got, rcptErrs[i], want[i])
		}
	}
	var r *smtp.Reply
	if !errors.As(rcptErrs[0], &r) || r.Code != 550 || r.Enh != "5.1.1" {
		t.Errorf("refusal %v does not carry the server's reply", rcptErrs[0])
	}
	msgs := s.Wait(t, 1, 5*time.Second)
	if got := strings.Join(msgs[0].Rcpts, ","); got != "bob@example.org" || msgs[0].From != "" {
		t.Errorf("sink got the message from %q for %q, want <> for bob", msgs[0].From, got)
	}
}

func TestDeliverAllRefused(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" {
			return smtp.Replyf(550, "5.1.1", "no")
		}
		return nil
	})
	rcptErrs, err := c.Deliver(context.Background(), "example.org", "a@b.example", []string{"x@example.org", "y@example.org"}, strings.NewReader(testMsg))
	if err != nil || phaseOf(rcptErrs[0]) != "rcptto permanent" || phaseOf(rcptErrs[1]) != "rcptto permanent" {
		t.Fatalf("Deliver = %v, %v", rcptErrs, err)
	}
	for _, sess := range s.Sessions() {
		for _, cmd := range sess {
			if cmd == "DATA" {
				t.Errorf("DATA sent with no recipient accepted: %q", sess)
			}
		}
	}
}

// TestDeliverPhases: the server answering badly at each phase.
func TestDeliverPhases(t *testing.T) {
	tests := []struct {
		phase string // the sink's phase that answers
		reply *smtp.Reply
		want  string // phaseOf the error; "" for delivered
	}{
		{"greeting", smtp.Replyf(421, "", "busy"), "greeting temporary"},
		{"greeting", smtp.Replyf(554, "", "no service"), "greeting permanent"},
		{"EHLO", smtp.Replyf(502, "5.5.1", "what"), ""}, // HELO then works
		{"EHLO", smtp.Replyf(421, "4.3.2", "shutting down"), "hello temporary"},
		{"MAIL", smtp.Replyf(451, "4.3.0", "later"), "mailfrom temporary"},
		{"MAIL", smtp.Replyf(553, "5.7.1", "not you"), "mailfrom permanent"},
		{"DATA", smtp.Replyf(554, "5.5.1", "no data"), "data permanent"},
		{"DATA", smtp.Replyf(250, "", "huh"), "data temporary"},
		{".", smtp.Replyf(451, "4.3.0", "disk full"), "data temporary"},
		{".", smtp.Replyf(552, "5.3.4", "too big"), "data permanent"},
		{"RCPT", testlib.Hangup, "rcptto temporary"},
		{".", testlib.Hangup, "data temporary"},
	}
	for _, tt := range tests {
		c, s := setup(t, testlib.SinkOptions{})
		s.SetReply(func(phase, arg string) *smtp.Reply {
			if phase == tt.phase {
				return tt.reply
			}
			return nil
		})
		rcptErrs, err := c.Deliver(context.Background(), "single.example", "a@b.example", []string{"x@example.org"}, strings.NewReader(testMsg))
		if got := phaseOf(err); got != tt.want {
			t.Errorf("%s %v: %q (%v), want %q", tt.phase, tt.reply, got, err, tt.want)
		}
		if err != nil && (len(rcptErrs) != 1 || rcptErrs[0] != err) {
			t.Errorf("%s %v: rcptErrs %v, want the error", tt.phase, tt.reply, rcptErrs)
		}
		if n := len(s.Messages()); (n == 1) != (tt.want == "") {
			t.Errorf("%s %v: the sink has %d messages", tt.phase, tt.reply, n)
		}
	}
}

func TestDeliverDNS(t *testing.T) {
	c, _ := setup(t, testlib.SinkOptions{})
	for dest, want := range map[string]string{
		"nullmx.example": "dns permanent",
		"gone.example":   "dns permanent",
		"broken.example": "dns temporary",
		"tcp!x!y!z":      "dial permanent",
	} {
		_, err := c.Deliver(context.Background(), dest, "", []string{"a@" + dest}, strings.NewReader(testMsg))
		if got := phaseOf(err); got != want {
			t.Errorf("Deliver to %s: %q (%v), want %q", dest, got, err, want)
		}
	}
	_, err := c.Deliver(context.Background(), "nullmx.example", "", []string{"a@nullmx.example"}, strings.NewReader(testMsg))
	var r *smtp.Reply
	if !errors.As(err, &r) || r.Enh != "5.1.10" {
		t.Errorf("null MX: %v, want a 5.1.10 reply", err)
	}
}

// TestErrorText: what a failure says, as the logs and DSNs show it (a
// DNS failure says "dns:" once), and which failures name the server that
// answered for a DSN's Remote-MTA.
func TestErrorText(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" {
			return smtp.Replyf(550, "5.1.1", "no such user")
		}
		return nil
	})
	c.Port = s.Port()
	for _, tt := range []struct{ dest, text, mta string }{
		{"gone.example", "dns: gone.example: domain not found", ""},
		{"broken.example", "dns: broken.example MX: SERVFAIL", ""},
		{"single.example", "mx2.example.org (127.0.0.1:" + s.Port() + ") rcptto: 550 5.1.1 no such user", "mx2.example.org"},
	} {
		errs, err := c.Deliver(context.Background(), tt.dest, "", []string{"a@" + tt.dest}, strings.NewReader(testMsg))
		if err == nil && len(errs) == 1 {
			err = errs[0]
		}
		var e *smtp.Error
		if !errors.As(err, &e) {
			t.Fatalf("Deliver to %s: %v, want an *smtp.Error", tt.dest, err)
		}
		if got := e.Error(); got != tt.text {
			t.Errorf("Deliver to %s: error %q, want %q", tt.dest, got, tt.text)
		}
		if got := e.RemoteMTA(); got != tt.mta {
			t.Errorf("Deliver to %s: RemoteMTA %q, want %q", tt.dest, got, tt.mta)
		}
	}
}

// TestDeliverNoHost: nothing listens anywhere: a temporary dial failure.
func TestDeliverNoHost(t *testing.T) {
	c, _ := setup(t, testlib.SinkOptions{})
	c.Port = "1" // nothing listens on port 1 of 127.0.0.1
	_, err := c.Deliver(context.Background(), "example.org", "", []string{"a@example.org"}, strings.NewReader(testMsg))
	if got := phaseOf(err); got != "dial temporary" {
		t.Errorf("Deliver with no server: %q (%v), want dial temporary", got, err)
	}
}

func TestDeliverLiteral(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	for _, dest := range []string{"[127.0.0.1]", "127.0.0.1", "tcp!127.0.0.1!" + s.Port(), "127.0.0.1:" + s.Port()} {
		if _, err := c.Deliver(context.Background(), dest, "", []string{"bob@[127.0.0.1]"}, strings.NewReader(testMsg)); err != nil {
			t.Errorf("Deliver to %s: %v", dest, err)
		}
	}
}

func TestPing(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" && strings.Contains(arg, "nobody") {
			return smtp.Replyf(550, "5.1.1", "no")
		}
		return nil
	})
	rcptErrs, err := c.Ping(context.Background(), "example.org", "", []string{"bob@example.org", "nobody@example.org"})
	if err != nil || rcptErrs[0] != nil || phaseOf(rcptErrs[1]) != "rcptto permanent" {
		t.Fatalf("Ping = %v, %v", rcptErrs, err)
	}
	sess := s.Sessions()
	if last := sess[len(sess)-1]; strings.Join(last, "|") != "EHLO client.example.net|MAIL FROM:<>|RCPT TO:<bob@example.org>|RCPT TO:<nobody@example.org>|QUIT" {
		t.Errorf("ping session %q", last)
	}
}

// TestDeliverInvalidAddresses: an address that would break the command
// line is refused before anything is sent.
func TestDeliverInvalidAddresses(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	rcpts := []string{"bob@example.org>\r\nRSET", "bob@example.org"}
	rcptErrs, err := c.Deliver(context.Background(), "example.org", "", rcpts, strings.NewReader(testMsg))
	if err != nil || phaseOf(rcptErrs[0]) != "rcptto permanent" || rcptErrs[1] != nil {
		t.Fatalf("Deliver = %v, %v", rcptErrs, err)
	}
	for _, sess := range s.Sessions() {
		for _, cmd := range sess {
			if strings.Contains(cmd, "RSET") {
				t.Errorf("injected command reached the server: %q", sess)
			}
		}
	}
	_, err = c.Deliver(context.Background(), "example.org", "a@b\nc", []string{"bob@example.org"}, strings.NewReader(testMsg))
	if phaseOf(err) != "mailfrom permanent" {
		t.Errorf("bad sender: %v", err)
	}
	c.Hello = "client.example.net\r\nRSET"
	_, err = c.Deliver(context.Background(), "example.org", "", []string{"bob@example.org"}, strings.NewReader(testMsg))
	if phaseOf(err) != "hello permanent" {
		t.Errorf("bad EHLO name: %v", err)
	}
}

// TestDeliverParams: SIZE when the size is known, BODY=8BITMIME, and
// recipients pipelined.
func TestDeliverParams(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	if _, err := c.Deliver(context.Background(), "example.org", "a@b.example", []string{"x@example.org"}, bytes.NewReader([]byte(testMsg))); err != nil {
		t.Fatal(err)
	}
	sess := s.Sessions()
	if got, want := sess[len(sess)-1][1], fmt.Sprintf("MAIL FROM:<a@b.example> SIZE=%d BODY=8BITMIME", len(testMsg)); got != want {
		t.Errorf("MAIL command %q, want %q", got, want)
	}
}

// brokenReader gives part of a message, then fails.
type brokenReader struct{ n int }

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.n > 0 {
		b.n--
		return copy(p, "Subject: x\r\n\r\npart of it\r\n"), nil
	}
	return 0, errors.New("disk on fire")
}

// TestDeliverReadError: a message that cannot be read is never ended with
// the final dot: the server must not deliver half of it.
func TestDeliverReadError(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	_, err := c.Deliver(context.Background(), "example.org", "", []string{"x@example.org"}, &brokenReader{n: 2})
	if phaseOf(err) != "data temporary" || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Deliver = %v, want a temporary data error naming the cause", err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("the sink accepted %d messages", n)
	}
}

func TestDeliverTimeout(t *testing.T) {
	c, _ := setup(t, testlib.SinkOptions{Mute: true})
	c.Timeouts.Greeting = 200 * time.Millisecond
	_, err := c.Deliver(context.Background(), "[127.0.0.1]", "", []string{"x@example.org"}, strings.NewReader(testMsg))
	if phaseOf(err) != "greeting temporary" {
		t.Errorf("greeting timeout: %v", err)
	}
	c.Provoke = true
	if _, err := c.Deliver(context.Background(), "[127.0.0.1]", "", []string{"x@example.org"}, strings.NewReader(testMsg)); err != nil {
		t.Errorf("with Provoke: %v", err)
	}
}

func TestDeliverCancel(t *testing.T) {
	c, _ := setup(t, testlib.SinkOptions{Mute: true})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Deliver(ctx, "[127.0.0.1]", "", []string{"x@example.org"}, strings.NewReader(testMsg))
	if !errors.Is(err, context.DeadlineExceeded) || !smtp.IsTemporary(err) {
		t.Errorf("cancelled Deliver: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancelled Deliver took %v", d)
	}
}

// A session ended by its context names the context's cause: the queue
// cuts a whole session that way and wants the log to say why.
func TestDeliverCause(t *testing.T) {
	c, _ := setup(t, testlib.SinkOptions{Mute: true})
	cause := errors.New("session over its bound")
	ctx, cancel := context.WithTimeoutCause(context.Background(), 200*time.Millisecond, cause)
	defer cancel()
	_, err := c.Deliver(ctx, "[127.0.0.1]", "", []string{"x@example.org"}, strings.NewReader(testMsg))
	if !errors.Is(err, cause) || !smtp.IsTemporary(err) || !strings.Contains(err.Error(), "greeting: session over its bound") {
		t.Errorf("Deliver cut by its context: %v", err)
	}
}

func tlsSetup(t *testing.T, opt testlib.SinkOptions) (*smtp.Client, *testlib.Sink, *testlib.Cert) {
	cert := testlib.NewCert(t, t.TempDir(), "mx2.example.org")
	if opt.TLS == nil {
		opt.TLS = cert.ServerConfig()
	}
	c, s := setup(t, opt)
	c.StartTLS = smtp.TryTLS
	return c, s, cert
}

func pinFile(t *testing.T, lines string) *smtp.Pins {
	file := filepath.Join(t.TempDir(), "smtp")
	if err := os.WriteFile(file, []byte(lines), 0644); err != nil {
		t.Fatal(err)
	}
	p, err := smtp.LoadPins(file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeliverTLS(t *testing.T) {
	other := testlib.NewCert(t, t.TempDir(), "mx2.example.org")
	tests := []struct {
		name string
		set  func(c *smtp.Client, cert *testlib.Cert)
		want string
	}{
		{"verified by CA", func(c *smtp.Client, cert *testlib.Cert) { c.RootCAs = cert.Pool() }, ""},
		{"pinned", func(c *smtp.Client, cert *testlib.Cert) { c.Pins = pinFile(t, "x509 sha256="+cert.SHA256+"\n") }, ""},
		{"insecure", func(c *smtp.Client, cert *testlib.Cert) { c.Insecure = true }, ""},
		{"unknown certificate", func(c *smtp.Client, cert *testlib.Cert) {}, "tls permanent"},
		{"other CA", func(c *smtp.Client, cert *testlib.Cert) { c.RootCAs = other.Pool() }, "tls permanent"},
		{"other pin", func(c *smtp.Client, cert *testlib.Cert) { c.Pins = pinFile(t, "x509 sha256="+other.SHA256+"\n") }, "tls permanent"},
		{"implicit TLS", func(c *smtp.Client, cert *testlib.Cert) {
			c.RootCAs, c.ImplicitTLS, c.StartTLS = cert.Pool(), true, smtp.NoTLS
		}, ""},
	}
	for _, tt := range tests {
		opt := testlib.SinkOptions{Implicit: strings.HasPrefix(tt.name, "implicit")}
		c, s, cert := tlsSetup(t, opt)
		tt.set(c, cert)
		_, err := c.Deliver(context.Background(), "single.example", "", []string{"x@example.org"}, strings.NewReader(testMsg))
		if got := phaseOf(err); got != tt.want {
			t.Errorf("%s: %q (%v), want %q", tt.name, got, err, tt.want)
			continue
		}
		if err == nil {
			if m := s.Messages(); len(m) != 1 || !m[0].TLS {
				t.Errorf("%s: sink got %d messages, or not over TLS", tt.name, len(m))
			}
			continue
		}
		var ce *smtp.CertError
		if !errors.As(err, &ce) || ce.SHA256 != cert.SHA256 || ce.Host != "mx2.example.org" {
			t.Errorf("%s: error %v does not name the certificate", tt.name, err)
		}
		for _, sess := range s.Sessions() {
			for _, cmd := range sess {
				if strings.HasPrefix(cmd, "MAIL") {
					t.Errorf("%s: MAIL sent after a failed handshake: %q", tt.name, sess)
				}
			}
		}
	}
}

// TestStartTLSRefused: once STARTTLS is asked for, a refusal ends the
// session: never plaintext after it.
func TestStartTLSRefused(t *testing.T) {
	for code, want := range map[int]string{454: "starttls temporary", 502: "starttls permanent"} {
		c, s, _ := tlsSetup(t, testlib.SinkOptions{})
		c.Insecure = true
		s.SetReply(func(phase, arg string) *smtp.Reply {
			if phase == "STARTTLS" {
				return smtp.Replyf(code, "", "not now")
			}
			return nil
		})
		_, err := c.Deliver(context.Background(), "single.example", "", []string{"x@example.org"}, strings.NewReader(testMsg))
		if got := phaseOf(err); got != want {
			t.Errorf("STARTTLS answered %d: %q (%v), want %q", code, got, err, want)
		}
		sess := s.Sessions()
		if got := strings.Join(sess[len(sess)-1], "|"); got != "EHLO client.example.net|STARTTLS|QUIT" {
			t.Errorf("STARTTLS answered %d: session %q", code, got)
		}
	}
}

func TestStartTLSNotOffered(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	c.StartTLS = smtp.TryTLS
	if _, err := c.Deliver(context.Background(), "example.org", "", []string{"x@example.org"}, strings.NewReader(testMsg)); err != nil {
		t.Errorf("TryTLS without STARTTLS on offer: %v", err)
	}
	c.StartTLS = smtp.RequireTLS
	_, err := c.Deliver(context.Background(), "example.org", "", []string{"x@example.org"}, strings.NewReader(testMsg))
	if got := phaseOf(err); got != "starttls temporary" {
		t.Errorf("RequireTLS without STARTTLS on offer: %q (%v)", got, err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("sink has %d messages, want 1", n)
	}
}

func TestAuth(t *testing.T) {
	users := map[string]string{"alice": "wonderland"}
	tests := []struct {
		name     string
		tls      bool
		auth     smtp.Auth
		noTLSok  bool
		want     string
		wantUser string
	}{
		{"over TLS", true, smtp.Auth{User: "alice", Password: "wonderland"}, false, "", "alice"},
		{"wrong password", true, smtp.Auth{User: "alice", Password: "x"}, false, "auth permanent", ""},
		{"plaintext refused", false, smtp.Auth{User: "alice", Password: "wonderland"}, false, "auth permanent", ""},
		{"plaintext allowed", false, smtp.Auth{User: "alice", Password: "wonderland"}, true, "", "alice"},
	}
	for _, tt := range tests {
		opt := testlib.SinkOptions{Users: users}
		var c *smtp.Client
		var s *testlib.Sink
		if tt.tls {
			c, s, _ = tlsSetup(t, opt)
			c.Insecure = true
		} else {
			c, s = setup(t, opt)
		}
		var tr bytes.Buffer
		c.Auth, c.AuthWithoutTLS, c.Transcript = &tt.auth, tt.noTLSok, &tr
		_, err := c.Deliver(context.Background(), "example.org", "", []string{"x@example.org"}, strings.NewReader(testMsg))
		if got := phaseOf(err); got != tt.want {
			t.Errorf("%s: %q (%v), want %q", tt.name, got, err, tt.want)
		}
		if m := s.Messages(); tt.want == "" && (len(m) != 1 || m[0].User != tt.wantUser) {
			t.Errorf("%s: sink messages %+v, want one from user %s", tt.name, m, tt.wantUser)
		}
		if strings.Contains(tr.String(), "d29uZGVybGFuZ") || strings.Contains(tr.String(), "wonderland") {
			t.Errorf("%s: the transcript shows the password:\n%s", tt.name, tr.String())
		}
		if tt.name == "plaintext refused" {
			for _, sess := range s.Sessions() {
				for _, cmd := range sess {
					if strings.HasPrefix(cmd, "AUTH") {
						t.Errorf("%s: AUTH sent in plaintext: %q", tt.name, sess)
					}
				}
			}
		}
	}
}

// TestTranscript: both directions, AUTH masked, the body left out.
func TestTranscript(t *testing.T) {
	c, _, _ := tlsSetup(t, testlib.SinkOptions{Users: map[string]string{"alice": "wonderland"}})
	var tr bytes.Buffer
	c.Insecure, c.Transcript, c.Auth = true, &tr, &smtp.Auth{User: "alice", Password: "wonderland"}
	if _, err := c.Deliver(context.Background(), "example.org", "", []string{"x@example.org"}, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	got := tr.String()
	bodyNote := fmt.Sprintf("[%d bytes of body]", len(testMsg)-strings.Index(testMsg, "\r\n\r\n")-4)
	for _, want := range []string{"< 220 sink ESMTP\n", "> EHLO client.example.net\n", "> STARTTLS\n", "* TLS ",
		"> AUTH PLAIN ********\n", "< 235 2.7.0 ok\n", "> Subject: test\n", bodyNote, "> QUIT\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "Hello.") {
		t.Errorf("transcript shows the body:\n%s", got)
	}
}

// TestHostileReplies: a server whose replies carry ESC sequences and C1
// controls reaches neither the transcript nor the error texts with them:
// they are escaped, the rest of the text kept.
func TestHostileReplies(t *testing.T) {
	port, done := script(t,
		step{"", "220 hi \x1b]0;owned\x07\r\n"},
		step{"EHLO", "250-hi\x1b[2J\r\n250 SIZE 1000\r\n"},
		step{"MAIL", "250 ok\r\n"},
		step{"RCPT", "550-5.1.1 \x1b[2J\xc2\x9b31mno such user\r\n550 5.1.1 \x9b\u0085bye\r\n"},
		step{"QUIT", "221 bye\r\n"},
	)
	c := scriptClient(port)
	var tr bytes.Buffer
	c.Transcript = &tr
	rcptErrs, err := c.Deliver(context.Background(), "[127.0.0.1]", "", []string{"a@x.example"}, strings.NewReader(testMsg))
	if err != nil || len(rcptErrs) != 1 || rcptErrs[0] == nil {
		t.Fatalf("Deliver = %v, %v; want the recipient refused", rcptErrs, err)
	}
	if want := `550 5.1.1 \x1b[2J\u009b31mno such user; 5.1.1 \x9b\u0085bye`; !strings.Contains(rcptErrs[0].Error(), want) {
		t.Errorf("error %q lacks %q", rcptErrs[0], want)
	}
	for _, want := range []string{`< 220 hi \x1b]0;owned\x07` + "\n", `< 250-hi\x1b[2J` + "\n", `< 550-5.1.1 \x1b[2J\u009b31mno such user` + "\n"} {
		if !strings.Contains(tr.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, tr.String())
		}
	}
	for name, text := range map[string]string{"transcript": tr.String(), "error": rcptErrs[0].Error()} {
		if i := strings.IndexFunc(text, func(r rune) bool {
			return r < ' ' && r != '\n' && r != '\t' || r == 0x7f || r >= 0x80 && r <= 0x9f || r == utf8.RuneError
		}); i >= 0 {
			t.Errorf("the %s has a control at %d: %q", name, i, text)
		}
	}
	<-done
}

// A step of a scripted server: read a line starting with want ("" reads
// nothing; "." reads a message up to its final dot), then write reply.
type step struct{ want, reply string }

// script serves one connection on 127.0.0.1 with steps, and returns its
// port and a channel that says how it went.
func script(t *testing.T, steps ...step) (string, <-chan error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(c)
		for _, st := range steps {
			if err := expectLine(r, st.want); err != nil {
				done <- err
				return
			}
			if _, err := io.WriteString(c, st.reply); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, done
}

func expectLine(r *bufio.Reader, want string) error {
	if want == "" {
		return nil
	}
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if want != "." {
			if !strings.HasPrefix(l, want) {
				return errors.New("got " + l + ", want " + want)
			}
			return nil
		}
		if l == ".\r\n" {
			return nil
		}
	}
}

func scriptClient(port string) *smtp.Client {
	return &smtp.Client{Hello: "client.example.net", Port: port, Timeouts: fast}
}

// TestPipelining: with PIPELINING on offer, the RCPTs go with MAIL, before
// its reply: this server answers MAIL only once it has the RCPT.
func TestPipelining(t *testing.T) {
	port, done := script(t,
		step{"", "220 hi\r\n"},
		step{"EHLO", "250-hi\r\n250 PIPELINING\r\n"},
		step{"MAIL FROM:<>", ""},
		step{"RCPT TO:<a@x.example>", ""},
		step{"RCPT TO:<b@x.example>", "250 ok\r\n250 ok\r\n550 no\r\n"},
		step{"DATA", "354 go\r\n"},
		step{".", "250 ok\r\n"},
		step{"QUIT", "221 bye\r\n"},
	)
	rcptErrs, err := scriptClient(port).Deliver(context.Background(), "[127.0.0.1]", "", []string{"a@x.example", "b@x.example"}, strings.NewReader(testMsg))
	if err != nil || rcptErrs[0] != nil || phaseOf(rcptErrs[1]) != "rcptto permanent" {
		t.Errorf("Deliver = %v, %v", rcptErrs, err)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestAuthMechanisms(t *testing.T) {
	// The example of RFC 2195 §2: tim, tanstaaftanstaaf, this challenge.
	const chal = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
	tests := []struct {
		name  string
		auth  smtp.Auth
		steps []step
	}{
		{"LOGIN", smtp.Auth{User: "alice", Password: "wonderland"}, []step{
			{"EHLO", "250-hi\r\n250 AUTH LOGIN\r\n"},
			{"AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"},
			{"YWxpY2U=", "334 UGFzc3dvcmQ6\r\n"},
			{"d29uZGVybGFuZA==", "235 ok\r\n"},
		}},
		{"CRAM-MD5 in plaintext", smtp.Auth{User: "tim", Password: "tanstaaftanstaaf"}, []step{
			{"EHLO", "250-hi\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n"},
			{"AUTH CRAM-MD5", "334 " + chal + "\r\n"},
			{"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw", "235 ok\r\n"},
		}},
	}
	for _, tt := range tests {
		steps := append([]step{{"", "220 hi\r\n"}}, tt.steps...)
		steps = append(steps, step{"MAIL", "250 ok\r\n"}, step{"RCPT", "250 ok\r\n"}, step{"DATA", "354 go\r\n"},
			step{".", "250 ok\r\n"}, step{"QUIT", "221 bye\r\n"})
		port, done := script(t, steps...)
		c := scriptClient(port)
		c.Auth, c.AuthWithoutTLS = &tt.auth, true
		if _, err := c.Deliver(context.Background(), "[127.0.0.1]", "", []string{"a@x.example"}, strings.NewReader(testMsg)); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if err := <-done; err != nil {
			t.Errorf("%s: server: %v", tt.name, err)
		}
	}
}

// TestBadServers: garbage and tricks from the server.
func TestBadServers(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		tls   bool
		want  string
	}{
		{"garbage greeting", []step{{"", "hello there\r\n"}}, false, "greeting temporary"},
		{"endless reply", []step{{"", strings.Repeat("220-x\r\n", 200)}}, false, "greeting temporary"},
		{"hangs up", []step{{"", "220 hi\r\n"}, {"EHLO", ""}}, false, "hello temporary"},
		{"STARTTLS injection", []step{{"", "220 hi\r\n"}, {"EHLO", "250-hi\r\n250 STARTTLS\r\n"},
			{"STARTTLS", "220 go ahead\r\n250 injected\r\n"}}, true, "starttls permanent"},
	}
	for _, tt := range tests {
		port, done := script(t, tt.steps...)
		c := scriptClient(port)
		if tt.tls {
			c.StartTLS, c.Insecure = smtp.TryTLS, true
		}
		_, err := c.Deliver(context.Background(), "[127.0.0.1]", "", []string{"a@x.example"}, strings.NewReader(testMsg))
		if got := phaseOf(err); got != tt.want {
			t.Errorf("%s: %q (%v), want %q", tt.name, got, err, tt.want)
		}
		<-done
	}
}

// TestSendSMTPUTF8Param: a message whose Params say SMTPUTF8 (UTF-8 in
// its header) asks for it at MAIL even with ASCII addresses, and is
// refused for good (5.6.7, RFC 6531 §3.7.4.1) by a server without it.
func TestSendSMTPUTF8Param(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	m := smtp.Mail{From: "a@b.example", Rcpts: []string{"x@example.org"}, Params: smtp.Params{SMTPUTF8: true}}
	_, err := c.Send(context.Background(), "example.org", m, strings.NewReader(testMsg))
	if phaseOf(err) != "mailfrom permanent" || !strings.Contains(err.Error(), "5.6.7") {
		t.Fatalf("Send to a server without SMTPUTF8 = %v; want a permanent 5.6.7", err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("%d messages reached a server without SMTPUTF8", n)
	}
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "EHLO" {
			return &smtp.Reply{Code: 250, Lines: []string{"sink", "PIPELINING", "8BITMIME", "SMTPUTF8"}}
		}
		return nil
	})
	if _, err := c.Send(context.Background(), "example.org", m, strings.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	sess := s.Sessions()
	if got := sess[len(sess)-1][1]; !strings.HasSuffix(got, " SMTPUTF8") || !strings.HasPrefix(got, "MAIL FROM:<a@b.example>") {
		t.Errorf("MAIL command %q, want SMTPUTF8 on it", got)
	}
}

// DSN's parameters go to a server that offers DSN, xtext-encoded where
// RFC 3461 says, and the Outcome says it did; to a server without DSN
// they do not, and the Outcome says so.
func TestSendDSNParams(t *testing.T) {
	m := smtp.Mail{From: "a@b.example", Rcpts: []string{"x@example.org", "y@example.org"},
		Params: smtp.Params{Ret: "HDRS", EnvID: "id 1+2", Rcpt: []smtp.RcptParams{
			{Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;X=1@example.org"}, {}}}}
	for _, offer := range []bool{true, false} {
		c, s := setup(t, testlib.SinkOptions{DSN: offer})
		_, o, err := c.SendOutcome(context.Background(), "example.org", m, bytes.NewReader([]byte(testMsg)))
		if err != nil {
			t.Fatal(err)
		}
		sess := s.Sessions()
		lines := sess[len(sess)-1]
		mail, rcpt1, rcpt2 := lines[1], lines[2], lines[3]
		want := [3]string{fmt.Sprintf("MAIL FROM:<a@b.example> SIZE=%d BODY=8BITMIME", len(testMsg)),
			"RCPT TO:<x@example.org>", "RCPT TO:<y@example.org>"}
		if offer {
			want[0] += " RET=HDRS ENVID=id+201+2B2"
			want[1] += " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;X+3D1@example.org"
		}
		if got := [3]string{mail, rcpt1, rcpt2}; got != want || o.DSN != offer {
			t.Errorf("DSN offered %v: sent %q, outcome %+v; want %q", offer, got, o, want)
		}
	}
}
