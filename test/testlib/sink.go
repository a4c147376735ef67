package testlib

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/smtp"
)

// A Sink is a scriptable SMTP server on 127.0.0.1 that records what it is
// sent: the far end for tests of the client and the queue. By default it
// accepts everything; Reply overrides any answer.
type Sink struct {
	Addr string // host:port
	SinkOptions

	mu       sync.Mutex
	reply    func(phase, arg string) *smtp.Reply
	msgs     []SinkMsg
	sessions []*SinkSession
	cond     *sync.Cond
	l        net.Listener
}

// SinkOptions choose what a Sink offers.
type SinkOptions struct {
	TLS      *tls.Config       // offer STARTTLS with it
	Implicit bool              // with TLS: TLS from the first byte (smtps)
	Users    map[string]string // offer AUTH PLAIN LOGIN, checking these passwords
	Listen   string            // host:port to listen on; "" means 127.0.0.1 and any port
	Mute     bool              // greet only once the client has said something (for smtp -A)
	ReqTLS   bool              // with TLS: offer REQUIRETLS (RFC 8689) once TLS is on

	NoPipelining bool // leave PIPELINING (RFC 2920) out of the EHLO reply; a command that came with the next one recorded with " (pipelined)"
	DSN          bool // offer DSN (RFC 3461); its parameters are in Sessions' lines
}

// SetReply makes f decide the sink's answers from now on. Before each
// answer it is asked with phase "greeting", "EHLO", "HELO", "MAIL",
// "RCPT", "DATA" (before the 354), "." (after the message), "RSET", "QUIT",
// "STARTTLS" or "AUTH", and arg the rest of the command line (the message,
// for "."). A nil result means the default answer; Hangup closes the
// connection instead.
func (s *Sink) SetReply(f func(phase, arg string) *smtp.Reply) {
	s.mu.Lock()
	s.reply = f
	s.mu.Unlock()
}

// Hangup, returned by a SetReply function, closes the connection without a reply.
var Hangup = &smtp.Reply{Code: 0, Lines: []string{"hangup"}}

// A SinkMsg is a message the sink accepted.
type SinkMsg struct {
	Helo  string
	From  string   // the MAIL FROM path, without <>
	Rcpts []string // accepted RCPT TO paths, without <>
	Data  []byte   // the message as sent, dot-stuffing removed, CRLF kept
	TLS   bool
	User  string // authenticated user, "" if none
}

// A SinkSession is what one connection sent: its command lines, AUTH
// payloads left out.
type SinkSession struct {
	mu       sync.Mutex
	Commands []string
}

// NewSink starts a sink for the life of the test.
func NewSink(t testing.TB, opt SinkOptions) *Sink {
	t.Helper()
	addr := opt.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveSink(t, l, opt)
}

// serveSink serves a sink on l for the life of the test.
func serveSink(t testing.TB, l net.Listener, opt SinkOptions) *Sink {
	s := &Sink{Addr: l.Addr().String(), l: l, SinkOptions: opt}
	s.cond = sync.NewCond(&s.mu)
	go s.serve()
	t.Cleanup(func() { l.Close() })
	return s
}

// Port returns the port the sink listens on.
func (s *Sink) Port() string {
	_, p, _ := net.SplitHostPort(s.Addr)
	return p
}

// Messages returns the messages accepted so far.
func (s *Sink) Messages() []SinkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMsg(nil), s.msgs...)
}

// Sessions returns the command lines of each connection so far.
func (s *Sink) Sessions() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]string
	for _, ss := range s.sessions {
		ss.mu.Lock()
		out = append(out, append([]string(nil), ss.Commands...))
		ss.mu.Unlock()
	}
	return out
}

// Wait waits up to timeout for at least n messages and returns them; it
// fails the test if they do not come.
func (s *Sink) Wait(t testing.TB, n int, timeout time.Duration) []SinkMsg {
	t.Helper()
	deadline := time.AfterFunc(timeout, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	s.mu.Lock()
	for len(s.msgs) < n && time.Since(start) < timeout {
		s.cond.Wait()
	}
	msgs := append([]SinkMsg(nil), s.msgs...)
	s.mu.Unlock()
	if len(msgs) < n {
		t.Fatalf("sink: %d messages after %v, want %d", len(msgs), timeout, n)
	}
	return msgs
}

func (s *Sink) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		go s.session(c)
	}
}

type sinkConn struct {
	s    *Sink
	c    net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	sess *SinkSession
	msg  SinkMsg
}

func (s *Sink) session(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	sess := &SinkSession{}
	s.mu.Lock()
	s.sessions = append(s.sessions, sess)
	s.mu.Unlock()
	if s.TLS != nil && s.Implicit {
		tc := tls.Server(c, s.TLS)
		if tc.Handshake() != nil {
			return
		}
		c = tc
	}
	sc := &sinkConn{s: s, c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c), sess: sess}
	_, sc.msg.TLS = c.(*tls.Conn)
	if s.Mute {
		if _, err := sc.r.Peek(1); err != nil {
			return
		}
	}
	if !sc.reply("greeting", "", smtp.Replyf(220, "", "sink ESMTP")) {
		return
	}
	for {
		line, err := sc.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		rec := line
		if verb == "AUTH" {
			rec = "AUTH " + strings.Fields(arg + " x")[0]
		}
		if sc.s.NoPipelining && sc.r.Buffered() > 0 {
			// The client did not wait for the reply (RFC 2920 §3.1).
			rec += " (pipelined)"
		}
		sess.mu.Lock()
		sess.Commands = append(sess.Commands, rec)
		sess.mu.Unlock()
		if !sc.command(verb, arg) {
			return
		}
	}
}

// command runs one command and reports whether to go on.
func (sc *sinkConn) command(verb, arg string) bool {
	switch verb {
	case "EHLO":
		sc.msg.Helo = arg
		lines := []string{"sink", "PIPELINING", "8BITMIME", "SIZE 100000000"}
		if sc.s.NoPipelining {
			lines = slices.DeleteFunc(lines, func(l string) bool { return l == "PIPELINING" })
		}
		if sc.s.TLS != nil && !sc.msg.TLS {
			lines = append(lines, "STARTTLS")
		}
		if sc.s.Users != nil {
			lines = append(lines, "AUTH PLAIN LOGIN")
		}
		if sc.s.ReqTLS && sc.msg.TLS {
			lines = append(lines, "REQUIRETLS")
		}
		if sc.s.DSN {
			lines = append(lines, "DSN")
		}
		return sc.reply("EHLO", arg, &smtp.Reply{Code: 250, Lines: lines})
	case "HELO":
		sc.msg.Helo = arg
		return sc.reply("HELO", arg, smtp.Replyf(250, "", "sink"))
	case "STARTTLS":
		if sc.s.TLS == nil || sc.msg.TLS {
			return sc.reply("STARTTLS", arg, smtp.Replyf(502, "5.5.1", "no"))
		}
		r := sc.answer("STARTTLS", arg, smtp.Replyf(220, "2.0.0", "go ahead"))
		if r == Hangup || !sc.send(r) {
			return false
		}
		if r.Code != 220 {
			return true // refused: the session goes on in plaintext
		}
		tc := tls.Server(sc.c, sc.s.TLS)
		if tc.Handshake() != nil {
			return false
		}
		sc.c, sc.r, sc.w = tc, bufio.NewReader(tc), bufio.NewWriter(tc)
		sc.msg = SinkMsg{TLS: true}
		return true
	case "AUTH":
		return sc.auth(arg)
	case "MAIL":
		sc.msg.From, sc.msg.Rcpts = path(arg), nil
		return sc.reply("MAIL", arg, smtp.Replyf(250, "2.1.0", "ok"))
	case "RCPT":
		r := sc.answer("RCPT", arg, smtp.Replyf(250, "2.1.5", "ok"))
		if r == Hangup {
			return false
		}
		if r.Code/100 == 2 {
			sc.msg.Rcpts = append(sc.msg.Rcpts, path(arg))
		}
		return sc.send(r)
	case "DATA":
		r := sc.answer("DATA", arg, smtp.Replyf(354, "", "go ahead"))
		if r == Hangup || !sc.send(r) {
			return false
		}
		if r.Code != 354 {
			return true
		}
		data, ok := sc.readData()
		if !ok {
			return false
		}
		r = sc.answer(".", string(data), smtp.Replyf(250, "2.0.0", "queued"))
		if r == Hangup {
			return false
		}
		if r.Code/100 == 2 {
			m := sc.msg
			m.Data = data
			sc.s.mu.Lock()
			sc.s.msgs = append(sc.s.msgs, m)
			sc.s.cond.Broadcast()
			sc.s.mu.Unlock()
		}
		return sc.send(r)
	case "RSET":
		sc.msg.From, sc.msg.Rcpts = "", nil
		return sc.reply("RSET", arg, smtp.Replyf(250, "2.0.0", "ok"))
	case "NOOP":
		return sc.reply("NOOP", arg, smtp.Replyf(250, "2.0.0", "ok"))
	case "QUIT":
		sc.reply("QUIT", arg, smtp.Replyf(221, "2.0.0", "bye"))
		return false
	}
	return sc.reply(verb, arg, smtp.Replyf(500, "5.5.1", "unknown command"))
}

func (sc *sinkConn) auth(arg string) bool {
	f := strings.Fields(arg)
	if sc.s.Users == nil || len(f) == 0 {
		return sc.reply("AUTH", arg, smtp.Replyf(502, "5.5.1", "no auth"))
	}
	var user, pass string
	switch strings.ToUpper(f[0]) {
	case "PLAIN":
		resp := ""
		if len(f) > 1 {
			resp = f[1]
		} else {
			if !sc.send(&smtp.Reply{Code: 334, Lines: []string{""}}) {
				return false
			}
			resp, _ = sc.readLine()
		}
		b, _ := base64.StdEncoding.DecodeString(resp)
		p := strings.Split(string(b), "\x00")
		if len(p) == 3 {
			user, pass = p[1], p[2]
		}
	case "LOGIN":
		if !sc.send(smtp.Replyf(334, "", "VXNlcm5hbWU6")) {
			return false
		}
		u, _ := sc.readLine()
		if !sc.send(smtp.Replyf(334, "", "UGFzc3dvcmQ6")) {
			return false
		}
		pw, _ := sc.readLine()
		ub, _ := base64.StdEncoding.DecodeString(u)
		pb, _ := base64.StdEncoding.DecodeString(pw)
		user, pass = string(ub), string(pb)
	default:
		return sc.reply("AUTH", arg, smtp.Replyf(504, "5.5.4", "unknown mechanism"))
	}
	if want, ok := sc.s.Users[user]; !ok || want != pass {
		return sc.reply("AUTH", arg, smtp.Replyf(535, "5.7.8", "authentication failed"))
	}
	sc.msg.User = user
	return sc.reply("AUTH", arg, smtp.Replyf(235, "2.7.0", "ok"))
}

func (sc *sinkConn) readLine() (string, bool) {
	l, err := sc.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err == nil
}

// readData reads a message up to CRLF.CRLF and removes dot-stuffing.
func (sc *sinkConn) readData() ([]byte, bool) {
	var b bytes.Buffer
	for {
		l, err := sc.r.ReadString('\n')
		if err != nil {
			return nil, false
		}
		if l == ".\r\n" {
			return b.Bytes(), true
		}
		b.WriteString(strings.TrimPrefix(l, "."))
	}
}

func (sc *sinkConn) answer(phase, arg string, def *smtp.Reply) *smtp.Reply {
	sc.s.mu.Lock()
	f := sc.s.reply
	sc.s.mu.Unlock()
	if f != nil {
		if r := f(phase, arg); r != nil {
			return r
		}
	}
	return def
}

func (sc *sinkConn) reply(phase, arg string, def *smtp.Reply) bool {
	r := sc.answer(phase, arg, def)
	if r == Hangup {
		return false
	}
	return sc.send(r) && r.Code != 421
}

func (sc *sinkConn) send(r *smtp.Reply) bool {
	sc.w.Write(r.Wire())
	return sc.w.Flush() == nil
}

// path strips "FROM:" or "TO:", the angle brackets and any parameters.
func path(arg string) string {
	_, p, _ := strings.Cut(arg, ":")
	p = strings.TrimSpace(p)
	if i := strings.IndexByte(p, '>'); i >= 0 {
		p = p[:i]
	}
	return strings.TrimPrefix(p, "<")
}
