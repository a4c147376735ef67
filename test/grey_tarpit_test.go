package test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestGreyTarpit: with -D, untrusted clients wait tarpitdelay's normal
// delay before the HELO reply, and the long one before each command after
// a refused one (upas's 8 s, 16 s, ... capped at the long delay), but not
// before QUIT; a trusted client never waits; and the waits are timers in
// each session, so ten clients tarpitted at once all wait the normal
// delay, not ten times it, and a trusted client delivers a whole message
// while they wait.
//
// The long delay for the class-A networks of the man page (58, 66, 71,
// 76-89, 190, 201, 217) cannot be shown here: a loopback client's address
// is in 127/8, which is not one of them. The smtpd engine's TestTarpit
// shows it, with an injected sleep, for a client at 66.1.2.3.
func TestGreyTarpit(t *testing.T) {
	const short, long = 1 * time.Second, 3 * time.Second
	d := startMail(t, "tarpitdelay 1s 3s\nournets 127.0.0.3\n", "-D")

	// Untrusted sessions in goroutines, each sending its commands and
	// timing the replies.
	const crowd = 10
	type result struct {
		ip    string
		waits []time.Duration
		err   error
	}
	results := make(chan result, crowd+1)
	session := func(ip string, cmds ...string) {
		var res result
		res.ip = ip
		res.waits, res.err = timedSession(d.SMTP[0], ip, cmds...)
		results <- res
	}
	for i := range crowd {
		go session(fmt.Sprintf("127.0.0.%d", 40+i), "HELO client.example.net 250")
	}
	// The session that errs: its HELO waits like the others', then the
	// command after a refused one waits the long delay, QUIT nothing.
	go session("127.0.0.5", "HELO client.example.net 250", "BOGUS 500", "NOOP 250", "QUIT 221")

	// Meanwhile a trusted client is served at full speed.
	start := time.Now()
	r := dialRaw(t, d.SMTP[0], "127.0.0.3")
	r.Expect("220 ")
	r.Send("HELO client.example.net")
	r.Expect("250 ")
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, "Subject: trusted\r\n\r\n"); got != "250 2.5.0 sent" {
		t.Errorf("trusted 127.0.0.3: %q", got)
	}
	r.Send("BOGUS")
	r.Expect("500 ")
	r.Send("NOOP")
	r.Expect("250 ")
	trusted := time.Since(start)
	if trusted >= short {
		t.Errorf("the trusted client took %v to deliver while others were tarpitted; want less than the %v tarpit", trusted, short)
	}

	var errWaits []time.Duration
	for range crowd + 1 {
		res := <-results
		if res.err != nil {
			t.Errorf("%s: %v", res.ip, res.err)
			continue
		}
		if w := res.waits[0]; w < short || w >= long {
			t.Errorf("%s: HELO answered after %v, want %v (and less than %v)", res.ip, w, short, long)
		}
		if res.ip == "127.0.0.5" {
			errWaits = res.waits
		}
	}
	if errWaits != nil {
		if errWaits[2] < long {
			t.Errorf("the command after a refused one was answered after %v, want at least %v", errWaits[2], long)
		}
		if errWaits[3] >= short {
			t.Errorf("QUIT after a refused command was answered after %v, want at once", errWaits[3])
		}
	}
	t.Logf("a trusted delivery took %v while %d sessions were tarpitted; their waits: HELO %v, after an error %v", trusted, crowd+1, short, errWaits)
}

// timedSession connects from ip, and for each of cmds, "COMMAND code",
// sends the command and reads a reply that must have that code, timing it.
func timedSession(addr, ip string, cmds ...string) ([]time.Duration, error) {
	dl := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	reply := func(code string) error {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(l, code) {
				return fmt.Errorf("reply %q, want %s", l, code)
			}
			if len(l) < 4 || l[3] != '-' {
				return nil
			}
		}
	}
	if err := reply("220"); err != nil {
		return nil, err
	}
	var waits []time.Duration
	for _, cmd := range cmds {
		i := strings.LastIndexByte(cmd, ' ')
		start := time.Now()
		if _, err := c.Write([]byte(cmd[:i] + "\r\n")); err != nil {
			return waits, err
		}
		if err := reply(cmd[i+1:]); err != nil {
			return waits, fmt.Errorf("%s: %v", cmd[:i], err)
		}
		waits = append(waits, time.Since(start))
	}
	return waits, nil
}
