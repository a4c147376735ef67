package test

import (
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"smtpfs/test/testlib"
)

// BenchmarkQueueAccept measures how many messages per second the real
// daemon accepts, each answered 250 only once it is fsynced, from 1, 10
// and 50 concurrent SMTP sessions (net/smtp, one connection each, a
// message after another, as smtp-source -d does): "queue" sends them to
// a remote recipient, queued and relayed meanwhile to a sink on loopback
// (smtp-source → smtpfs → smtp-sink); "maildir" to a local user. The
// messages are 5 KB. Besides msgs/s it reports the median, 99th
// percentile and worst time from MAIL to the 250 after the data. Run it
// with
//
//	go test -run '^$' -bench QueueAccept ./test/
//
// and SMTPFS_BENCH_DIR set to a directory on the disk to measure (the
// default temporary directory may be a tmpfs, where fsync costs nothing).
func BenchmarkQueueAccept(b *testing.B) {
	for _, dest := range []struct{ name, rcpt string }{{"queue", "bob@remote.example"}, {"maildir", "bob@example.org"}} {
		for _, sessions := range []int{1, 10, 50} {
			b.Run(fmt.Sprintf("%s/sessions=%d", dest.name, sessions), func(b *testing.B) {
				benchAccept(b, dest.rcpt, sessions)
			})
		}
	}
}

// benchMsg is a 5 KB message.
var benchMsg = []byte("From: alice@example.org\r\nTo: bob@remote.example\r\nSubject: benchmark\r\n\r\n" +
	strings.Repeat("The quick brown fox jumps over the lazy dog, again and again.\r\n", 80))

func benchAccept(b *testing.B, rcpt string, sessions int) {
	sink := testlib.NewSink(b, testlib.SinkOptions{})
	root := filepath.Join(testlib.BenchDir(b), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	conf := queueConf + "smarthost tcp!127.0.0.1!" + sink.Port() + "\n"
	if err := os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte(conf), 0644); err != nil {
		b.Fatal(err)
	}
	d := startDaemon(b, root)
	clients := make([]*smtp.Client, sessions)
	for i := range clients {
		c, err := smtp.Dial(d.SMTP[0])
		if err == nil {
			err = c.Hello("bench.example")
		}
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	testlib.Concurrently(b, sessions, "msgs/s", func(w int) error {
		return sendOn(clients[w], "alice@example.org", []string{rcpt}, benchMsg)
	})
}

// sendOn runs one transaction on c; net/smtp's Close of the data writer
// returns nil only for a 250.
func sendOn(c *smtp.Client, from string, rcpts []string, msg []byte) error {
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}
