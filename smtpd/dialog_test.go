package smtpd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDialogs runs the SMTP dialogues in testdata/dialog/*.txt. A script
// is a list of lines:
//
//	# comment
//	conf VERB ARGS     a configuration line, before the first connection
//	queue              give the server a queue (a recording fake)
//	secret USER PASS   an AUTH user
//	from IP            connect, appearing to come from IP (a new session)
//	> TEXT             send TEXT and CRLF
//	>raw TEXT          send TEXT with \r, \n, \t, \xNN escapes, nothing added
//	< TEXT             the next line from the server is exactly TEXT
//	<* TEXT            the next line from the server starts with TEXT
//	closed             the server closes the connection
func TestDialogs(t *testing.T) {
	files, err := filepath.Glob("testdata/dialog/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialogues: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runDialog(t, f) })
	}
}

func runDialog(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ts *testServer
	var conf []string
	var c *client
	q := &fakeQueue{}
	useQueue := false
	secrets := &Secrets{m: map[string]string{}}
	for n, line := range strings.Split(string(data), "\n") {
		where := file + ":" + strconv.Itoa(n+1)
		cmd, arg, _ := strings.Cut(line, " ")
		if ts == nil && (cmd == "from" || cmd == ">" || cmd == "<") {
			ts = newTestServer(t, strings.Join(conf, "\n"))
			if useQueue {
				ts.Queue = q
			}
			ts.Secrets = func() *Secrets { return secrets }
		}
		switch cmd {
		case "", "#":
		case "conf":
			conf = append(conf, arg)
		case "queue":
			useQueue = true
		case "secret":
			u, p, _ := strings.Cut(arg, " ")
			secrets.m[u] = p
		case "from":
			c = ts.dial(arg)
		case ">":
			c.send(arg)
		case ">raw":
			c.write(unescape(arg))
		case "<", "<*":
			got, err := c.r.ReadString('\n')
			got = strings.TrimSuffix(got, "\r\n")
			if err != nil {
				t.Fatalf("%s: reading: %v (got %q)\nlog:\n%s", where, err, got, ts.logbuf)
			}
			if cmd == "<" && got != arg || cmd == "<*" && !strings.HasPrefix(got, arg) {
				t.Fatalf("%s: got %q, want %q\nlog:\n%s", where, got, arg, ts.logbuf)
			}
		case "closed":
			if !c.closed() {
				t.Fatalf("%s: connection still open", where)
			}
		default:
			t.Fatalf("%s: bad script line %q", where, line)
		}
	}
}

// unescape turns \r \n \t \\ and \xNN into their bytes.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'r':
			b.WriteByte('\r')
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'x':
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
