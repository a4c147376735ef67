package testlib

import (
	"crypto/tls"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	mysmtp "smtpfs/smtp"
)

func TestDNS(t *testing.T) {
	d := NewDNS(t, `
example.org. 60 IN MX 10 mx.example.org.
mx.example.org. A 127.0.0.2
mx.example.org. AAAA ::1
nullmx.example. MX 0 .
broken.example SERVFAIL
`)
	c := new(dns.Client)
	ask := func(name string, qt uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		r, _, err := c.Exchange(m, d.Addr)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := ask("example.org.", dns.TypeMX); len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "mx.example.org." {
		t.Errorf("MX: %v", r)
	}
	if r := ask("MX.example.org.", dns.TypeAAAA); len(r.Answer) != 1 {
		t.Errorf("AAAA: %v", r)
	}
	if r := ask("mx.example.org.", dns.TypeMX); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("NODATA: %v", r)
	}
	if r := ask("nosuch.example.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("NXDOMAIN: %v", r)
	}
	if r := ask("broken.example.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("SERVFAIL: %v", r)
	}
	if d.Queries.Load() != 5 {
		t.Errorf("queries = %d", d.Queries.Load())
	}
}

func TestSink(t *testing.T) {
	cert := NewCert(t, t.TempDir())
	s := NewSink(t, SinkOptions{TLS: cert.ServerConfig(), Users: map[string]string{"alice": "secret"}})
	s.SetReply(func(phase, arg string) *mysmtp.Reply {
		if phase == "RCPT" && strings.Contains(arg, "nobody") {
			return mysmtp.Replyf(550, "5.1.1", "no such user")
		}
		return nil
	})
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(&tls.Config{ServerName: "localhost", RootCAs: cert.Pool()}); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", "alice", "secret", "localhost")); err != nil {
		t.Fatal(err)
	}
	c.Mail("a@example.org")
	if err := c.Rcpt("nobody@example.org"); err == nil || !strings.HasPrefix(err.Error(), "550") {
		t.Errorf("rcpt nobody: %v", err)
	}
	c.Rcpt("bob@example.org")
	w, _ := c.Data()
	w.Write([]byte("Subject: x\n\n.dot\nbody\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	m := s.Wait(t, 1, 5*time.Second)[0]
	if m.From != "a@example.org" || len(m.Rcpts) != 1 || m.Rcpts[0] != "bob@example.org" || !m.TLS || m.User != "alice" ||
		string(m.Data) != "Subject: x\r\n\r\n.dot\r\nbody\r\n" {
		t.Errorf("message = %+v %q", m, m.Data)
	}
	cmds := s.Sessions()[0]
	if cmds[0] != "EHLO localhost" || !contains(cmds, "AUTH PLAIN") || contains(cmds, "AUTH PLAIN AGFsaWNlAHNlY3JldA==") {
		t.Errorf("commands = %q", cmds)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestRedis: the private redis-server answers, dies when killed, and
// comes back on the same address, empty.
func TestRedis(t *testing.T) {
	r := NewRedis(t)
	if got, err := r.Do("SET", "k", "v"); got != "+OK" || err != nil {
		t.Fatalf("SET: %q, %v", got, err)
	}
	r.Kill()
	if _, err := r.Do("PING"); err == nil {
		t.Errorf("PING after Kill: no error")
	}
	r.Restart()
	if got, err := r.Do("EXISTS", "k"); got != ":0" || err != nil {
		t.Errorf("EXISTS after Restart: %q, %v", got, err)
	}
}
