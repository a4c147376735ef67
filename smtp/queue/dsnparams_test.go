package queue

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// putMail queues m with the test message and fails the test if it cannot.
func (h *harness) putMail(m smtp.Mail) string {
	h.t.Helper()
	id, err := h.q.PutMail(context.Background(), m, strings.NewReader(testMsg(m.From)))
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// finalRcpts returns the Final-Recipient of each recipient of d.
func finalRcpts(d *testlib.DSN) []string {
	var l []string
	for _, r := range d.Recipients {
		l = append(l, r["Final-Recipient"])
	}
	return l
}

// A failure DSN reports only the recipients whose NOTIFY asks for
// failures (none for NEVER), carries ENVID and ORCPT back, and with
// RET=HDRS the header alone.
func TestDSNNotifyFailure(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil // the DSN
		}
		errs := make([]error, len(c.rcpts))
		for i := range errs {
			errs[i] = noSuchUser
		}
		return errs, nil
	})
	h.run()
	id := h.putMail(smtp.Mail{From: "alice@example.org",
		Rcpts: []string{"never@example.com", "fail@example.com", "plain@example.com", "succ@example.com"},
		Params: smtp.Params{Ret: "HDRS", EnvID: "env 42", Rcpt: []smtp.RcptParams{
			{Notify: "NEVER"}, {Notify: "FAILURE,DELAY", ORcpt: "rfc822;Fail@Example.COM"}, {}, {Notify: "SUCCESS"}}}})
	h.waitID(id)
	testlib.WaitFor(t, 10*time.Second, "the DSN to go", func() bool { return len(h.q.List()) == 0 })
	calls := h.d.take()
	if len(calls) != 2 || calls[1].from != "" {
		t.Fatalf("calls %+v, want the message and one DSN", calls)
	}
	d := parseDSN(t, calls[1].msg)
	if got, want := finalRcpts(d), []string{"rfc822; fail@example.com", "rfc822; plain@example.com"}; !slices.Equal(got, want) {
		t.Errorf("DSN recipients %q, want %q", got, want)
	}
	if d.PerMessage["Original-Envelope-Id"] != "env 42" {
		t.Errorf("per-message fields %v", d.PerMessage)
	}
	if o := d.Recipients[0]["Original-Recipient"]; o != "rfc822;Fail@Example.COM" {
		t.Errorf("Original-Recipient %q", o)
	}
	if _, ok := d.Recipients[1]["Original-Recipient"]; ok {
		t.Errorf("Original-Recipient without ORCPT: %v", d.Recipients[1])
	}
	if d.Types[2] != "text/rfc822-headers" || strings.Contains(d.Original, "hello") {
		t.Errorf("RET=HDRS returned %s:\n%s", d.Types[2], d.Original)
	}
	if st := h.q.Stats(); st.Bounced != 4 || st.DSNs != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A failure DSN for a message sent with RET=FULL returns it whole.
func TestDSNRetFull(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil
		}
		return nil, noSuchUser
	})
	h.run()
	id := h.putMail(smtp.Mail{From: "alice@example.org", Rcpts: []string{"bob@example.com"}, Params: smtp.Params{Ret: "FULL"}})
	h.waitID(id)
	testlib.WaitFor(t, 10*time.Second, "the DSN to go", func() bool { return len(h.q.List()) == 0 })
	calls := h.d.take()
	d := parseDSN(t, calls[len(calls)-1].msg)
	if d.Types[2] != "message/rfc822" || d.Original != strings.ReplaceAll(testMsg("alice@example.org"), "\r\n", "\n") {
		t.Errorf("RET=FULL returned %s:\n%q", d.Types[2], d.Original)
	}
}

// A failure DSN for a REQUIRETLS message returns its header alone, even
// with RET=FULL (RFC 8689 §5): its body, which the sender wanted only
// over verified TLS, must not come back in a report that may travel in
// the clear.
func TestDSNRequireTLSHeaders(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil
		}
		return nil, smtp.Replyf(550, "5.7.30", "REQUIRETLS: no TLS")
	})
	h.run()
	id := h.putMail(smtp.Mail{From: "alice@example.org", Rcpts: []string{"bob@example.com"},
		Params: smtp.Params{Ret: "FULL", RequireTLS: true}})
	h.waitID(id)
	testlib.WaitFor(t, 10*time.Second, "the DSN to go", func() bool { return len(h.q.List()) == 0 })
	calls := h.d.take()
	d := parseDSN(t, calls[len(calls)-1].msg)
	if d.Types[2] != "text/rfc822-headers" || strings.Contains(d.Original, "hello") {
		t.Errorf("REQUIRETLS with RET=FULL returned %s:\n%q", d.Types[2], d.Original)
	}
}

// NOTIFY=SUCCESS: "delivered" for a local recipient, "relayed" for one
// whose next hop has no DSN, nothing for one whose next hop has DSN (it
// got the parameters and reports itself), nothing for those who did not
// ask; one success DSN for the attempt, to the (local) sender.
func TestDSNSuccess(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.dsn = map[string]bool{"example.net": true}
	h.run()
	succ := smtp.RcptParams{Notify: "SUCCESS"}
	id := h.putMail(smtp.Mail{From: "alice@local.test",
		Rcpts:  []string{"bob@local.test", "carol@example.com", "dave@example.net", "eve@local.test"},
		Params: smtp.Params{EnvID: "e1", Rcpt: []smtp.RcptParams{succ, {Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;c@x"}, succ, {}}}})
	h.waitID(id)
	testlib.WaitFor(t, 10*time.Second, "the DSN to go", func() bool { return len(h.q.List()) == 0 })
	got := h.local.messages("alice")
	if len(got) != 1 {
		t.Fatalf("alice got %d messages, want one success DSN; log:\n%s", len(got), h.log)
	}
	d := parseDSN(t, got[0])
	if !strings.Contains(d.Header.Get("Subject"), "Successful") || d.PerMessage["Original-Envelope-Id"] != "e1" {
		t.Errorf("DSN header %v, per-message %v", d.Header, d.PerMessage)
	}
	want := map[string]string{"rfc822; bob@local.test": "delivered", "rfc822; carol@example.com": "relayed"}
	if len(d.Recipients) != len(want) {
		t.Errorf("DSN recipients %q, want %v", finalRcpts(d), want)
	}
	for _, r := range d.Recipients {
		if a := want[r["Final-Recipient"]]; a == "" || r["Action"] != a || r["Status"] != "2.0.0" {
			t.Errorf("recipient fields %v", r)
		}
		if r["Final-Recipient"] == "rfc822; carol@example.com" && r["Original-Recipient"] != "rfc822;c@x" {
			t.Errorf("Original-Recipient %q", r["Original-Recipient"])
		}
	}
	if st := h.q.Stats(); st.DSNs != 1 || st.Delivered != 5 {
		t.Errorf("stats %+v", st)
	}
}

// PutDelivered queues the success DSN of a local delivery made by the
// server: for the recipients that asked, none for <> or when nobody did.
func TestPutDelivered(t *testing.T) {
	h := newHarness(t, testSettings())
	h.run()
	m := smtp.Mail{From: "alice@local.test", Rcpts: []string{"bob@local.test", "eve@local.test"},
		Params: smtp.Params{Rcpt: []smtp.RcptParams{{Notify: "SUCCESS"}, {Notify: "FAILURE"}}}}
	msg := "Received: by mx.test\r\nSubject: hi\r\n\r\nbody\r\n"
	id, err := h.q.PutDelivered(context.Background(), m, strings.NewReader(msg))
	if err != nil || id == "" {
		t.Fatalf("PutDelivered: %q, %v", id, err)
	}
	h.waitID(id)
	got := h.local.messages("alice")
	if len(got) != 1 {
		t.Fatalf("alice got %d messages", len(got))
	}
	d := parseDSN(t, got[0])
	if len(d.Recipients) != 1 || d.Recipients[0]["Final-Recipient"] != "rfc822; bob@local.test" ||
		d.Recipients[0]["Action"] != "delivered" || d.Original != "Received: by mx.test\nSubject: hi\n" {
		t.Errorf("DSN recipients %v, original %q", d.Recipients, d.Original)
	}
	for _, m := range []smtp.Mail{
		{From: "", Rcpts: m.Rcpts, Params: m.Params},
		{From: "alice@local.test", Rcpts: m.Rcpts},
	} {
		if id, err := h.q.PutDelivered(context.Background(), m, strings.NewReader(msg)); id != "" || err != nil {
			t.Errorf("PutDelivered from %q, %v: %q, %v; want none", m.From, m.Rcpt, id, err)
		}
	}
}

// A delay warning goes only to recipients whose NOTIFY lists DELAY, or
// who gave no NOTIFY.
func TestDSNNotifyDelay(t *testing.T) {
	s := testSettings()
	s.Backoff = []time.Duration{time.Hour}
	s.DelayWarn = time.Minute
	h := newHarness(t, s)
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil
		}
		return nil, greylisted
	})
	h.run()
	id := h.putMail(smtp.Mail{From: "alice@example.org", Rcpts: []string{"a@example.com", "b@example.com", "c@example.com"},
		Params: smtp.Params{Rcpt: []smtp.RcptParams{{Notify: "FAILURE"}, {Notify: "DELAY"}, {}}}})
	h.waitID(id)                   // the first try: before DelayWarn
	h.clock.Advance(2 * time.Hour) // past every recipient's backoff (each has its jitter)
	h.waitID(id)                   // the second: the warning
	testlib.WaitFor(t, 10*time.Second, "the warning to go", func() bool { return len(h.q.List()) == 1 })
	var warnings []call
	for _, c := range h.d.take() {
		if c.from == "" {
			warnings = append(warnings, c)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("%d warnings; log:\n%s", len(warnings), h.log)
	}
	d := parseDSN(t, warnings[0].msg)
	if got, want := finalRcpts(d), []string{"rfc822; b@example.com", "rfc822; c@example.com"}; !slices.Equal(got, want) {
		t.Errorf("warned %q, want %q", got, want)
	}
}

// The DSN of a REQUIRETLS message carries its header, and leaves with
// REQUIRETLS as the message would have (RFC 8689 §5): a failure DSN,
// and the success DSN of a local delivery at DATA.
func TestDSNRequireTLS(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil // the DSN
		}
		return []error{noSuchUser}, nil
	})
	h.run()
	id := h.putMail(smtp.Mail{From: "alice@example.org", Rcpts: []string{"fail@example.com"},
		Params: smtp.Params{RequireTLS: true}})
	h.waitID(id)
	testlib.WaitFor(t, 10*time.Second, "the DSN to go", func() bool { return len(h.q.List()) == 0 })
	calls := h.d.take()
	if len(calls) != 2 || calls[1].from != "" || !calls[1].params.RequireTLS {
		t.Errorf("%d calls (from %q), want the message and its DSN, with REQUIRETLS", len(calls), fromsOf(calls))
	}

	m := smtp.Mail{From: "alice@example.org", Rcpts: []string{"bob@local.test"},
		Params: smtp.Params{RequireTLS: true, Rcpt: []smtp.RcptParams{{Notify: "SUCCESS"}}}}
	id, err := h.q.PutDelivered(context.Background(), m, strings.NewReader("Subject: hi\r\n\r\nbody\r\n"))
	if err != nil || id == "" {
		t.Fatalf("PutDelivered: %q, %v", id, err)
	}
	h.waitID(id)
	calls = h.d.take()
	if len(calls) != 1 || calls[0].from != "" || !calls[0].params.RequireTLS {
		t.Errorf("%d calls (from %q), want the success DSN, with REQUIRETLS", len(calls), fromsOf(calls))
	}
}

// fromsOf returns the sender of each call, and whether it had REQUIRETLS.
func fromsOf(calls []call) []string {
	var l []string
	for _, c := range calls {
		l = append(l, fmt.Sprintf("<%s> requiretls=%v", c.from, c.params.RequireTLS))
	}
	return l
}

// The DSN to a sender whose address is UTF-8 (an SMTPUTF8 message) is
// queued needing SMTPUTF8 (RFC 6531 §3.4): its RCPT and its To: are UTF-8.
func TestDSNUTF8Sender(t *testing.T) {
	h := newHarness(t, testSettings())
	h.run()
	m := smtp.Mail{From: "jörg@example.org", Rcpts: []string{"bob@local.test"},
		Params: smtp.Params{SMTPUTF8: true, Rcpt: []smtp.RcptParams{{Notify: "SUCCESS"}}}}
	id, err := h.q.PutDelivered(context.Background(), m, strings.NewReader("Subject: hi\r\n\r\nbody\r\n"))
	if err != nil || id == "" {
		t.Fatalf("PutDelivered: %q, %v", id, err)
	}
	h.waitID(id)
	calls := h.d.take()
	if len(calls) != 1 || calls[0].from != "" || !calls[0].params.SMTPUTF8 {
		t.Errorf("%d calls %+v, want the success DSN, with SMTPUTF8", len(calls), fromsOf(calls))
	}
}

// The failure DSN of a message that needs SMTPUTF8 is a global one (RFC
// 6533): message/global-delivery-status with message/global-headers (or
// message/global for RET=FULL), its UTF-8 recipient named with the utf-8
// address type, and queued with SMTPUTF8 though its sender is ASCII.
// An ASCII message's DSN stays RFC 3464's, without SMTPUTF8.
func TestDSNGlobal(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil
		}
		return nil, noSuchUser
	})
	h.run()
	utf8Msg := "From: alice@example.org\r\nTo: jörg+x@bücher.example\r\nSubject: Grüße\r\n\r\nHallo\r\n"
	tests := []struct {
		name      string
		m         smtp.Mail
		msg       string
		types     []string
		rcpts     []string
		smtputf8  bool
		wantInOrg string
	}{
		{"utf-8 header and recipient",
			smtp.Mail{From: "alice@example.org", Rcpts: []string{"jörg+x@bücher.example", "bob@example.com"},
				Params: smtp.Params{SMTPUTF8: true}}, utf8Msg,
			[]string{"text/plain", "message/global-delivery-status", "message/global-headers"},
			[]string{`utf-8; jörg\x{2B}x@bücher.example`, "rfc822; bob@example.com"}, true, "Subject: Grüße"},
		{"utf-8 header, RET=FULL",
			smtp.Mail{From: "alice@example.org", Rcpts: []string{"bob@example.com"},
				Params: smtp.Params{SMTPUTF8: true, Ret: "FULL"}}, utf8Msg,
			[]string{"text/plain", "message/global-delivery-status", "message/global"},
			[]string{"rfc822; bob@example.com"}, true, "Hallo"},
		{"ascii",
			smtp.Mail{From: "alice@example.org", Rcpts: []string{"bob@example.com"}}, testMsg("alice@example.org"),
			[]string{"text/plain", "message/delivery-status", "text/rfc822-headers"},
			[]string{"rfc822; bob@example.com"}, false, "Subject: test"},
	}
	for _, tt := range tests {
		id, err := h.q.PutMail(context.Background(), tt.m, strings.NewReader(tt.msg))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		h.waitID(id)
		testlib.WaitFor(t, 10*time.Second, "the DSN to go", func() bool { return len(h.q.List()) == 0 })
		calls := h.d.take()
		var dsns []call
		for _, c := range calls {
			if c.from == "" {
				dsns = append(dsns, c)
			}
		}
		if len(dsns) != 1 {
			t.Fatalf("%s: calls %+v, want the message and one DSN", tt.name, fromsOf(calls))
		}
		d := parseDSN(t, dsns[0].msg)
		if !slices.Equal(d.Types, tt.types) {
			t.Errorf("%s: DSN parts %q, want %q", tt.name, d.Types, tt.types)
		}
		if got := finalRcpts(d); !slices.Equal(got, tt.rcpts) {
			t.Errorf("%s: DSN recipients %q, want %q", tt.name, got, tt.rcpts)
		}
		if dsns[0].params.SMTPUTF8 != tt.smtputf8 {
			t.Errorf("%s: DSN queued with SMTPUTF8 %v, want %v", tt.name, dsns[0].params.SMTPUTF8, tt.smtputf8)
		}
		if !strings.Contains(d.Original, tt.wantInOrg) {
			t.Errorf("%s: original part lacks %q:\n%s", tt.name, tt.wantInOrg, d.Original)
		}
	}
}

// finalRecipient: rfc822 for ASCII addresses and outside a global DSN;
// utf-8 with the unitext form (RFC 6533 §3) for a UTF-8 address in one.
func TestFinalRecipient(t *testing.T) {
	tests := []struct {
		addr   string
		global bool
		want   string
	}{
		{"bob@example.com", false, "rfc822; bob@example.com"},
		{"bob+x=y@example.com", true, "rfc822; bob+x=y@example.com"},
		{"jörg@bücher.example", true, "utf-8; jörg@bücher.example"},
		{`jörg+a=b\c@bücher.example`, true, `utf-8; jörg\x{2B}a\x{3D}b\x{5C}c@bücher.example`},
	}
	for _, tt := range tests {
		if got := finalRecipient(tt.addr, tt.global); got != tt.want {
			t.Errorf("finalRecipient(%q, %v) = %q, want %q", tt.addr, tt.global, got, tt.want)
		}
	}
}
