package test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// The 9P tree of the real daemon, driven with 9fans.net/go/plan9/client:
// the exact texts of its errors, on the posted Unix socket and on a -9 TCP
// listener.

// startNinep starts smtpfs on a fresh mail root whose smtpd.conf holds
// conf, with a 9P listener on a free loopback port besides the posted
// socket; NineP[0] is the socket, NineP[1] the TCP listener.
func startNinep(t *testing.T, conf string, args ...string) *Daemon {
	t.Helper()
	d := startMail(t, conf, append(args, "-9", "tcp!127.0.0.1!0")...)
	if len(d.NineP) != 2 || !strings.HasPrefix(d.NineP[0], "unix!") || !strings.HasPrefix(d.NineP[1], "tcp!127.0.0.1!") ||
		strings.HasSuffix(d.NineP[1], "!0") {
		t.Fatalf("9P service at %q, want the posted socket and a TCP port:\n%s", d.NineP, d.Stderr)
	}
	return d
}

// ninepErr returns what a 9P client shows of err: its text, "" for nil.
func ninepErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ninepOp is one thing a 9P client does, returning its error.
type ninepOp struct {
	name string
	do   func(fsys *client.Fsys) error
	want string // the error's exact text, "" for success
}

// ninepWrite is an op that writes parts to name in one open (a Twrite each)
// and clunks it; its error is the first of open, writes and clunk.
func ninepWrite(name string, parts ...string) func(*client.Fsys) error {
	return func(fsys *client.Fsys) error { return fstest.Write(fsys, name, plan9.OWRITE, parts...) }
}

func ninepOpen(name string, mode uint8) func(*client.Fsys) error {
	return func(fsys *client.Fsys) error {
		fid, err := fsys.Open(name, mode)
		if err == nil {
			fid.Close()
		}
		return err
	}
}

func ninepWstat(name string, set func(d *plan9.Dir)) func(*client.Fsys) error {
	return func(fsys *client.Fsys) error {
		var d plan9.Dir
		d.Null()
		set(&d)
		return fsys.Wstat(name, &d)
	}
}

// TestNinepErrors: every refusal of the tree, with its exact text, on both
// kinds of listener; a refused write changes nothing.
func TestNinepErrors(t *testing.T) {
	d := startNinep(t, "maxsize 1k\n")
	long := "From: glenda@example.org\nTo: rob@example.net\n\n" + strings.Repeat("x", 1024) + "\n"
	ops := []ninepOp{
		{"unknown verb", ninepWrite("ctl", "bogus on\n"), "invalid ctl line 1 'bogus on': unknown verb 'bogus'"},
		{"bad line after a good one", ninepWrite("ctl", "tarpit on\nbogus\n"), "invalid ctl line 2 'bogus': unknown verb 'bogus'"},
		{"bad value", ninepWrite("ctl", "maxsize lots\n"), "invalid ctl line 1 'maxsize lots': bad size 'lots'"},
		{"network with host bits", ninepWrite("ctl", "ournets 127.0.0.0/8\nournets 10.0.0.0/1\n"),
			"invalid ctl line 2 'ournets 10.0.0.0/1': invalid address '10.0.0.0/1': host bits set; did you mean 0.0.0.0/1?"},
		{"a write is a whole command", ninepWrite("ctl", "tarp", "it on\n"), "invalid ctl line 1 'tarp': unknown verb 'tarp'"},
		{"a line cut by a piece", ninepWrite("ctl", "#"+strings.Repeat("-", 4090)+"\ntarp", "it on\nbogus\n"), "invalid ctl line 2 'bogus': unknown verb 'bogus'"},
		{"bad last line without newline", ninepWrite("ctl", "bogus"), "invalid ctl line 1 'bogus': unknown verb 'bogus'"},
		{"action on nothing after a setting", ninepWrite("ctl", "tarpit on\ndelete nosuchid\n"), "invalid ctl line 2 'delete nosuchid': not found: nosuchid"},
		{"retry of nothing", ninepWrite("ctl", "retry nosuchid\n"), "invalid ctl line 1 'retry nosuchid': not found: nosuchid"},
		{"unwhitelist of nothing", ninepWrite("ctl", "unwhitelist 192.0.2.9\n"), "invalid ctl line 1 'unwhitelist 192.0.2.9': not found: 192.0.2.9"},
		{"bad whitelist entry", ninepWrite("whitelist", "192.0.2.7\nx\n"), "invalid whitelist entry 'x' (line 2): not an address or network"},
		{"bad whitelist prefix", ninepWrite("whitelist", "10.0.0.0/33\n"), "invalid whitelist entry '10.0.0.0/33': not an address or network"},
		{"bad blocked line", ninepWrite("blocked", "frobnicate 10.0.0.1\n"), "invalid blocked line 1 'frobnicate 10.0.0.1': unknown verb 'frobnicate'"},
		{"message without sender", ninepWrite("queue", "To: rob@example.net\n\nbody\n"), "invalid header: no sender: neither a From line nor a From: field"},
		{"message without recipients", ninepWrite("queue", "From: glenda@example.org\nSubject: hi\n\nbody\n"), "invalid header: no recipients in To:, Cc: or Bcc:"},
		{"bad recipient", ninepWrite("queue", "From: glenda@example.org\n", "To: bad address@@\n\nbody\n"), "invalid address in To: \"bad address@@\": mail: no angle-addr"},
		{"message too long", ninepWrite("queue", long), "message too long"},
		{"empty write to queue", ninepWrite("queue", ""), ""},
		{"all header, checked at clunk", ninepWrite("queue", "Subject: no blank line\n"), "invalid header: no sender: neither a From line nor a From: field"},
		{"write stats", ninepOpen("stats", plan9.OWRITE), "permission denied"},
		{"write log", ninepOpen("log", plan9.OWRITE), "permission denied"},
		{"write log.recent", ninepOpen("log.recent", plan9.ORDWR), "permission denied"},
		{"write version", ninepOpen("version", plan9.OWRITE|plan9.OTRUNC), "permission denied"},
		{"write queue.d", ninepOpen("queue.d", plan9.OWRITE), "is a directory"},
		{"remove on close", ninepOpen("ctl", plan9.OREAD|plan9.ORCLOSE), "permission denied"},
		{"no such file", ninepOpen("nosuch", plan9.OREAD), "file does not exist"},
		{"no such message", ninepOpen("queue.d/nosuch", plan9.OREAD), "file does not exist"},
		{"create", func(fsys *client.Fsys) error { _, err := fsys.Create("new", plan9.OWRITE, 0644); return err }, "permission denied"},
		{"create in queue.d", func(fsys *client.Fsys) error { _, err := fsys.Create("queue.d/new", plan9.OWRITE, 0644); return err }, "permission denied"},
		{"mkdir", func(fsys *client.Fsys) error { _, err := fsys.Create("dir", plan9.OREAD, plan9.DMDIR|0755); return err }, "permission denied"},
		{"remove ctl", func(fsys *client.Fsys) error { return fsys.Remove("ctl") }, "permission denied"},
		{"remove queue.d", func(fsys *client.Fsys) error { return fsys.Remove("queue.d") }, "permission denied"},
		{"rename", ninepWstat("ctl", func(d *plan9.Dir) { d.Name = "ctl.old" }), "permission denied: cannot rename ctl"},
		{"chmod", ninepWstat("whitelist", func(d *plan9.Dir) { d.Mode = 0666 }), "permission denied: cannot change the mode of whitelist"},
		{"chmod -a", ninepWstat("whitelist", func(d *plan9.Dir) { d.Mode = 0644 }), "permission denied: cannot change the mode of whitelist"},
		{"chown", ninepWstat("ctl", func(d *plan9.Dir) { d.Uid = "nobody" }), "permission denied: cannot change the owner of ctl"},
		{"truncate to 1", ninepWstat("ctl", func(d *plan9.Dir) { d.Length = 1 }), "permission denied: the length of ctl can only be set to 0"},
		{"truncate to 0", ninepWstat("ctl", func(d *plan9.Dir) { d.Length = 0 }), ""},
		{"truncate stats", ninepWstat("stats", func(d *plan9.Dir) { d.Length = 0 }), "permission denied: cannot set the length of stats"},
		{"touch", ninepWstat("ctl", func(d *plan9.Dir) { d.Atime, d.Mtime = 1, 2 }), ""},
		{"sync", ninepWstat("queue", func(d *plan9.Dir) {}), ""},
	}
	for _, ds := range d.NineP {
		t.Run(ds[:strings.IndexByte(ds, '!')], func(t *testing.T) {
			fsys := fstest.Dial(t, ds)
			ctl, blocked := fstest.Read(t, fsys, "ctl"), fstest.Read(t, fsys, "blocked")
			for _, op := range ops {
				if got := ninepErr(op.do(fsys)); got != op.want {
					t.Errorf("%s: got %q, want %q", op.name, got, op.want)
				}
			}
			if got := fstest.Read(t, fsys, "ctl"); got != ctl {
				t.Errorf("refused writes changed ctl:\n%s\nwas:\n%s", got, ctl)
			}
			if got := fstest.Read(t, fsys, "blocked"); got != blocked {
				t.Errorf("refused writes changed blocked: %q", got)
			}
			if got := fstest.Read(t, fsys, "whitelist"); got != "" {
				t.Errorf("refused writes changed the whitelist: %q", got)
			}
			if got := fstest.Read(t, fsys, "queue"); got != "" {
				t.Errorf("refused messages were queued: %q", got)
			}
		})
	}
}

// ninepCtl writes text to ctl and fails the test if it is refused.
func ninepCtl(t *testing.T, fsys *client.Fsys, text string) {
	t.Helper()
	if err := fstest.Write(fsys, "ctl", plan9.OWRITE, text); err != nil {
		t.Fatalf("ctl %q: %v", text, err)
	}
}

// ninepStats reads the stats file into a map.
func ninepStats(t *testing.T, fsys *client.Fsys) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSuffix(fstest.Read(t, fsys, "stats"), "\n"), "\n") {
		name, v, ok := strings.Cut(line, " ")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			t.Fatalf("stats line %q", line)
		}
		m[name] = n
	}
	return m
}

// A ninepLog reads the log file on a fid of its own, as `cat log` does.
type ninepLog struct {
	t      *testing.T
	chunks chan string
	seen   strings.Builder
}

// ninepFollowLog opens the log file and reads it until the end of the test.
func ninepFollowLog(t *testing.T, fsys *client.Fsys) *ninepLog {
	fid, err := fsys.Open("log", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	f := &ninepLog{t: t, chunks: make(chan string, 1000)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(f.chunks)
		b := make([]byte, 8192)
		for {
			n, err := fid.Read(b)
			if err != nil {
				return
			}
			f.chunks <- string(b[:n])
		}
	}()
	t.Cleanup(func() { fid.Close(); <-done })
	return f
}

// until waits for the log to have shown s, and returns what it has shown.
func (f *ninepLog) until(s string) string {
	f.t.Helper()
	timeout := time.After(10 * time.Second)
	for !strings.Contains(f.seen.String(), s) {
		select {
		case c, ok := <-f.chunks:
			if !ok {
				f.t.Fatalf("the log ended before %q:\n%s", s, f.seen.String())
			}
			f.seen.WriteString(c)
		case <-timeout:
			f.t.Fatalf("the log did not show %q in 10s:\n%s", s, f.seen.String())
		}
	}
	return f.seen.String()
}

// ninepEHLOSize returns the SIZE line of the daemon's EHLO reply.
func ninepEHLOSize(t *testing.T, d *Daemon) string {
	t.Helper()
	r := dialRaw(t, d.SMTP[0], "")
	r.Expect("220 ")
	r.Send("EHLO client.example.net")
	for _, l := range r.Expect("250 ") {
		if strings.HasPrefix(l, "250-SIZE ") {
			return l
		}
	}
	return ""
}

// ninepDataReply sends a transaction from the loopback address from up to DATA
// and returns the reply to DATA.
func ninepDataReply(t *testing.T, d *Daemon, from, rcpt string) string {
	t.Helper()
	r := ehlo(t, d, from)
	r.Send("MAIL FROM:<glenda@sender.example>")
	r.Expect("250 ")
	r.Send("RCPT TO:<" + rcpt + ">")
	r.Expect("250 ")
	r.Send("DATA")
	l := r.Reply()
	r.C.Close()
	return l[len(l)-1]
}

// TestNinepSteersSMTP: what ctl and whitelist are told through 9P, the
// SMTP server does at once; the log file streams its sessions as they
// happen, and stats counts them.
func TestNinepSteersSMTP(t *testing.T) {
	d := startNinep(t, "maxsize 10k\n")
	fsys := fstest.Dial(t, d.NineP[1])
	log := ninepFollowLog(t, fsys)
	log.until("smtpfs started")
	before := ninepStats(t, fsys)

	if got := ninepEHLOSize(t, d); got != "250-SIZE 10240" {
		t.Errorf("EHLO before: %q", got)
	}
	ninepCtl(t, fsys, "maxsize 20k\n")
	if got := ninepEHLOSize(t, d); got != "250-SIZE 20480" {
		t.Errorf("EHLO after maxsize 20k: %q", got)
	}
	log.until("smtpd: ehlo from 127.0.0.1 as client.example.net")
	// The queue file has the same limit.
	big := "From: glenda@example.org\nTo: bob@localhost\n\n" + strings.Repeat("x", 15<<10) + "\n"
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, big); err != nil {
		t.Errorf("15k message to the queue file with maxsize 20k: %v", err)
	}
	ninepCtl(t, fsys, "maxsize 10k\n")
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, big); ninepErr(err) != "message too long" {
		t.Errorf("15k message to the queue file with maxsize 10k: %v", err)
	}

	const greylisted = "451 4.7.1 please try again soon from the same IP."
	if got := ninepDataReply(t, d, "127.0.0.5", "bob@localhost"); !strings.HasPrefix(got, "354 ") {
		t.Fatalf("DATA without greylisting: %q", got)
	}
	ninepCtl(t, fsys, "greylist on\n")
	if got := ninepDataReply(t, d, "127.0.0.5", "bob@localhost"); got != greylisted {
		t.Errorf("DATA with greylisting: %q", got)
	}
	if err := fstest.Write(fsys, "whitelist", plan9.OWRITE, "127.0.0.5 a test client\n"); err != nil {
		t.Fatal(err)
	}
	if got := ninepDataReply(t, d, "127.0.0.5", "bob@localhost"); !strings.HasPrefix(got, "354 ") {
		t.Errorf("DATA once whitelisted: %q", got)
	}
	ninepCtl(t, fsys, "unwhitelist 127.0.0.5\n")
	if got := ninepDataReply(t, d, "127.0.0.5", "bob@localhost"); got != greylisted {
		t.Errorf("DATA once unwhitelisted: %q", got)
	}
	if got := fstest.Read(t, fsys, "whitelist"); got != "" {
		t.Errorf("whitelist after unwhitelist: %q", got)
	}

	seen := log.until("9p: ctl: unwhitelist 127.0.0.5")
	for _, want := range []string{"9p: ctl: maxsize 20k\n", "smtpd: ehlo from 127.0.0.5 as client.example.net\n",
		"9p: ctl: greylist on\n", "9p: whitelist: 127.0.0.5 a test client\n"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the log did not show %q:\n%s", want, seen)
		}
	}
	after := ninepStats(t, fsys)
	for name, delta := range map[string]int64{"connections": 6, "greylisted": 2, "whitelist.entries": 0, "9p.logreaders": 0} {
		if got := after[name] - before[name]; got != delta {
			t.Errorf("stats %s went from %d to %d, want +%d", name, before[name], after[name], delta)
		}
	}
	if after["9p.logreaders"] != 1 {
		t.Errorf("9p.logreaders %d, want 1", after["9p.logreaders"])
	}
}

// TestNinepCtlRoundTrip: what ctl reads is what it takes. Written back, it
// changes nothing; written to a fresh daemon's ctl, or used as its
// smtpd.conf, it gives that daemon the same configuration.
func TestNinepCtlRoundTrip(t *testing.T) {
	d := startNinep(t, "ournets 10.0.0.0/8 192.168.1.7\nourdomains example.org *.example.net\n")
	fsys := fstest.Dial(t, d.NineP[0])
	ninepCtl(t, fsys, "evil 203.0.113.0/24\nsmarthost tcp!mx.example.org!587\nbackoff 1m 5m 1h\n"+
		"delaywarn off\ngreylist on\nmailer /bin/sh -c 'cat > /dev/null'\ndefaultdomain example.org\n")
	text := fstest.Read(t, fsys, "ctl")
	for _, want := range []string{"\nournets 10.0.0.0/8 192.168.1.7\n", "\nevil 203.0.113.0/24\n",
		"\nsmarthost tcp!mx.example.org!587\n", "\nmailer /bin/sh -c 'cat > /dev/null'\n"} {
		if !strings.Contains("\n"+text, want) {
			t.Errorf("ctl lacks %q:\n%s", want, text)
		}
	}
	ninepCtl(t, fsys, text)
	if got := fstest.Read(t, fsys, "ctl"); got != text {
		t.Errorf("ctl written back to itself:\n%s\nwas:\n%s", got, text)
	}
	fresh := fstest.Dial(t, startNinep(t, "").NineP[0])
	ninepCtl(t, fresh, text)
	if got := fstest.Read(t, fresh, "ctl"); got != text {
		t.Errorf("ctl of a fresh daemon told it:\n%s\nwant:\n%s", got, text)
	}
	fromFile := fstest.Dial(t, startNinep(t, text).NineP[0])
	if got := fstest.Read(t, fromFile, "ctl"); got != text {
		t.Errorf("ctl of a daemon with it as smtpd.conf:\n%s\nwant:\n%s", got, text)
	}
}

// ninepRcWords splits a line of the queue file into its words, rc's way: a
// word in single quotes may hold spaces, and a quote inside is doubled.
func ninepRcWords(line string) []string {
	var words []string
	for i := 0; i < len(line); {
		if line[i] == ' ' {
			i++
			continue
		}
		var w strings.Builder
		for i < len(line) && line[i] != ' ' {
			if line[i] != '\'' {
				w.WriteByte(line[i])
				i++
				continue
			}
			for i++; i < len(line); i++ {
				if line[i] == '\'' {
					if i+1 < len(line) && line[i+1] == '\'' {
						w.WriteByte('\'')
						i++
						continue
					}
					i++
					break
				}
				w.WriteByte(line[i])
			}
		}
		words = append(words, w.String())
	}
	return words
}

// ninepQueue reads the queue file: one message a line, as its eight
// fields.
func ninepQueue(t *testing.T, fsys *client.Fsys) [][]string {
	t.Helper()
	var msgs [][]string
	for _, line := range strings.Split(fstest.Read(t, fsys, "queue"), "\n") {
		if line == "" {
			continue
		}
		f := ninepRcWords(line)
		if len(f) != 8 {
			t.Fatalf("queue line %q has %d fields, want 8", line, len(f))
		}
		msgs = append(msgs, f)
	}
	return msgs
}

// ninepWaitQueue waits for the queue file to list one message, for which ok
// is true, and returns its fields.
func ninepWaitQueue(t *testing.T, fsys *client.Fsys, what string, ok func(fields []string) bool) []string {
	t.Helper()
	var q [][]string
	testlib.WaitFor(t, 10*time.Second, what, func() bool {
		q = ninepQueue(t, fsys)
		return len(q) == 1 && ok(q[0])
	})
	return q[0]
}

// TestNinepQueue: a message written to the queue file is delivered to a
// local Maildir and through the smarthost. While the smarthost says 451,
// the message shows in the queue file with the reason; hold and release,
// queue.d/<id> and rm act on it.
func TestNinepQueue(t *testing.T) {
	sink := testlib.NewSink(t, testlib.SinkOptions{})
	refuse := func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" {
			return smtp.Replyf(451, "4.3.0", "not now")
		}
		return nil
	}
	sink.SetReply(refuse)
	d := startNinep(t, "smarthost tcp!127.0.0.1!"+sink.Port()+"\n")
	fsys := fstest.Dial(t, d.NineP[0])
	log := ninepFollowLog(t, fsys)
	msg := "From: glenda@example.org\nTo: rob@example.net, bob@localhost\nSubject: through 9P\n\nHello, Rob.\n"
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, msg[:40], msg[40:]); err != nil {
		t.Fatalf("writing the queue file: %v", err)
	}
	// The attempt is recorded just after it is logged.
	q := ninepWaitQueue(t, fsys, "the first attempt", func(m []string) bool { return m[5] == "1" })
	id := q[0]
	if want := id + " glenda@example.org rob@example.net"; strings.Join(q[:3], " ") != want || !strings.Contains(q[7], "451 4.3.0 not now") {
		t.Errorf("queue line %q, want %s ... '...451 4.3.0 not now...'", q, want)
	}
	for _, want := range []string{fmt.Sprintf("9p: queue: queued %s, %d bytes\n", id, len(msg)), "runq: sent " + id + " to bob@localhost via local\n",
		"runq: deferred " + id + " to rob@example.net: "} {
		log.until(want)
	}
	if m := boxMessages(t, d.Root, "bob"); len(m) != 1 || !strings.Contains(m[0], "\nSubject: through 9P\n") || !strings.HasSuffix(m[0], "\n\nHello, Rob.\n") {
		t.Errorf("bob's Maildir has %q", m)
	}

	ninepCtl(t, fsys, "hold "+id+"\n")
	if q := ninepQueue(t, fsys); len(q) != 1 || q[0][6] != "held" {
		t.Errorf("queue after hold: %q", q)
	}
	if n := ninepStats(t, fsys)["queue.held"]; n != 1 {
		t.Errorf("stats queue.held %d, want 1", n)
	}
	if got := fstest.Read(t, fsys, "queue.d/"+id); !strings.Contains(got, "\r\nSubject: through 9P\r\n") || !strings.HasSuffix(got, "Hello, Rob.\r\n") {
		t.Errorf("queue.d/%s = %q", id, got)
	}
	sink.SetReply(nil)
	ninepCtl(t, fsys, "release "+id+"\n")
	got := sink.Wait(t, 1, 10*time.Second)[0]
	if got.From != "glenda@example.org" || strings.Join(got.Rcpts, " ") != "rob@example.net" || !strings.Contains(string(got.Data), "Subject: through 9P\r\n") {
		t.Errorf("the smarthost got %+v", got)
	}
	log.until("runq: done " + id)
	// The message leaves the list just after that line.
	testlib.WaitFor(t, 10*time.Second, "the queue empty after delivery", func() bool { return len(ninepQueue(t, fsys)) == 0 })

	// rm queue.d/<id> deletes a message.
	sink.SetReply(refuse)
	if err := fstest.Write(fsys, "queue", plan9.OWRITE, "From: glenda@example.org\nTo: ken@example.com\n\nBye.\n"); err != nil {
		t.Fatal(err)
	}
	q = ninepWaitQueue(t, fsys, "ken's first attempt", func(m []string) bool { return m[2] == "ken@example.com" && m[5] == "1" })
	if err := fsys.Remove("queue.d/" + q[0]); err != nil {
		t.Fatalf("rm queue.d/%s: %v", q[0], err)
	}
	log.until("9p: queue.d: rm " + q[0])
	if q := ninepQueue(t, fsys); len(q) != 0 {
		t.Errorf("queue after rm: %q", q)
	}
	st := ninepStats(t, fsys)
	for name, want := range map[string]int64{"queue.length": 0, "queue.queued": 2, "queue.delivered": 2, "queue.deleted": 1, "queue.held": 0} {
		if st[name] != want {
			t.Errorf("stats %s %d, want %d", name, st[name], want)
		}
	}
	if n := len(sink.Messages()); n != 1 {
		t.Errorf("the smarthost got %d messages, want 1", n)
	}
}
