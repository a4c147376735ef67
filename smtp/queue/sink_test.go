package queue

import (
	"context"
	"errors"
	"io"
	netsmtp "net/smtp"
	"net/textproto"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// A netDeliverer is a small Deliverer on net/smtp, standing in for the
// client engine: every domain's MX is the sink; a dial string with a port
// (the smarthost) is dialled as it says.
type netDeliverer struct {
	mx    string // host:port of the sink
	mu    sync.Mutex
	dests []string
}

func (d *netDeliverer) Send(ctx context.Context, dest string, m smtp.Mail, msg io.Reader) ([]error, error) {
	from, rcpts := m.From, m.Rcpts
	d.mu.Lock()
	d.dests = append(d.dests, dest)
	d.mu.Unlock()
	addr := d.mx
	if ds, err := smtp.ParseDialString(dest); err == nil && ds.Port != "" {
		addr = ds.Address("25")
	}
	c, err := netsmtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Hello("queue.test"); err != nil {
		return nil, asReply(err)
	}
	if err := c.Mail(from); err != nil {
		return nil, asReply(err)
	}
	errs, ok := make([]error, len(rcpts)), 0
	for i, r := range rcpts {
		if errs[i] = asReply(c.Rcpt(r)); errs[i] == nil {
			ok++
		}
	}
	if ok == 0 {
		return errs, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, asReply(err)
	}
	if _, err := io.Copy(w, msg); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, asReply(err)
	}
	c.Quit()
	return errs, nil
}

var enhanced = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3} `)

// asReply turns net/smtp's error for a reply into an smtp.Reply.
func asReply(err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err
	}
	r := &smtp.Reply{Code: te.Code, Lines: []string{te.Msg}}
	if m := enhanced.FindString(te.Msg); m != "" {
		r.Enh, r.Lines[0] = strings.TrimSpace(m), te.Msg[len(m):]
	}
	return r
}

// newSinkHarness is a harness whose deliverer speaks SMTP to a sink.
func newSinkHarness(t *testing.T, s Settings) (*harness, *testlib.Sink, *netDeliverer) {
	sink := testlib.NewSink(t, testlib.SinkOptions{})
	h := newHarness(t, s)
	nd := &netDeliverer{mx: sink.Addr}
	h.q.deliver = nd
	h.run()
	return h, sink, nd
}

func TestSinkDelivery(t *testing.T) {
	h, sink, _ := newSinkHarness(t, testSettings())
	id := h.put("alice@example.org", "bob@example.com", "carol@example.com")
	msgs := sink.Wait(t, 1, 10*time.Second)
	h.waitID(id)
	m := msgs[0]
	if m.From != "alice@example.org" || !reflect.DeepEqual(m.Rcpts, []string{"bob@example.com", "carol@example.com"}) ||
		string(m.Data) != testMsg("alice@example.org") {
		t.Errorf("sink got %+v", m)
	}
	if n := len(h.q.List()); n != 0 {
		t.Errorf("%d messages left", n)
	}
	if !strings.Contains(h.log.String(), "sent "+id+" to carol@example.com via example.com") {
		t.Errorf("log:\n%s", h.log)
	}
}

// A 451 defers; the next attempt, at the backoff, delivers.
func TestSinkRetry(t *testing.T) {
	h, sink, _ := newSinkHarness(t, testSettings())
	var mu sync.Mutex
	first := true
	sink.SetReply(func(phase, arg string) *smtp.Reply {
		mu.Lock()
		defer mu.Unlock()
		if phase == "RCPT" && first {
			first = false
			return smtp.Replyf(451, "4.7.1", "greylisted, come back later")
		}
		return nil
	})
	id := h.put("alice@example.org", "bob@example.com")
	h.waitID(id)
	it, ok := h.item(id)
	if !ok || it.Tries != 1 || it.LastErr != "451 4.7.1 greylisted, come back later" {
		t.Fatalf("after the 451: %+v", it)
	}
	if n := len(sink.Messages()); n != 0 {
		t.Fatalf("sink has %d messages after a 451", n)
	}
	h.clock.Advance(it.Next.Sub(h.clock.Now()))
	h.waitID(id)
	if msgs := sink.Wait(t, 1, 10*time.Second); msgs[0].Rcpts[0] != "bob@example.com" {
		t.Errorf("sink got %+v", msgs[0])
	}
	if _, ok := h.item(id); ok {
		t.Errorf("%s still queued", id)
	}
}

// One recipient refused with 550, the other accepted: the message goes
// to the one, and the sender gets a DSN quoting the sink's reply.
func TestSinkPartialBounce(t *testing.T) {
	h, sink, _ := newSinkHarness(t, testSettings())
	sink.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" && strings.Contains(arg, "nobody@") {
			return smtp.Replyf(550, "5.1.1", "mailbox nobody unavailable")
		}
		return nil
	})
	id := h.put("alice@example.org", "bob@example.com", "nobody@example.com")
	msgs := sink.Wait(t, 2, 10*time.Second) // the message, then the DSN
	h.waitID(id)
	if !reflect.DeepEqual(msgs[0].Rcpts, []string{"bob@example.com"}) {
		t.Errorf("first message to %q", msgs[0].Rcpts)
	}
	dsnMsg := msgs[1]
	if dsnMsg.From != "" || !reflect.DeepEqual(dsnMsg.Rcpts, []string{"alice@example.org"}) {
		t.Fatalf("second message from %q to %q, want the DSN from <> to alice", dsnMsg.From, dsnMsg.Rcpts)
	}
	d := parseDSN(t, dsnMsg.Data)
	if len(d.Recipients) != 1 {
		t.Fatalf("DSN about %d recipients", len(d.Recipients))
	}
	r := d.Recipients[0]
	if r["Final-Recipient"] != "rfc822; nobody@example.com" || r["Action"] != "failed" || r["Status"] != "5.1.1" ||
		r["Diagnostic-Code"] != "smtp; 550 5.1.1 mailbox nobody unavailable" {
		t.Errorf("DSN fields %v", r)
	}
	if !strings.Contains(d.Human, "550 5.1.1 mailbox nobody unavailable") || !strings.Contains(d.Original, "Subject: test") {
		t.Errorf("DSN human part:\n%s\noriginal header:\n%s", d.Human, d.Original)
	}
}

// With a smarthost, all recipients of all domains go there, in one session.
func TestSinkSmarthost(t *testing.T) {
	sink := testlib.NewSink(t, testlib.SinkOptions{})
	s := testSettings()
	s.SmartHost = "tcp!127.0.0.1!" + sink.Port()
	h := newHarness(t, s)
	nd := &netDeliverer{mx: "127.0.0.1:1"} // no MX works: only the smarthost does
	h.q.deliver = nd
	h.run()
	id := h.put("alice@example.org", "bob@one.example", "carol@two.example")
	msgs := sink.Wait(t, 1, 10*time.Second)
	h.waitID(id)
	if !reflect.DeepEqual(msgs[0].Rcpts, []string{"bob@one.example", "carol@two.example"}) {
		t.Errorf("smarthost got %q", msgs[0].Rcpts)
	}
	if len(sink.Sessions()) != 1 || !reflect.DeepEqual(nd.dests, []string{s.SmartHost}) {
		t.Errorf("sessions %q, dests %q", sink.Sessions(), nd.dests)
	}
}
