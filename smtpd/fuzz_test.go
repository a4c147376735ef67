package smtpd

import (
	"bufio"
	"context"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smtpfs/smtpd/conf"
)

// fuzzConf is the configuration of FuzzSession: every check on, so that
// the input can reach every path; no waiting anywhere.
const fuzzConf = `defaultdomain example.org
hostname mx.example.org
ourdomains *.example.com
plaintextauth on
verifysenderdom on
helocheck on
greylist on
saveblockedmsg on
debug on
maxerrors 50
maxsize 64k
cmdtimeout 5s
datatimeout 5s`

// FuzzSession feeds bytes to a whole session, as a client on the other end
// of a connection would, against a Server with fakes for its seams and a
// fresh mail root. Whatever the bytes, the server must not panic, must
// end the session when the client goes, and must write nothing but
// well-formed replies (RFC 5321 §4.2: a code, a space or hyphen, text, CRLF;
// at most 512 octets a line, §4.5.3.1.5). The seed corpus is the client
// side of the dialogues in testdata/dialog, plus whole sessions of each
// kind (testdata/fuzz/FuzzSession holds what fuzzing found since).
func FuzzSession(f *testing.F) {
	files, _ := filepath.Glob("testdata/dialog/*.txt")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, s := range dialogInputs(string(b)) {
			f.Add([]byte(s))
		}
	}
	for _, s := range []string{
		"EHLO a.example\r\nMAIL FROM:<a@sender.net> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<c+tag@example.com>\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
		"EHLO a.example\r\nMAIL FROM:<a@sender.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nx\n.\nMAIL FROM:<evil@x.y>\r\n.\r\nRSET\r\n",
		"EHLO a.example\r\nAUTH LOGIN\r\nZ2xlbmRh\r\nczNjcmV0\r\nMAIL FROM:<glenda@example.org>\r\nRCPT TO:<v@elsewhere.com>\r\nDATA\r\n.\r\n",
		"EHLO a.example\r\nAUTH PLAIN AGdsZW5kYQBzM2NyZXQ=\r\nAUTH CRAM-MD5\r\n*\r\n",
		"HELO [192.0.2.7]\r\nMAIL FROM:<>\r\nRCPT TO:<me@[]>\r\nRCPT TO:<\"bob+x>, y\"@example.org>\r\nRCPT TO:<a@[IPv6:fe80::1%eth0]>\r\nDATA\r\n.\r\n",
		"EHLO a.example\r\nMAIL FROM:<blocked@sender.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: spam\r\n\r\n.\r\nNOOP\r\nVRFY b\r\nHELP\r\nSTARTTLS\r\nGET / HTTP/1.1\r\n",
		"EHLO a.example\r\nMAIL FROM:<dial@sender.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nNOOP\r\nQUIT\r\n",
		"NOOP " + strings.Repeat("x", 3000) + "\r\nEHLO a.example\r\nMAIL FROM:<a@nowhere.example>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		srv, logbuf := fuzzServer(t)
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(&addrConn{Conn: server,
				local:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25},
				remote: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4321}})
		}()
		out := make(chan []byte)
		go func() {
			b, _ := io.ReadAll(client)
			out <- b
		}()
		client.SetWriteDeadline(time.Now().Add(10 * time.Second))
		client.Write(in)
		client.Write([]byte("\r\n.\r\nQUIT\r\n")) // end a message or an AUTH dialogue, then the session
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the session did not end after the client went\nlog:\n%s", logbuf)
		}
		if n := srv.Stats.Panics.Load(); n != 0 {
			t.Fatalf("%d panics\nlog:\n%s", n, logbuf)
		}
		checkReplies(t, <-out)
	})
}

// fuzzServer returns a Server for FuzzSession, with a fresh mail root and
// recording fakes, that never sleeps.
func fuzzServer(t *testing.T) (*Server, *syncBuffer) {
	cfg, _, err := conf.Apply(conf.Default(), "fuzz", fuzzConf)
	if err != nil {
		t.Fatal(err)
	}
	logbuf := &syncBuffer{}
	root := t.TempDir()
	srv := &Server{
		Root:       root,
		Config:     func() *conf.Config { return cfg },
		Secrets:    func() *Secrets { return &Secrets{m: map[string]string{"glenda": "s3cret"}} },
		Log:        log.New(logbuf, "", 0),
		Now:        func() time.Time { return time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC) },
		Queue:      &fakeQueue{},
		Greylister: &fakeGrey{pass: true},
		Classifier: fakeClassifier{"192.0.2.7 sender.net!blocked": Block, "192.0.2.7 sender.net!delay": Delay,
			"192.0.2.7 sender.net!deny": Deny, "192.0.2.7 sender.net!dial": Dial},
		Resolver: fakeResolver{"sender.net": nil, "a.example": nil, "broken.example": context.DeadlineExceeded},
		Maildir:  NewMaildir(filepath.Join(root, "box")),
		sleep:    func(context.Context, time.Duration) error { return nil },
	}
	srv.Maildir.fsync = func(string) error { return nil }
	srv.Maildir.flush = func([]*os.File) error { return nil }
	return srv, logbuf
}

// checkReplies fails t unless out is a run of well-formed reply lines; a
// last line cut short by the client's going is left out.
func checkReplies(t *testing.T, out []byte) {
	r := bufio.NewReader(strings.NewReader(string(out)))
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return
		}
		ok := len(l) >= 6 && len(l) <= 512 && strings.HasSuffix(l, "\r\n") && l[0] >= '2' && l[0] <= '5' &&
			isDigit(l[1]) && isDigit(l[2]) && (l[3] == ' ' || l[3] == '-') && !strings.ContainsAny(l[:len(l)-2], "\r\n")
		if !ok {
			t.Fatalf("bad reply line %q in\n%s", l, out)
		}
	}
}

// dialogInputs returns what the client sends in each session of a
// dialogue script (see TestDialogs).
func dialogInputs(script string) []string {
	var sessions []string
	var cur strings.Builder
	for _, line := range strings.Split(script, "\n") {
		cmd, arg, _ := strings.Cut(line, " ")
		switch cmd {
		case "from":
			if cur.Len() > 0 {
				sessions = append(sessions, cur.String())
			}
			cur.Reset()
		case ">":
			cur.WriteString(arg + "\r\n")
		case ">raw":
			cur.WriteString(unescape(arg))
		}
	}
	if cur.Len() > 0 {
		sessions = append(sessions, cur.String())
	}
	return sessions
}

// An addrConn is a connection with the addresses a test gives it.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *addrConn) LocalAddr() net.Addr  { return c.local }
func (c *addrConn) RemoteAddr() net.Addr { return c.remote }
