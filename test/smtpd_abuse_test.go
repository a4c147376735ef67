package test

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSmtpdSmuggling sends each malformed end of data of SMTP smuggling
// (anchors.md §2.1; hannob/smtpsmug's list): none ends the message, the
// smuggled commands never run, and the message is refused once the real
// CRLF.CRLF comes.
func TestSmtpdSmuggling(t *testing.T) {
	d := startMail(t, "maxerrors 100\n")
	r := ehlo(t, d, "127.0.0.5")
	for _, end := range []string{"\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r", "\n.\r"} {
		smuggled := "MAIL FROM:<evil@sender.example>\r\nRCPT TO:<victim@localhost>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
		got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: carrier\r\n\r\nhi"+end+smuggled)
		if !strings.HasPrefix(got, "554 5.6.0 message refused: bare CR or LF") {
			t.Errorf("end %q: got %q", end, got)
		}
		r.Send("NOOP")
		r.Expect("250 2.0.0 Nothing to see here")
	}
	for _, bare := range []string{"Subject: x\nTo: bob\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbo\rdy\r\n"} {
		if got := r.transaction("a@sender.example", []string{"bob@localhost"}, bare); !strings.HasPrefix(got, "554 5.6.0") {
			t.Errorf("%q: got %q", bare, got)
		}
	}
	if m := boxMessages(t, d.Root, "bob"); len(m) != 0 {
		t.Errorf("bob got %q", m)
	}
	if m := boxMessages(t, d.Root, "victim"); len(m) != 0 {
		t.Errorf("the smuggled message was delivered: %q", m)
	}
}

// TestSmtpdLongLines: command lines are bounded (RFC 5321 §4.5.3.1.4
// plus slack), text lines too (§4.5.3.1.6).
func TestSmtpdLongLines(t *testing.T) {
	d := startMail(t, "maxerrors 5\n")
	r := ehlo(t, d, "127.0.0.5")
	r.Send("NOOP " + strings.Repeat("a", 5000))
	r.Expect("500 5.5.2 line too long")
	r.Send("NOOP")
	r.Expect("250 ")
	long := strings.Repeat("b", 1200)
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: x\r\n\r\n"+long+"\r\n"); !strings.HasPrefix(got, "554 5.6.0 message refused: line longer than 1000 octets") {
		t.Errorf("long text line: %q", got)
	}
	r.Write("NOOP " + strings.Repeat("c", 200000) + "\r\n")
	r.Expect("500 5.5.2 line too long")
	if !r.Closed(10 * time.Second) {
		t.Errorf("still open after 200 KB on one line")
	}
}

// TestSmtpdGarbage: NUL, control and 8-bit bytes in commands, and a
// session that keeps erring is closed.
func TestSmtpdGarbage(t *testing.T) {
	d := startMail(t, "maxerrors 4\n")
	r := ehlo(t, d, "127.0.0.5")
	for _, g := range []string{"NOOP\x00", "\x00\x01\x02\x03", "MAIL FROM:<a@b\x7f.example>", "\xff\xfe\xfd"} {
		r.Write(g + "\r\n")
		l := r.Reply()
		if !strings.HasPrefix(l[0], "500 5.5.1 illegal command or bad syntax") {
			t.Errorf("%q: got %q", g, l)
		}
	}
	r.Expect("554 5.5.0 too many errors.  transaction failed.")
	if !r.Closed(10 * time.Second) {
		t.Errorf("still open after too many errors")
	}
}

// TestSmtpdNotSMTP: a client speaking HTTP is cut off at once.
func TestSmtpdNotSMTP(t *testing.T) {
	d := startMail(t, "")
	for _, req := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /x HTTP/1.0\r\n\r\n", "CONNECT a:443 HTTP/1.1\r\n\r\n"} {
		r := dialRaw(t, d.SMTP[0], "127.0.0.5")
		r.Expect("220 ")
		r.Write(req)
		if !r.Closed(10 * time.Second) {
			t.Errorf("%q: still open", req)
		}
	}
}

// TestSmtpdTimeouts: cmdtimeout and datatimeout end idle sessions with
// 421 (RFC 5321 §4.5.3.2).
func TestSmtpdTimeouts(t *testing.T) {
	d := startMail(t, "cmdtimeout 1s\ndatatimeout 1s\n")
	r := dialRaw(t, d.SMTP[0], "127.0.0.5")
	r.Expect("220 ")
	r.Expect("421 4.4.2 ")
	if !r.Closed(10 * time.Second) {
		t.Errorf("still open after the command timeout")
	}
	r = ehlo(t, d, "127.0.0.5")
	r.open("a@sender.example", "bob@localhost")
	r.Send("Subject: half a message")
	r.Expect("421 4.4.2 ")
	if m := boxMessages(t, d.Root, "bob"); len(m) != 0 {
		t.Errorf("a half message was delivered: %q", m)
	}
}

// TestSmtpdIdleCrowd: hundreds of idle sessions do not delay a newcomer,
// who gets its greeting and delivers at once.
func TestSmtpdIdleCrowd(t *testing.T) {
	const crowd = 300
	d := startMail(t, "maxperip 1000\n")
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	for i := range crowd {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", d.SMTP[0], 30*time.Second)
			if err != nil {
				t.Errorf("idle connection %d: %v", i, err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	r := ehlo(t, d, "127.0.0.6")
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: newcomer\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Fatalf("newcomer: %q", got)
	}
	took := time.Since(start)
	t.Logf("with %d idle sessions, a newcomer was greeted and delivered in %v", crowd, took)
	if took > 10*time.Second {
		t.Errorf("the newcomer waited %v", took)
	}
	// The idle ones were greeted too, and are still there.
	buf := make([]byte, 64)
	for i, c := range conns[:10] {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "220 ") {
			t.Errorf("idle connection %d: %q, %v", i, buf[:n], err)
		}
	}
}

// TestSmtpdEvil: -k drops a client at once, with no greeting.
func TestSmtpdEvil(t *testing.T) {
	d := startMail(t, "", "-k", "127.0.0.5", "-k127.0.1.0/24")
	for _, ip := range []string{"127.0.0.5", "127.0.1.9"} {
		c, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP(ip)}, tcpAddr(t, d.SMTP[0]))
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		if n, err := c.Read(buf); n != 0 || err == nil {
			t.Errorf("%s: read %q, %v; want nothing and EOF", ip, buf[:n], err)
		}
		c.Close()
	}
	r := dialRaw(t, d.SMTP[0], "127.0.0.6")
	r.Expect("220 ")
	if strings.Contains(logText(t, d), "127.0.0.5") {
		t.Errorf("the evil connection was logged")
	}
}

func tcpAddr(t *testing.T, s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSmtpdTarpit: with -D, untrusted clients wait before the HELO reply;
// trusted ones do not.
func TestSmtpdTarpit(t *testing.T) {
	d := startMail(t, "tarpitdelay 1s 2s\nournets 127.0.0.1\n", "-D")
	for _, tc := range []struct {
		ip   string
		wait bool
	}{{"127.0.0.5", true}, {"127.0.0.1", false}} {
		r := dialRaw(t, d.SMTP[0], tc.ip)
		r.Expect("220 ")
		start := time.Now()
		r.Send("HELO client.example.net")
		r.Expect("250 ")
		took := time.Since(start)
		if tc.wait && took < time.Second {
			t.Errorf("%s: HELO answered after %v, want at least 1s", tc.ip, took)
		}
		if !tc.wait && took >= time.Second {
			t.Errorf("%s (trusted): HELO answered after %v", tc.ip, took)
		}
		t.Logf("%s: HELO answered after %v", tc.ip, took)
	}
}

// TestSmtpdMaxPerIP: an untrusted address may hold maxperip sessions.
func TestSmtpdMaxPerIP(t *testing.T) {
	d := startMail(t, "maxperip 3\n")
	for range 3 {
		r := dialRaw(t, d.SMTP[0], "127.0.0.7")
		r.Expect("220 ")
	}
	r := dialRaw(t, d.SMTP[0], "127.0.0.7")
	r.Expect("421 4.7.0 ")
	if !r.Closed(10 * time.Second) {
		t.Errorf("the fourth session is open")
	}
	r = dialRaw(t, d.SMTP[0], "127.0.0.8")
	r.Expect("220 ")
}
