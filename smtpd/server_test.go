package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/smtp"
	"smtpfs/smtpd/conf"
)

// A testServer is a Server on a loopback listener whose connections claim
// to come from whatever address a test asks for, with recording fakes for
// the seams.
type testServer struct {
	*Server
	t      testing.TB
	addr   string
	logbuf *syncBuffer
	mu     sync.Mutex
	from   map[int]chan net.Addr // client's local port → the remote address to report
	cfg    *conf.Config
	sleeps []time.Duration
}

// newTestServer starts a server configured with the lines of text.
func newTestServer(t testing.TB, text string) *testServer {
	t.Helper()
	return newTestServerWith(t, text, nil)
}

// newTestServerWith is newTestServer calling set, when not nil, on the
// Server before it serves.
func newTestServerWith(t testing.TB, text string, set func(*Server)) *testServer {
	t.Helper()
	cfg, _, err := conf.Apply(conf.Default(), "test", "defaultdomain example.org\nhostname mx.example.org\n"+text)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, logbuf: &syncBuffer{}, cfg: cfg, from: map[int]chan net.Addr{}}
	ts.Server = &Server{
		Root:   t.TempDir(),
		Config: ts.config,
		Log:    log.New(ts.logbuf, "", 0),
		Now:    func() time.Time { return time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC) },
	}
	ts.sleep = func(ctx context.Context, d time.Duration) error {
		ts.mu.Lock()
		ts.sleeps = append(ts.sleeps, d)
		ts.mu.Unlock()
		return nil
	}
	if set != nil {
		set(ts.Server)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = l.Addr().String()
	go ts.Serve(&fakeListener{Listener: l, ts: ts})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ts.Shutdown(ctx)
	})
	return ts
}

func (ts *testServer) config() *conf.Config {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.cfg
}

// apply changes the configuration, as a ctl write would.
func (ts *testServer) apply(text string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	c, _, err := conf.Apply(ts.cfg, "ctl", text)
	if err != nil {
		ts.t.Fatal(err)
	}
	ts.cfg = c
}

func (ts *testServer) slept() []time.Duration {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]time.Duration(nil), ts.sleeps...)
}

// A fakeListener makes accepted connections report the remote address
// their client asked for.
type fakeListener struct {
	net.Listener
	ts *testServer
}

func (l *fakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	a := <-l.ts.fromChan(c.RemoteAddr().(*net.TCPAddr).Port)
	return &fakeAddrConn{Conn: c, remote: a}, nil
}

// fromChan returns the channel on which dial tells Accept the address of
// the client on port; whichever comes first makes it.
func (ts *testServer) fromChan(port int) chan net.Addr {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ch := ts.from[port]
	if ch == nil {
		ch = make(chan net.Addr, 1)
		ts.from[port] = ch
	} else {
		delete(ts.from, port)
	}
	return ch
}

type fakeAddrConn struct {
	net.Conn
	remote net.Addr
}

func (c *fakeAddrConn) RemoteAddr() net.Addr { return c.remote }

// A client is the test's end of a session.
type client struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// dial connects, appearing to come from the address ip.
func (ts *testServer) dial(ip string) *client {
	ts.t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		ts.t.Fatal(err)
	}
	a := netip.MustParseAddr(ip)
	port := c.LocalAddr().(*net.TCPAddr).Port
	ts.fromChan(port) <- net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 4321))
	ts.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: ts.t, c: c, r: bufio.NewReader(c)}
}

// greeted dials and reads the greeting.
func (ts *testServer) greeted(ip string) *client {
	ts.t.Helper()
	c := ts.dial(ip)
	c.expect("220 ")
	return c
}

// ehloed dials, reads the greeting and says EHLO.
func (ts *testServer) ehloed(ip string) *client {
	ts.t.Helper()
	c := ts.greeted(ip)
	c.send("EHLO client.example.net")
	c.reply()
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	c.write(s + "\r\n")
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one reply and returns its lines.
func (c *client) reply() []string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		if !strings.HasSuffix(l, "\r\n") {
			c.t.Fatalf("reply line %q does not end in CRLF", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// expect reads one reply whose last line must start with prefix.
func (c *client) expect(prefix string) []string {
	c.t.Helper()
	lines := c.reply()
	if !strings.HasPrefix(lines[len(lines)-1], prefix) {
		c.t.Fatalf("got reply %q, want %q", lines, prefix)
	}
	return lines
}

// closed reports whether the server closed the connection, after
// discarding whatever it still sent.
func (c *client) closed() bool {
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c.r)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout())
}

// begin sends MAIL and RCPT for each recipient, all of which must be
// accepted.
func (c *client) begin(from string, rcpts ...string) {
	c.t.Helper()
	c.send("MAIL FROM:<" + from + ">")
	c.expect("250 ")
	for _, r := range rcpts {
		c.send("RCPT TO:<" + r + ">")
		c.expect("250 ")
	}
}

// open is begin, then DATA, which must be answered 354.
func (c *client) open(from string, rcpts ...string) {
	c.t.Helper()
	c.begin(from, rcpts...)
	c.send("DATA")
	c.expect("354 ")
}

// mail runs a whole transaction and returns the reply to the final dot.
func (c *client) mail(from string, rcpts []string, msg string) []string {
	c.t.Helper()
	c.open(from, rcpts...)
	c.write(msg + ".\r\n")
	return c.reply()
}

// check sends line and reports an error unless the reply's first line
// starts with want.
func (c *client) check(line, want string) {
	c.t.Helper()
	c.send(line)
	if got := c.reply(); !strings.HasPrefix(got[0], want) {
		c.t.Errorf("%s: got %q, want %q", line, got, want)
	}
}

// A fakeQueue records what it is given.
type fakeQueue struct {
	mu   sync.Mutex
	msgs []queued
	err  error
}

type queued struct {
	from  string
	rcpts []string
	data  string
	// params: what PutMail was given besides; delivered: a success DSN
	// asked of PutDelivered
	params    smtp.Params
	delivered bool
}

func (q *fakeQueue) PutMail(ctx context.Context, m smtp.Mail, msg io.Reader) (string, error) {
	return q.put(m, msg, false)
}

func (q *fakeQueue) PutDelivered(ctx context.Context, m smtp.Mail, msg io.Reader) (string, error) {
	return q.put(m, msg, true)
}

func (q *fakeQueue) put(m smtp.Mail, msg io.Reader, delivered bool) (string, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return "", q.err
	}
	q.msgs = append(q.msgs, queued{m.From, m.Rcpts, string(b), m.Params, delivered})
	return "q1", nil
}

func (q *fakeQueue) all() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.msgs...)
}

type fakeGrey struct {
	pass  bool
	mu    sync.Mutex
	calls []string
}

func (g *fakeGrey) Check(local, remote netip.Addr, from string, rcpts []string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, local.String()+" "+remote.String()+" "+from+" "+strings.Join(rcpts, ","))
	return g.pass
}

type fakeClassifier map[string]Verdict // "ip" or "ip sender" → verdict

func (f fakeClassifier) Classify(ip netip.Addr, sender string) Verdict {
	if v, ok := f[ip.String()+" "+sender]; ok {
		return v
	}
	return f[ip.String()]
}

type fakeResolver map[string]error // domain → nil (exists), errNoDomain, or a DNS failure

var errNoDomain = errors.New("no such domain")

func (f fakeResolver) DomainExists(ctx context.Context, d string) (bool, error) {
	err, ok := f[d]
	switch {
	case !ok || err == errNoDomain:
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// boxFiles returns the messages in box/<user>/new.
func boxFiles(t testing.TB, root, user string) []string {
	t.Helper()
	dir := filepath.Join(root, "box", user, "new")
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var msgs []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, string(b))
	}
	return msgs
}

func removeBox(t testing.TB, root, user string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(root, "box", user)); err != nil {
		t.Fatal(err)
	}
}
