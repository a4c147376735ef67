package smtp_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// commands returns the sink's sessions' command lines, each session's
// joined by "|".
func commands(s *testlib.Sink) []string {
	var out []string
	for _, c := range s.Sessions() {
		out = append(out, strings.Join(c, "|"))
	}
	return out
}

func openConn(t *testing.T, c *smtp.Client, dest string) *smtp.Conn {
	t.Helper()
	cn, err := c.Open(context.Background(), dest, smtp.Mail{})
	if err != nil {
		t.Fatalf("Open %s: %v", dest, err)
	}
	t.Cleanup(func() { cn.Close() })
	return cn
}

func sendOn(t *testing.T, cn *smtp.Conn, from string, rcpts ...string) ([]error, error) {
	t.Helper()
	return cn.Send(context.Background(), smtp.Mail{From: from, Rcpts: rcpts}, strings.NewReader(testMsg))
}

// Several messages go over one connection, without RSET between
// transactions that ended with the reply to the dot, with or without
// PIPELINING, and never pipelined to a server that does not offer it.
func TestConnCarriesMessages(t *testing.T) {
	for _, nopipe := range []bool{false, true} {
		c, s := setup(t, testlib.SinkOptions{NoPipelining: nopipe})
		cn := openConn(t, c, "single.example")
		for i := range 5 {
			errs, err := sendOn(t, cn, "alice@example.net", "bob@single.example", "carol@single.example")
			if err != nil || errs[0] != nil || errs[1] != nil {
				t.Fatalf("nopipe %v: message %d: %v %v", nopipe, i, errs, err)
			}
		}
		if !cn.Usable() || cn.Messages() != 5 {
			t.Errorf("nopipe %v: usable %v after %d messages, want true after 5", nopipe, cn.Usable(), cn.Messages())
		}
		cn.Close()
		if n := len(s.Messages()); n != 5 {
			t.Errorf("nopipe %v: sink got %d messages, want 5", nopipe, n)
		}
		sess := commands(s)
		if len(sess) != 1 {
			t.Fatalf("nopipe %v: %d connections, want 1: %q", nopipe, len(sess), sess)
		}
		want := "EHLO client.example.net|" + strings.Repeat("MAIL FROM:<alice@example.net> SIZE=71 BODY=8BITMIME|RCPT TO:<bob@single.example>|RCPT TO:<carol@single.example>|DATA|", 5) + "QUIT"
		if sess[0] != want {
			t.Errorf("nopipe %v: commands\n%s\nwant\n%s", nopipe, sess[0], want)
		}
	}
}

// A transaction that did not end (every recipient refused) is reset
// before the next MAIL; the session goes on.
func TestConnResetsUnendedTransaction(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	s.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" && strings.Contains(arg, "nobody@") {
			return smtp.Replyf(550, "5.1.1", "no such user")
		}
		return nil
	})
	cn := openConn(t, c, "single.example")
	if errs, err := sendOn(t, cn, "a@example.net", "nobody@single.example"); err != nil || errs[0] == nil {
		t.Fatalf("refused recipient: %v %v", errs, err)
	}
	if errs, err := sendOn(t, cn, "a@example.net", "bob@single.example"); err != nil || errs[0] != nil {
		t.Fatalf("second message: %v %v", errs, err)
	}
	cn.Close()
	sess := commands(s)
	want := "EHLO client.example.net|MAIL FROM:<a@example.net> SIZE=71 BODY=8BITMIME|RCPT TO:<nobody@single.example>|" +
		"RSET|MAIL FROM:<a@example.net> SIZE=71 BODY=8BITMIME|RCPT TO:<bob@single.example>|DATA|QUIT"
	if len(sess) != 1 || sess[0] != want {
		t.Errorf("commands %q\nwant %q", sess, want)
	}
}

// A server that drops the connection after the 250 to the third message:
// the fourth goes on a new connection, every message arrives once.
func TestConnDroppedAfterMessage(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	var mu sync.Mutex
	mails := 0
	s.SetReply(func(phase, arg string) *smtp.Reply {
		mu.Lock()
		defer mu.Unlock()
		if phase == "MAIL" {
			if mails++; mails == 4 {
				return testlib.Hangup
			}
		}
		return nil
	})
	cn := openConn(t, c, "single.example")
	for i := range 5 {
		if errs, err := sendOn(t, cn, "a@example.net", "bob@single.example"); err != nil || errs[0] != nil {
			t.Fatalf("message %d: %v %v", i, errs, err)
		}
	}
	cn.Close()
	if n := len(s.Messages()); n != 5 {
		t.Errorf("sink got %d messages, want 5", n)
	}
	if n := len(s.Sessions()); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// A connection lost after DATA is not tried again by the Conn: the
// message may have been taken. The next message gets a new connection.
func TestConnDroppedInData(t *testing.T) {
	c, s := setup(t, testlib.SinkOptions{})
	var mu sync.Mutex
	dots := 0
	s.SetReply(func(phase, arg string) *smtp.Reply {
		mu.Lock()
		defer mu.Unlock()
		if phase == "." {
			if dots++; dots == 2 {
				return testlib.Hangup
			}
		}
		return nil
	})
	cn := openConn(t, c, "single.example")
	if _, err := sendOn(t, cn, "a@example.net", "bob@single.example"); err != nil {
		t.Fatal(err)
	}
	_, err := sendOn(t, cn, "a@example.net", "bob@single.example")
	if got := phaseOf(err); got != "data temporary" {
		t.Fatalf("message lost in DATA: %q (%v), want data temporary", got, err)
	}
	if cn.Usable() {
		t.Error("Conn usable after its connection was lost")
	}
	if _, err := sendOn(t, cn, "a@example.net", "bob@single.example"); err != nil {
		t.Fatalf("after the loss: %v", err)
	}
	if n, m := len(s.Sessions()), len(s.Messages()); n != 2 || m != 2 {
		t.Errorf("%d connections, %d messages; want 2, 2", n, m)
	}
}

// Open fails as Deliver would when no host answers; CanCarry keeps a
// REQUIRETLS message off a session without verified TLS.
func TestConnOpenAndCarry(t *testing.T) {
	c, _ := setup(t, testlib.SinkOptions{})
	if _, err := c.Open(context.Background(), "gone.example", smtp.Mail{}); phaseOf(err) != "dns permanent" {
		t.Errorf("Open gone.example: %v, want a permanent dns failure", err)
	}
	if _, err := c.Open(context.Background(), "net!x!y", smtp.Mail{}); phaseOf(err) != "dial permanent" {
		t.Errorf("Open of a bad dial string: %v", err)
	}
	cn := openConn(t, c, "example.org") // mx1 does not answer; mx2 does
	if !cn.CanCarry(smtp.Mail{From: "a@example.net"}) {
		t.Error("a plain message cannot be carried")
	}
	if cn.CanCarry(smtp.Mail{From: "a@example.net", Params: smtp.Params{RequireTLS: true}}) {
		t.Error("a REQUIRETLS message may go over plaintext")
	}
}
