package queue

import (
	"context"
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
