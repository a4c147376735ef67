package test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// TestQueueControl: the queue file lists what is queued (id, sender,
// recipients, size, age, tries, next attempt, last error rc-quoted); hold
// stops attempts, release resumes them, delete removes a message without
// a bounce, and an unknown id changes nothing.
func TestQueueControl(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\nbackoff 1h\n")
	busy := smtp.Replyf(451, "4.3.0", "it's busy, try later")
	accept := make(chan bool, 1)
	w.sink.SetReply(func(phase, arg string) *smtp.Reply {
		if phase == "RCPT" && len(accept) == 0 {
			return busy
		}
		return nil
	})
	w.send("alice@example.org", []string{"bob@remote.example", "carol@remote.example"}, testMsg("one", "tok-one"))
	w.send("", []string{"dan@remote.example"}, testMsg("two", "tok-two")+strings.Repeat("filler\r\n", 100))
	var q []queueLine
	testlib.WaitFor(t, 15*time.Second, "two deferred messages", func() bool {
		q = w.list()
		return len(q) == 2 && q[0].Tries == "1" && q[1].Tries == "1"
	})
	one, two := q[0], q[1]
	if one.From != "alice@example.org" || one.Rcpts != "bob@remote.example,carol@remote.example" || two.From != "<>" || two.Rcpts != "dan@remote.example" {
		t.Errorf("senders and recipients: %+v", q)
	}
	for _, l := range q {
		fi, err := os.Stat(filepath.Join(w.d.Root, "queue", l.ID+".msg"))
		if err != nil || l.Size != strconv.FormatInt(fi.Size(), 10) {
			t.Errorf("%s: size %s, the file %v", l.ID, l.Size, err)
		}
		if !regexp.MustCompile(`^[0-9]+s$`).MatchString(l.Age) {
			t.Errorf("%s: age %q, want a few seconds", l.ID, l.Age)
		}
		if next, err := time.ParseDuration(l.Next); err != nil || next < 50*time.Minute || next > 67*time.Minute {
			t.Errorf("%s: next %q, want about an hour", l.ID, l.Next)
		}
		if l.LastErr != busy.Error() {
			t.Errorf("%s: last error %q, want %q", l.ID, l.LastErr, busy.Error())
		}
	}
	// The quote in the error is doubled inside rc quotes.
	if text := fstest.Read(t, w.fsys, "queue"); !strings.Contains(text, " '451 4.3.0 it''s busy, try later'\n") {
		t.Errorf("queue file:\n%s", text)
	}

	// hold: no attempt on kick; the envelope says so.
	w.mustCtl("hold " + one.ID)
	w.mustCtl("kick")
	testlib.WaitFor(t, 15*time.Second, "the second attempt of "+two.ID, func() bool {
		q = w.list()
		return len(q) == 2 && q[1].Tries == "2"
	})
	if q[0].Next != "held" || q[0].Tries != "1" {
		t.Errorf("held message after kick: %+v", q[0])
	}
	if env, _ := os.ReadFile(filepath.Join(w.d.Root, "queue", one.ID+".env")); !strings.Contains(string(env), "\nheld\n") {
		t.Errorf("the envelope of a held message:\n%s", env)
	}

	// release: due at once.
	w.mustCtl("release " + one.ID)
	testlib.WaitFor(t, 15*time.Second, "the second attempt of "+one.ID, func() bool {
		q = w.list()
		return len(q) == 2 && q[0].Tries == "2" && q[0].Next != "held"
	})

	// An unknown id fails the write and changes nothing.
	if err := w.ctl("delete " + two.ID + " nonesuch"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("delete of an unknown id: %v", err)
	}
	if n := len(w.list()); n != 2 {
		t.Errorf("%d messages after a failed delete, want 2", n)
	}

	// delete: gone from the list and the disk, no bounce.
	w.mustCtl("delete " + two.ID)
	if q = w.list(); len(q) != 1 || q[0].ID != one.ID {
		t.Errorf("after delete: %+v", q)
	}
	if _, err := os.Stat(filepath.Join(w.d.Root, "queue", two.ID+".msg")); !os.IsNotExist(err) {
		t.Errorf("the deleted message is still on disk: %v", err)
	}
	w.waitRunq("deleted " + two.ID)

	// The server takes mail again: retry delivers the one left.
	accept <- true
	w.mustCtl("retry " + one.ID)
	m := w.sink.Wait(t, 1, 15*time.Second)
	w.waitEmpty()
	if len(m) != 1 || !slices.Equal(m[0].Rcpts, []string{"bob@remote.example", "carol@remote.example"}) {
		t.Errorf("the sink has %d messages: %+v", len(m), m)
	}
	if s := fstest.Read(t, w.fsys, "stats"); !strings.Contains(s, "\nqueue.dsns 0\n") || !strings.Contains(s, "\nqueue.deleted 1\n") {
		t.Errorf("stats:\n%s", s)
	}
	if n := len(boxMessages(t, w.d.Root, "alice")); n != 0 {
		t.Errorf("alice has %d messages, want no bounce", n)
	}
}

// TestQueueSubmit: a message written to the 9P queue file is queued with
// its envelope from the header (Bcc: removed from the message, a bare name
// a local user, qualified with our mail domain) and delivered; a header
// without recipients fails the write.
func TestQueueSubmit(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	msg := "From: Alice <alice@example.org>\nTo: bob@remote.example\nCc: dave\nBcc: secret@hidden.example\nSubject: by 9P\n\ntoken tok-9p\n"
	if err := fstest.Write(w.fsys, "queue", plan9.OWRITE, msg[:20], msg[20:]); err != nil {
		t.Fatal(err)
	}
	m := w.sink.Wait(t, 1, 15*time.Second)[0]
	if m.From != "alice@example.org" || !slices.Equal(m.Rcpts, []string{"bob@remote.example", "secret@hidden.example"}) {
		t.Errorf("envelope at the sink: from <%s> to %q", m.From, m.Rcpts)
	}
	data := string(m.Data)
	for _, want := range []string{"From: Alice <alice@example.org>\r\nTo: bob@remote.example\r\nCc: dave@example.org\r\nSubject: by 9P\r\n", "\r\nMessage-ID: <", "\r\nDate: ", "\r\n\r\ntoken tok-9p\r\n"} {
		if !strings.Contains(data, want) {
			t.Errorf("the sink got no %q in\n%s", want, data)
		}
	}
	if strings.Contains(data, "secret") {
		t.Errorf("Bcc: was sent:\n%s", data)
	}
	// dave is a bare name: dave@example.org, ours, so local.
	if b := w.waitBox("dave", 1); !strings.Contains(b[0], "Delivered-To: dave@example.org\n") || !strings.Contains(b[0], "\ntoken tok-9p\n") {
		t.Errorf("dave has\n%s", b[0])
	}
	err := fstest.Write(w.fsys, "queue", plan9.OWRITE, "From: alice@example.org\nSubject: nobody\n\nbody\n")
	if err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Errorf("a message without recipients: %v", err)
	}
	w.waitEmpty()
	if n := len(w.sink.Messages()); n != 1 {
		t.Errorf("the sink has %d messages, want 1", n)
	}
}

// TestQueueMX: without a smarthost, each domain's MX hosts are tried in
// order of preference, the next when one cannot be reached; a domain that
// does not exist bounces at once.
func TestQueueMX(t *testing.T) {
	sink := testlib.NewSink(t, testlib.SinkOptions{})
	mx1 := testlib.NewSink(t, testlib.SinkOptions{Listen: "127.0.0.2:" + sink.Port()})
	dns := testlib.NewDNS(t, `
pref.example.     MX 10 mx1.pref.example.
pref.example.     MX 20 mx2.example.
mx1.pref.example. A 127.0.0.2
fall.example.     MX 10 dead.example.
fall.example.     MX 20 mx2.example.
dead.example.     A 127.0.0.3
mx2.example.      A 127.0.0.1
gone.example      NXDOMAIN
`)
	t.Setenv("SMTPFS_RESOLVER", dns.Addr)
	t.Setenv("SMTPFS_SMTP_PORT", sink.Port())
	w := &queueWorld{t: t, sink: sink}
	w.d = startMail(t, queueConf)
	w.fsys = fstest.Dial(t, w.d.NineP[0])
	w.send("alice@example.org", []string{"a@pref.example", "b@fall.example", "c@gone.example"}, testMsg("mx", "tok-mx"))
	if m := mx1.Wait(t, 1, 15*time.Second)[0]; !slices.Equal(m.Rcpts, []string{"a@pref.example"}) {
		t.Errorf("the first MX of pref.example got %q", m.Rcpts)
	}
	if m := sink.Wait(t, 1, 15*time.Second)[0]; !slices.Equal(m.Rcpts, []string{"b@fall.example"}) {
		t.Errorf("the second MX of fall.example got %q", m.Rcpts)
	}
	dsn := testlib.ParseDSN(t, []byte(w.waitBox("alice", 1)[0]))
	if r := dsn.Recipients; len(r) != 1 || r[0]["Final-Recipient"] != "rfc822; c@gone.example" || r[0]["Status"] != "5.1.2" ||
		r[0]["Diagnostic-Code"] != "X-smtpfs; dns: gone.example: domain not found" {
		t.Errorf("DSN for a domain that does not exist: %v", r)
	}
	w.waitEmpty()
	if n := len(mx1.Messages()) + len(sink.Messages()); n != 2 {
		t.Errorf("%d messages delivered, want 2", n)
	}
}

// TestQueueSmtpdProgram: the smtpd program, run by inetd beside the
// daemon on the same mail root, queues a message into the directory; the
// daemon's runner finds it on kick and delivers it.
func TestQueueSmtpdProgram(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	netdir := t.TempDir()
	os.WriteFile(filepath.Join(netdir, "remote"), []byte("127.0.0.1!4321\n"), 0644)
	os.WriteFile(filepath.Join(netdir, "local"), []byte("127.0.0.1!25\n"), 0644)
	r := startSmtpdPipe(t, "-R", w.d.Root, "-n", netdir)
	r.Expect("220 ")
	r.Send("EHLO client.example.net")
	r.Expect("250 ")
	if got := r.transaction("alice@example.org", []string{"bob@remote.example"}, testMsg("inetd", "tok-inetd")); got != "250 2.5.0 sent" {
		t.Fatalf("smtpd: %q\n%s", got, r.stderr)
	}
	r.Send("QUIT")
	r.Expect("221 ")
	r.wait(t)
	if ids := queueRecords(t, w.d.Root); len(ids) != 1 {
		t.Fatalf("%d records in queue/, want 1", len(ids))
	}
	w.mustCtl("kick")
	m := w.sink.Wait(t, 1, 15*time.Second)[0]
	if m.From != "alice@example.org" || !strings.Contains(string(m.Data), "token tok-inetd\r\n") {
		t.Errorf("the sink got from <%s>\n%s", m.From, m.Data)
	}
	w.waitEmpty()
	w.waitRunq("found ")
}
