package smtp

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"smtpfs/internal/errquote"
)

// A session is one SMTP conversation with one address of one host.
type session struct {
	c      *Client
	ctx    context.Context
	t      Timeouts
	host   string // the host name we think we talk to
	addr   string // ip:port
	conn   net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	tw     *timeoutWriter
	ext    map[string]string // EHLO keywords (upper case) and their parameters
	tls    bool
	broken bool        // the connection failed; no QUIT
	pol    *hostPolicy // the host's TLS policy, nil for none

	stop     func() bool // ends bind's watch of the context
	dirty    bool        // a transaction began (MAIL sent) and did not end with the reply to the dot
	dataSent bool        // this transaction got as far as sending DATA
}

// open connects to one address of one host and gets the session ready
// for transactions: greeting, EHLO, STARTTLS, AUTH. ctx bounds it; the
// caller closes the session.
func (c *Client) open(ctx context.Context, h hop, a netip.Addr) (*session, error) {
	s := &session{c: c, ctx: ctx, t: c.Timeouts.orDefault(), host: h.name,
		addr: net.JoinHostPort(a.String(), h.port), pol: h.pol}
	s.note("connecting to %s (%s)", s.host, s.addr)
	s.notePolicy()
	d := net.Dialer{Timeout: s.t.Connect}
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, s.fail("dial", err)
	}
	s.setConn(conn)
	s.bind(ctx)
	for _, step := range []func() error{s.implicitTLS, s.greet, s.hello, s.startTLS, s.auth} {
		if err := step(); err != nil {
			s.close()
			return nil, err
		}
	}
	s.unbind()
	return s, nil
}

// bind makes ctx the session's until unbind: when it is done the
// connection is closed, so that a wait on the server ends at once.
func (s *session) bind(ctx context.Context) {
	s.unbind()
	s.ctx = ctx
	conn := s.conn
	s.stop = context.AfterFunc(ctx, func() { conn.Close() })
}

// unbind ends bind's watch.
func (s *session) unbind() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// close ends the session: QUIT if it still works, then the connection.
func (s *session) close() {
	s.unbind()
	s.quit()
	s.conn.Close()
}

// transact runs one mail transaction on a session that is ready: RSET
// if the one before did not end (RFC 5321 §4.1.1.5), MAIL, RCPT, DATA.
func (s *session) transact(env envelope) ([]error, error) {
	s.dataSent = false
	if s.dirty {
		if _, err := s.cmd("rset", s.t.Command, 2, "RSET"); err != nil {
			s.broken = true // a server that will not reset is no use for another
			return nil, err
		}
		s.dirty = false
	}
	s.dirty = true
	rcptErrs, accepted, err := s.envelope(env)
	if err != nil || accepted == 0 || env.msg == nil {
		if err == nil && env.msg == nil {
			s.c.logf("%s ping to %s at %s (%s): %d of %d accepted", orNull(env.from),
				strings.Join(env.rcpts, ","), s.host, s.addr, accepted, len(env.rcpts))
		}
		return rcptErrs, err
	}
	n, err := s.data(env.msg)
	if err != nil {
		return rcptErrs, err
	}
	s.dirty = false
	if env.out != nil {
		_, env.out.DSN = s.ext["DSN"]
	}
	var ok []string
	for i, r := range env.rcpts {
		if rcptErrs[i] == nil {
			ok = append(ok, r)
		}
	}
	s.c.logf("%s sent %d bytes to %s (%s %s)", orNull(env.from), n, strings.Join(ok, ","), s.host, s.addr)
	return rcptErrs, nil
}

func orNull(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

func (s *session) setConn(c net.Conn) {
	s.conn = c
	s.tw = &timeoutWriter{c: c, d: s.t.Command}
	s.r = bufio.NewReader(c)
	s.w = bufio.NewWriter(s.tw)
}

// A timeoutWriter gives each write to the connection a deadline.
type timeoutWriter struct {
	c net.Conn
	d time.Duration
}

func (w *timeoutWriter) Write(p []byte) (int, error) {
	w.c.SetWriteDeadline(time.Now().Add(w.d))
	return w.c.Write(p)
}

// fail wraps err with the phase and the host. A failure caused by the
// context is reported as the context's cause (its error, or why it was
// cancelled: the queue's bound on a whole session, say).
func (s *session) fail(phase string, err error) *Error {
	if s.ctx.Err() != nil {
		err = context.Cause(s.ctx)
	}
	return &Error{Phase: phase, Host: s.host, Addr: s.addr, Err: err}
}

// note writes a comment to the transcript.
func (s *session) note(format string, args ...any) {
	if s.c.Transcript != nil {
		s.trace("*", fmt.Sprintf(format, args...))
	}
}

// trace writes one line of the transcript, after its mark (> sent, <
// received, * a note). The transcript goes to a terminal (smtp -d), so
// what a server says is shown with its control characters escaped
// (errquote.Escape): ESC [ 2 J, or a C1 CSI, must not reach it as such.
func (s *session) trace(mark, line string) {
	if tr := s.c.Transcript; tr != nil {
		b := make([]byte, 0, len(mark)+len(line)+2)
		b = append(b, mark...)
		b = append(b, ' ')
		b = errquote.AppendEscaped(b, line)
		tr.Write(append(b, '\n'))
	}
}

// send writes command lines and flushes them; shown is what the transcript
// gets instead of the lines ("" for the lines themselves).
func (s *session) send(shown string, lines ...string) error {
	for _, l := range lines {
		s.trace(">", cmp.Or(shown, l))
		s.w.WriteString(l)
		s.w.WriteString("\r\n")
	}
	if err := s.w.Flush(); err != nil {
		s.broken = true
		return err
	}
	return nil
}

// reply reads one reply within timeout.
func (s *session) reply(timeout time.Duration) (*Reply, error) {
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	r, err := readReply(s.r)
	if err != nil {
		s.broken = true
		return nil, err
	}
	if s.c.Transcript != nil {
		for l := range strings.SplitSeq(strings.TrimSuffix(string(r.Wire()), "\r\n"), "\r\n") {
			s.trace("<", l)
		}
	}
	return r, nil
}

// cmd sends one command and reads its reply. The reply is an error unless
// its first digit is want's: a 5xx is then permanent, anything else
// temporary.
func (s *session) cmd(phase string, timeout time.Duration, want int, line string) (*Reply, error) {
	if err := s.send("", line); err != nil {
		return nil, s.fail(phase, err)
	}
	return s.expect(phase, timeout, want)
}

// expect reads a reply that should be of class want (2 or 3).
func (s *session) expect(phase string, timeout time.Duration, want int) (*Reply, error) {
	r, err := s.reply(timeout)
	if err != nil {
		return nil, s.fail(phase, err)
	}
	if r.Code/100 != want {
		return r, s.fail(phase, r)
	}
	return r, nil
}

// greet reads the greeting (RFC 5321 §4.3.1: 220, or 554 for no service).
// With Provoke, a NOOP goes first and the reply it provokes is dropped: it
// is the greeting of a server that waits for its client to speak.
func (s *session) greet() error {
	if s.c.Provoke {
		if err := s.send("", "NOOP"); err != nil {
			return s.fail("greeting", err)
		}
		if _, err := s.reply(s.t.Greeting); err != nil {
			return s.fail("greeting", err)
		}
	}
	_, err := s.expect("greeting", s.t.Greeting, 2)
	return err
}

// hello sends EHLO, and HELO if EHLO gets a 5xx (RFC 5321 §3.2), and notes
// the extensions offered.
func (s *session) hello() error {
	name := s.c.Hello
	if name == "" {
		name = "localhost"
	}
	r, err := s.cmd("hello", s.t.Command, 2, "EHLO "+name)
	if err != nil && r != nil && r.Permanent() {
		s.ext = nil
		_, err = s.cmd("hello", s.t.Command, 2, "HELO "+name)
		return err
	}
	if err != nil {
		return err
	}
	s.ext = map[string]string{}
	for _, l := range r.Lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		s.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// envelope sends MAIL FROM and one RCPT TO per recipient, pipelined in
// groups of 100 when the server offers PIPELINING (RFC 2920; RFC 5321
// §4.5.3.1.8 requires servers to take 100 recipients). It returns the
// recipients' results and how many were accepted. Unlike upas, a 4xx for
// one recipient does not abort the others.
func (s *session) envelope(env envelope) ([]error, int, error) {
	cmds := []string{"MAIL FROM:<" + env.from + ">" + s.mailParams(env)}
	for i, r := range env.rcpts {
		cmds = append(cmds, "RCPT TO:<"+r+">"+s.rcptParams(env, i))
	}
	if err := s.needUTF8(env); err != nil {
		return nil, 0, err
	}
	if err := s.checkRequireTLS(env); err != nil {
		return nil, 0, err
	}
	step := 1
	if _, ok := s.ext["PIPELINING"]; ok {
		step = 100
	}
	var replies []*Reply
	phase := func() string {
		if len(replies) == 0 {
			return "mailfrom"
		}
		return "rcptto"
	}
	for i := 0; i < len(cmds); i += step {
		batch := cmds[i:min(i+step, len(cmds))]
		if err := s.send("", batch...); err != nil {
			return nil, 0, s.fail(phase(), err)
		}
		for range batch {
			r, err := s.reply(s.t.Command)
			if err != nil {
				return nil, 0, s.fail(phase(), err)
			}
			replies = append(replies, r)
		}
		if replies[0].Code/100 != 2 {
			// MAIL was refused; pipelined RCPTs got their 503s.
			return nil, 0, s.fail("mailfrom", replies[0])
		}
	}
	errs := make([]error, len(env.rcpts))
	accepted := 0
	for i, r := range replies[1:] {
		if r.Code/100 == 2 {
			accepted++
			continue
		}
		errs[i] = s.fail("rcptto", r)
		s.c.failf("%s to %s failed: %v", env.what(), env.rcpts[i], errs[i])
	}
	return errs, accepted, nil
}

// mailParams returns the MAIL FROM parameters the server takes: SIZE (RFC
// 1870) when the size is known, BODY=8BITMIME (RFC 6152) since we send the
// body as it is, SMTPUTF8 (RFC 6531) when an address or the message
// (Params.SMTPUTF8) needs it.
func (s *session) mailParams(env envelope) string {
	var p string
	if _, ok := s.ext["SIZE"]; ok && env.size >= 0 {
		p += " SIZE=" + strconv.FormatInt(env.size, 10)
	}
	if _, ok := s.ext["8BITMIME"]; ok && env.msg != nil {
		p += " BODY=8BITMIME"
	}
	if _, ok := s.ext["SMTPUTF8"]; ok && env.utf8() {
		p += " SMTPUTF8"
	}
	p += s.requireTLSParam(env)
	if _, ok := s.ext["DSN"]; ok && env.msg != nil {
		p += dsnMailParams(env.params)
	}
	return p
}

// dsnMailParams returns RET and ENVID (RFC 3461 §4.3, §4.4), for a
// server that offers DSN.
func dsnMailParams(p Params) string {
	var s string
	if p.Ret != "" {
		s += " RET=" + p.Ret
	}
	if p.EnvID != "" {
		s += " ENVID=" + EncodeXtext(p.EnvID)
	}
	return s
}

// rcptParams returns NOTIFY and ORCPT of recipient i (RFC 3461 §4.1,
// §4.2) for a server that offers DSN; ORCPT's address is xtext, its
// type as it is.
func (s *session) rcptParams(env envelope, i int) string {
	if _, ok := s.ext["DSN"]; !ok || env.msg == nil || i >= len(env.params.Rcpt) {
		return ""
	}
	var p string
	r := env.params.Rcpt[i]
	if r.Notify != "" {
		p += " NOTIFY=" + r.Notify
	}
	if t, a, ok := strings.Cut(r.ORcpt, ";"); ok {
		p += " ORCPT=" + t + ";" + EncodeXtext(a)
	}
	return p
}

// needUTF8 refuses non-ASCII addresses, or a message that says it needs
// SMTPUTF8 (UTF-8 header fields, RFC 6532), to a server without SMTPUTF8:
// a permanent 5.6.7 (RFC 6531 §3.2, §3.7.4.1), so the queue bounces it
// rather than downgrade it.
func (s *session) needUTF8(env envelope) error {
	if _, ok := s.ext["SMTPUTF8"]; ok || !env.utf8() {
		return nil
	}
	what := "non-ASCII address"
	if env.params.SMTPUTF8 {
		what = "message needs SMTPUTF8"
	}
	return s.fail("mailfrom", permanent(&StatusError{Enh: "5.6.7", Msg: what + " and the server does not offer SMTPUTF8"}))
}

// utf8 reports whether the envelope needs SMTPUTF8: the message says so,
// or an address is not ASCII.
func (env envelope) utf8() bool {
	if env.params.SMTPUTF8 {
		return true
	}
	for _, a := range append([]string{env.from}, env.rcpts...) {
		for i := 0; i < len(a); i++ {
			if a[i] >= 0x80 {
				return true
			}
		}
	}
	return false
}

// data sends DATA and the message, and reads the final reply. A failure
// to read the message ends the connection without the final dot, so that
// the server discards what it got rather than deliver half a message.
func (s *session) data(msg io.Reader) (int64, error) {
	s.dataSent = true
	if _, err := s.cmd("data", s.t.DataInit, 3, "DATA"); err != nil {
		return 0, err
	}
	var tr func(string)
	if s.c.Transcript != nil {
		tr = func(l string) { s.trace(">", l) }
	}
	s.tw.d = s.t.DataBlock
	defer func() { s.tw.d = s.t.Command }()
	dw := newDataWriter(s.w, tr)
	er := &errReader{r: msg}
	if _, err := io.Copy(dw, er); err != nil {
		if er.err != nil {
			s.broken = true
			s.conn.Close()
			return 0, s.fail("data", fmt.Errorf("reading the message: %w", er.err))
		}
		return 0, s.fail("data", err)
	}
	if err := dw.Close(); err != nil {
		return 0, s.fail("data", err)
	}
	if err := s.w.Flush(); err != nil {
		return 0, s.fail("data", err)
	}
	if _, err := s.expect("data", s.t.DataDone, 2); err != nil {
		return 0, err
	}
	return dw.n, nil
}

// An errReader remembers its reader's error, to tell it from the
// connection's.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// quit ends a session that still works with QUIT (RFC 5321 §4.1.1.10); its
// reply hardly matters, so it gets little time.
func (s *session) quit() {
	if s.broken || s.conn == nil {
		return
	}
	s.tw.d = min(s.t.Command, 10*time.Second)
	if s.send("", "QUIT") == nil {
		s.reply(min(s.t.Command, 10*time.Second))
	}
	s.broken = true
}

// messageSize returns the size of msg when it can tell without reading it:
// a bytes.Reader, strings.Reader or bytes.Buffer, or a regular file. It is
// an estimate for SIZE (RFC 1870 §3: LF line ends grow into CRLF).
func messageSize(msg io.Reader) int64 {
	switch m := msg.(type) {
	case interface{ Len() int }:
		return int64(m.Len())
	case *os.File:
		fi, err := m.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return -1
		}
		off, err := m.Seek(0, io.SeekCurrent)
		if err != nil {
			return -1
		}
		return fi.Size() - off
	}
	return -1
}
