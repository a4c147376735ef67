package queue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

var (
	greylisted = smtp.Replyf(451, "4.7.1", "greylisted, try again")
	noSuchUser = smtp.Replyf(550, "5.1.1", "no such user")
)

// A remoteErr is a failure that names the server that gave it.
type remoteErr struct {
	*smtp.Reply
	host string
}

func (e remoteErr) RemoteMTA() string { return e.host }
func (e remoteErr) Unwrap() error     { return e.Reply }

// Temporary failures are retried on the backoff schedule (with its
// jitter), each try logged, until the lifetime is over; then the sender
// gets a DSN saying the delivery time expired, and the message is gone.
func TestBackoffAndExpiry(t *testing.T) {
	s := testSettings()
	s.Backoff = []time.Duration{time.Minute, 10 * time.Minute, time.Hour}
	s.Lifetime = 3 * time.Hour
	s.DelayWarn = 0
	h := newHarness(t, s)
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil // the DSN
		}
		return nil, greylisted
	})
	h.run()
	id := h.put("alice@example.org", "bob@example.com")
	arrived := h.clock.Now()
	for tries := 1; ; tries++ {
		h.waitID(id)
		it, ok := h.item(id)
		if !ok {
			break
		}
		if it.Tries == tries-1 && it.Next.After(h.clock.Now()) {
			// Not a try: the destination was resting after the last
			// failure (for the first backoff step, less its jitter),
			// and the last step, cut short by the lifetime, came
			// before the rest was over. Due again when it is.
			tries--
			h.clock.Advance(it.Next.Sub(h.clock.Now()))
			continue
		}
		back := s.Backoff[min(tries, len(s.Backoff))-1]
		lo, hi := h.clock.Now().Add(back-back/10), h.clock.Now().Add(back+back/10)
		if end := arrived.Add(s.Lifetime); hi.After(end) {
			lo, hi = minTime(lo, end), end
		}
		if it.Tries != tries || it.Next.Before(lo) || it.Next.After(hi) || it.LastErr != greylisted.Error() {
			t.Fatalf("after try %d: %+v; want next in [%v, %v]", tries, it, lo, hi)
		}
		env, err := os.ReadFile(filepath.Join(h.dir, id+".env"))
		if err != nil || !strings.Contains(string(env), "rcpt bob@example.com "+itoa(tries)+" ") {
			t.Fatalf("envelope after try %d: %s %v", tries, env, err)
		}
		h.clock.Advance(it.Next.Sub(h.clock.Now()))
		if tries > 10 {
			t.Fatal("never expired")
		}
	}
	if age := h.clock.Now().Sub(arrived); age < s.Lifetime {
		t.Errorf("bounced after %v, lifetime %v", age, s.Lifetime)
	}
	testlib.WaitFor(t, 10*time.Second, "the DSN to go", func() bool { return len(h.q.List()) == 0 })
	calls := h.d.take()
	dsnCall := calls[len(calls)-1]
	if dsnCall.from != "" || !reflect.DeepEqual(dsnCall.rcpts, []string{"alice@example.org"}) {
		t.Fatalf("last call %+v, want the DSN to alice", dsnCall)
	}
	d := parseDSN(t, dsnCall.msg)
	if d.Recipients[0]["Action"] != "failed" || d.Recipients[0]["Status"] != "4.4.7" ||
		d.Recipients[0]["Diagnostic-Code"] != "smtp; "+greylisted.Error() {
		t.Errorf("DSN recipient fields %v", d.Recipients[0])
	}
	for _, want := range []string{"deferred " + id + " to bob@example.com: 451 4.7.1 greylisted",
		"bounced " + id + " to bob@example.com: expired after 3h0m0s: 451 4.7.1", "done " + id} {
		if !strings.Contains(h.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, h.log)
		}
	}
	if st := h.q.Stats(); st.Deferred < 3 || st.Bounced != 1 || st.DSNs != 1 || st.Delivered != 1 || st.Length != 0 {
		t.Errorf("stats %+v", st)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// parseDSN parses a DSN (testlib.ParseDSN checks its structure) and
// checks what every DSN of the test queue says: from MAILER-DAEMON@mx.test,
// auto-replied, Reporting-MTA mx.test with an Arrival-Date.
func parseDSN(t *testing.T, b []byte) *testlib.DSN {
	t.Helper()
	d := testlib.ParseDSN(t, b)
	if d.Header.Get("From") != "Mail Delivery System <MAILER-DAEMON@mx.test>" || d.Header.Get("Auto-Submitted") != "auto-replied" {
		t.Errorf("DSN header %v", d.Header)
	}
	if d.PerMessage["Reporting-MTA"] != "dns; mx.test" || d.PerMessage["Arrival-Date"] == "" {
		t.Errorf("per-message fields %v", d.PerMessage)
	}
	return d
}

// A permanent failure bounces at once with a DSN quoting the reply, the
// server that gave it, and the original header; the null sender never
// gets one.
func TestBounce(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" && c.rcpts[0] == "alice@example.org" {
			return nil, nil
		}
		errs := make([]error, len(c.rcpts))
		for i, r := range c.rcpts {
			if strings.HasPrefix(r, "bad") {
				errs[i] = remoteErr{noSuchUser, "mx1.example.com"}
			}
		}
		return errs, nil
	})
	h.run()
	id := h.put("alice@example.org", "bob@example.com", "bad1@example.com", "bad2@example.net")
	if ids := h.wait(2); !slices.Contains(ids, id) { // the message and the DSN
		t.Fatalf("finished %q", ids)
	}
	if _, ok := h.item(id); ok {
		t.Errorf("%s still queued", id)
	}
	calls := h.d.take()
	dsnCall := calls[len(calls)-1]
	d := parseDSN(t, dsnCall.msg)
	if d.Header.Get("To") != "<alice@example.org>" || !strings.Contains(d.Header.Get("Subject"), "Undelivered") {
		t.Errorf("DSN header %v", d.Header)
	}
	var got []string
	for _, r := range d.Recipients {
		got = append(got, r["Final-Recipient"])
		if r["Action"] != "failed" || r["Status"] != "5.1.1" || r["Remote-MTA"] != "dns; mx1.example.com" ||
			r["Diagnostic-Code"] != "smtp; 550 5.1.1 no such user" || r["Last-Attempt-Date"] == "" {
			t.Errorf("recipient fields %v", r)
		}
	}
	if want := []string{"rfc822; bad1@example.com", "rfc822; bad2@example.net"}; !reflect.DeepEqual(sorted(got), want) {
		t.Errorf("DSN recipients %q, want %q", got, want)
	}
	if !strings.Contains(d.Human, "550 5.1.1 no such user") || !strings.Contains(d.Human, "<bad1@example.com>") {
		t.Errorf("human part does not quote the reply:\n%s", d.Human)
	}
	if want := "From: alice@example.org\nSubject: test\nMessage-ID: <x@test>\n"; d.Original != want {
		t.Errorf("original header %q, want %q", d.Original, want)
	}

	// A message from <> that fails is dropped without a DSN.
	id = h.put("", "bad3@example.com")
	if got := h.wait(1); got[0] != id {
		t.Fatalf("finished %q", got)
	}
	if calls := h.d.take(); len(calls) != 1 {
		t.Errorf("calls after a bounce of <>: %+v", calls)
	}
	if !strings.Contains(h.log.String(), "no dsn for "+id+": the sender is <>") {
		t.Errorf("log:\n%s", h.log)
	}
	if st := h.q.Stats(); st.Length != 0 || st.DSNs != 1 || st.Bounced != 3 || st.Delivered != 2 {
		t.Errorf("stats %+v", st)
	}
}

// After DelayWarn, the first deferral also sends one DSN with Action:
// delayed, and only one.
func TestDelayWarning(t *testing.T) {
	s := testSettings()
	s.Backoff = []time.Duration{time.Hour}
	s.DelayWarn = 90 * time.Minute
	h := newHarness(t, s)
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil
		}
		return nil, greylisted
	})
	h.run()
	id := h.put("alice@example.org", "bob@example.com")
	for range 4 {
		h.waitID(id)
		it, _ := h.item(id)
		h.clock.Advance(it.Next.Sub(h.clock.Now()))
	}
	h.waitID(id)
	testlib.WaitFor(t, 10*time.Second, "the warning to go", func() bool { return len(h.q.List()) == 1 })
	var warnings []call
	for _, c := range h.d.take() {
		if c.from == "" {
			warnings = append(warnings, c)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("%d warnings, want 1", len(warnings))
	}
	d := parseDSN(t, warnings[0].msg)
	r := d.Recipients[0]
	if r["Action"] != "delayed" || r["Status"] != "4.7.1" || r["Will-Retry-Until"] == "" || !strings.Contains(d.Human, "keep trying") {
		t.Errorf("warning: %v\n%s", r, d.Human)
	}
	if env, _ := os.ReadFile(filepath.Join(h.dir, id+".env")); !bytes.Contains(env, []byte("\nwarned\n")) {
		t.Errorf("envelope does not say warned:\n%s", env)
	}
}

// Recipients are grouped by destination: one session per domain with
// all its recipients (at most 100), local ones delivered locally, and
// with a smarthost everything goes there in one session.
func TestGrouping(t *testing.T) {
	many := make([]string, 150)
	for i := range many {
		many[i] = "u" + itoa(i%10) + strings.Repeat("x", i/10) + "@big.example"
	}
	tests := []struct {
		name      string
		smarthost string
		rcpts     []string
		want      map[string][]int // dest → session sizes
		local     []string
	}{
		{"domains", "", []string{"a@one.example", "b@two.example", "c@ONE.example", "d@[192.0.2.1]", "e@[IPv6:2001:db8::1]", "f@local.test"},
			map[string][]int{"one.example": {2}, "two.example": {1}, "[192.0.2.1]": {1}, "[IPv6:2001:db8::1]": {1}}, []string{"f"}},
		{"split", "", many, map[string][]int{"big.example": {100, 50}}, nil},
		{"smarthost", "tcp!relay.example!587", []string{"a@one.example", "b@two.example", "f@local.test"},
			map[string][]int{"tcp!relay.example!587": {2}}, []string{"f"}},
	}
	for _, tt := range tests {
		s := testSettings()
		s.SmartHost = tt.smarthost
		h := newHarness(t, s)
		h.run()
		h.put("alice@example.org", tt.rcpts...)
		h.wait(1)
		got := map[string][]int{}
		var all []string
		for _, c := range h.d.take() {
			got[c.dest] = append(got[c.dest], len(c.rcpts))
			all = append(all, c.rcpts...)
		}
		for _, v := range got {
			slices.Sort(v)
			slices.Reverse(v)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: sessions %v, want %v", tt.name, got, tt.want)
		}
		for _, u := range tt.local {
			if n := len(h.local.messages(u)); n != 1 {
				t.Errorf("%s: %d local messages for %s", tt.name, n, u)
			}
		}
		if len(all)+len(tt.local) != len(tt.rcpts) {
			t.Errorf("%s: %d recipients delivered, want %d", tt.name, len(all)+len(tt.local), len(tt.rcpts))
		}
		h.halt()
	}
}

// Local recipients go to the Local deliverer; so does the bounce of a
// message from a local sender; an address without a domain bounces.
func TestLocal(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) { return nil, noSuchUser })
	h.run()
	h.put("glenda@local.test", "rob@local.test", "ken@local.test", "nobody@example.com", "nodomain")
	h.wait(2)
	for _, u := range []string{"rob", "ken"} {
		if m := h.local.messages(u); len(m) != 1 || string(m[0]) != testMsg("glenda@local.test") {
			t.Errorf("%s got %q", u, m)
		}
	}
	m := h.local.messages("glenda")
	if len(m) != 1 {
		t.Fatalf("glenda got %d bounces, want 1", len(m))
	}
	d := parseDSN(t, m[0])
	var got []string
	for _, r := range d.Recipients {
		got = append(got, r["Final-Recipient"]+" "+r["Status"])
	}
	if want := []string{"rfc822; nobody@example.com 5.1.1", "rfc822; nodomain 5.1.3"}; !reflect.DeepEqual(sorted(got), want) {
		t.Errorf("bounced %q, want %q", got, want)
	}

	// A failing Local defers, as any temporary failure.
	h.local.mu.Lock()
	h.local.fail = errors.New("disk full")
	h.local.mu.Unlock()
	id := h.put("glenda@local.test", "rob@local.test")
	h.wait(1)
	if it, _ := h.item(id); it.Tries != 1 || it.LastErr != "disk full" {
		t.Errorf("after a local failure: %+v", it)
	}
}

// A destination that failed as a whole is left alone by the other
// messages until its first backoff has passed, or a kick.
func TestDownDestination(t *testing.T) {
	s := testSettings()
	s.Deliveries = 1
	h := newHarness(t, s)
	down := errors.New("dial tcp: connection refused")
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.dest == "down.example" {
			return nil, down
		}
		return nil, nil
	})
	a := h.put("alice@example.org", "bob@down.example")
	b := h.put("alice@example.org", "carol@down.example", "dave@up.example")
	h.run()
	h.wait(2)
	calls := h.d.take()
	if len(calls) != 2 || calls[0].dest != "down.example" || calls[1].dest != "up.example" {
		t.Fatalf("calls %+v, want one to down.example, then up.example only", calls)
	}
	ia, _ := h.item(a)
	ib, _ := h.item(b)
	if ia.Tries != 1 || ib.Tries != 0 || !reflect.DeepEqual(ib.Rcpts, []string{"carol@down.example"}) || ib.Next.Before(h.clock.Now().Add(s.Backoff[0]-s.Backoff[0]/10)) {
		t.Errorf("after the failure: %+v, %+v", ia, ib)
	}
	// Kicked, the first message fails again, and the second is skipped.
	h.q.Kick()
	h.wait(2)
	if calls := h.d.take(); len(calls) != 1 {
		t.Errorf("after a kick, %d calls, want 1", len(calls))
	}
	// Once the destination is back, a kick delivers both.
	h.d.setResult(nil)
	h.q.Kick()
	h.wait(2)
	if calls := h.d.take(); len(calls) != 2 || len(h.q.List()) != 0 {
		t.Errorf("after the second kick, calls %+v, queue %+v", calls, h.q.List())
	}
	if !strings.Contains(h.log.String(), "kick") {
		t.Errorf("log:\n%s", h.log)
	}
}

// Retry brings a deferred (or held) message forward; Kick leaves held
// messages alone.
func TestRetryKickHold(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) { return nil, greylisted })
	h.run()
	a := h.put("alice@example.org", "bob@one.example")
	b := h.put("alice@example.org", "carol@two.example")
	h.wait(2)
	h.d.take()
	if err := h.q.Hold(b); err != nil {
		t.Fatal(err)
	}
	h.q.Kick()
	if got := h.wait(1); got[0] != a {
		t.Errorf("kick ran %q, want %s only", got, a)
	}
	if err := h.q.Retry(b); err != nil {
		t.Fatal(err)
	}
	if got := h.wait(1); got[0] != b {
		t.Errorf("retry ran %q, want %s", got, b)
	}
	if it, _ := h.item(b); it.Held || it.Tries != 2 {
		t.Errorf("after retry: %+v", it)
	}
	if calls := h.d.take(); len(calls) != 2 {
		t.Errorf("%d calls, want 2", len(calls))
	}
}

// Delete cancels an attempt under way; nothing is bounced, nothing
// remains.
func TestDeleteActive(t *testing.T) {
	h := newHarness(t, testSettings())
	started := make(chan struct{})
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	h.run()
	id := h.put("alice@example.org", "bob@example.com")
	<-started
	if it, _ := h.item(id); !it.Active {
		t.Errorf("not active during its attempt: %+v", it)
	}
	if err := h.q.Delete(id); err != nil {
		t.Fatal(err)
	}
	h.wait(1)
	if left := files(t, h.dir); len(left) != 0 {
		t.Errorf("left: %q", left)
	}
	if n := len(h.d.take()); n != 1 {
		t.Errorf("%d calls, want 1 (no bounce)", n)
	}
}

// Stopping the runner abandons attempts under way: the message stays
// as it was, tries unchanged, and a new runner delivers it.
func TestShutdown(t *testing.T) {
	h := newHarness(t, testSettings())
	started := make(chan struct{}, 1)
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	h.run()
	id := h.put("alice@example.org", "bob@example.com")
	<-started
	h.halt() // returns only after the attempt has ended
	h.wait(1)
	it, ok := h.item(id)
	if !ok || it.Tries != 0 || it.Active || it.LastErr != "" {
		t.Fatalf("after shutdown: %+v %v", it, ok)
	}
	h.q.Close()
	h.open(testSettings())
	h.d.setResult(nil)
	h.run()
	h.wait(1)
	if _, ok := h.item(id); ok {
		t.Errorf("%s not delivered after restart; log:\n%s", id, h.log)
	}
}

// Whatever the deliverer says about recipients must add up; else the
// attempt counts as a temporary failure for all.
func TestDelivererMiscount(t *testing.T) {
	h := newHarness(t, testSettings())
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) { return []error{nil}, nil })
	h.run()
	id := h.put("alice@example.org", "a@example.com", "b@example.com")
	h.wait(1)
	if it, _ := h.item(id); len(it.Rcpts) != 2 || it.Tries != 1 || !strings.Contains(it.LastErr, "1 results for 2") {
		t.Errorf("after a miscount: %+v", it)
	}
}

// An address literal goes to the client in its canonical form (the one
// smtp.AddressLiteral gives); a malformed one is a permanent failure.
func TestRouteLiteral(t *testing.T) {
	tests := []struct{ addr, dest string }{
		{"a@[192.0.2.1]", "[192.0.2.1]"},
		{"a@[IPv6:2001:DB8::1]", "[IPv6:2001:db8::1]"},
		{"a@[ipv6:::ffff:192.0.2.1]", "[192.0.2.1]"},
		{"a@[192.0.2.1].", "[192.0.2.1]"},
		{"a@[192.0.2.1", ""},
		{"a@[300.0.2.1]", ""},
		{"a@[fe80::1%eth0]", ""},
		{"a@[example.org]", ""},
	}
	for _, tt := range tests {
		dest, _, err := Settings{}.route(tt.addr)
		if dest != tt.dest || (err != nil) != (tt.dest == "") {
			t.Errorf("route(%q) = %q, %v; want %q", tt.addr, dest, err, tt.dest)
		}
		if err != nil && smtp.IsTemporary(err) {
			t.Errorf("route(%q): temporary failure %v", tt.addr, err)
		}
	}
}

// A destination's rest is forgotten once over: the map of resting
// destinations holds those that failed lately, not every domain that ever
// failed in the daemon's life.
func TestRestForgotten(t *testing.T) {
	h := newHarness(t, testSettings())
	q := h.q
	now := h.clock.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range 1000 {
		at := now.Add(time.Duration(i) * time.Minute)
		q.rest("d"+itoa(i)+".example", at.Add(5*time.Minute), at)
	}
	// Resting at the last call: those that failed in its last 5 minutes.
	if len(q.down) > 6 {
		t.Errorf("%d destinations resting, want at most 6: %v", len(q.down), q.down)
	}
	if until, ok := q.down["d999.example"]; !ok || !until.Equal(now.Add(1004*time.Minute)) {
		t.Errorf("the last destination rests until %v, %v", until, ok)
	}
}

// A message's parameters reach the next hop with it: RET, ENVID,
// REQUIRETLS and SMTPUTF8 as given, and each recipient's NOTIFY and ORCPT
// beside that recipient, whatever job it falls in.
func TestParamsReachDeliverer(t *testing.T) {
	h := newHarness(t, Settings{})
	h.run()
	m := smtp.Mail{From: "alice@example.org",
		Rcpts: []string{"bob@one.example", "carol@two.example", "bob@one.example", "dave@one.example"},
		Params: smtp.Params{Ret: "HDRS", EnvID: "env-1", RequireTLS: true, SMTPUTF8: true,
			Rcpt: []smtp.RcptParams{{Notify: "SUCCESS"}, {Notify: "NEVER", ORcpt: "rfc822;carol@two.example"}, {Notify: "FAILURE"}}}}
	id, err := h.q.PutMail(context.Background(), m, strings.NewReader(testMsg(m.From)))
	if err != nil {
		t.Fatal(err)
	}
	h.waitID(id)
	got := map[string]smtp.RcptParams{}
	for _, c := range h.d.take() {
		if c.from == "" {
			continue // bob's success DSN (relayed), if it went already
		}
		if c.params.Ret != "HDRS" || c.params.EnvID != "env-1" || !c.params.RequireTLS || !c.params.SMTPUTF8 {
			t.Errorf("%s: params %+v", c.dest, c.params)
		}
		if len(c.params.Rcpt) != len(c.rcpts) {
			t.Fatalf("%s: %d recipients, %d parameter sets", c.dest, len(c.rcpts), len(c.params.Rcpt))
		}
		for i, r := range c.rcpts {
			got[r] = c.params.Rcpt[i]
		}
	}
	want := map[string]smtp.RcptParams{
		"bob@one.example":   {Notify: "SUCCESS"}, // the first mention's
		"carol@two.example": {Notify: "NEVER", ORcpt: "rfc822;carol@two.example"},
		"dave@one.example":  {},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("recipients' parameters: %+v, want %+v", got, want)
	}
}

// PutMail refuses parameters the queue could not keep.
func TestPutMailRefusesBadParams(t *testing.T) {
	h := newHarness(t, Settings{})
	for _, p := range []smtp.Params{
		{Ret: "ALL"},
		{EnvID: strings.Repeat("e", 101)},
		{EnvID: "tab\there"},
		{Rcpt: []smtp.RcptParams{{Notify: "NEVER,FAILURE"}}},
		{Rcpt: []smtp.RcptParams{{ORcpt: "no-type"}}},
		{Rcpt: []smtp.RcptParams{{ORcpt: "rfc822;" + strings.Repeat("a", 500)}}},
	} {
		m := smtp.Mail{From: "alice@example.org", Rcpts: []string{"bob@example.com"}, Params: p}
		if id, err := h.q.PutMail(context.Background(), m, strings.NewReader(testMsg(m.From))); err == nil {
			t.Errorf("PutMail with %+v queued %s", p, id)
		}
	}
}

// A U-label domain (an SMTPUTF8 address) is routed by its A-label; one
// that is not valid IDNA is a permanent failure.
func TestRouteULabel(t *testing.T) {
	tests := []struct{ addr, dest string }{
		{"jörg@bücher.example", "xn--bcher-kva.example"},
		{"bob@BÜCHER.Example.", "xn--bcher-kva.example"},
		{"bob@a\u2215b.example", ""},
	}
	for _, tt := range tests {
		dest, _, err := Settings{}.route(tt.addr)
		if dest != tt.dest || (err != nil) != (tt.dest == "") {
			t.Errorf("route(%q) = %q, %v; want %q", tt.addr, dest, err, tt.dest)
		}
		if err != nil && smtp.IsTemporary(err) {
			t.Errorf("route(%q): temporary failure %v", tt.addr, err)
		}
	}
}
