package test

import (
	"fmt"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"smtpfs/smtp/mailauth"
	"smtpfs/test/testlib"
)

// BenchmarkMailAuthAccept measures what mail authentication costs the
// real daemon: messages per second accepted into a Maildir from 10 and
// 50 concurrent sessions (net/smtp, one connection each, a message after
// another) with spf and dmarc off, and with both on (enforce: SPF at MAIL,
// one RSA 2048 DKIM signature verified and DMARC evaluated after DATA,
// the Authentication-Results field written), the answers coming from a
// fake DNS server on loopback, which the daemon's cache asks once a TTL.
// The client is at 127.0.0.5, an address the sender's SPF record allows;
// every message passes SPF, DKIM and DMARC. The messages are 5 KB. Run it
// with
//
//	SMTPFS_BENCH_DIR=/var/tmp go test -run '^$' -bench MailAuthAccept -benchtime 2000x ./test/
func BenchmarkMailAuthAccept(b *testing.B) {
	keys, err := mailauth.OpenKeyStore(filepath.Join(b.TempDir(), "dkim"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := keys.NewKey("sender.example", "sel", "rsa"); err != nil {
		b.Fatal(err)
	}
	if err := keys.Select(map[string][]string{"sender.example": {"sel"}}); err != nil {
		b.Fatal(err)
	}
	msg := "From: Alice <alice@sender.example>\r\nTo: bob@example.org\r\nSubject: benchmark\r\nDate: Mon, 1 Jun 2026 10:00:00 +0000\r\n\r\n" +
		strings.Repeat("The quick brown fox jumps over the lazy dog, again and again.\r\n", 80)
	sig, err := (&mailauth.Signer{Keys: keys}).Sign(strings.NewReader(msg))
	if err != nil {
		b.Fatal(err)
	}
	signed := append(sig, msg...)
	dns := testlib.NewDNS(b, `sender.example. 300 IN TXT "v=spf1 ip4:127.0.0.5 -all"
_dmarc.sender.example. 300 IN TXT "v=DMARC1; p=reject"
`+strings.TrimSpace(strings.Split(keys.DNSRecords("sender.example"), "\n")[1]))
	b.Setenv("SMTPFS_RESOLVER", dns.Addr)
	for _, auth := range []string{"off", "enforce"} {
		for _, sessions := range []int{10, 50} {
			b.Run(fmt.Sprintf("auth=%s/sessions=%d", auth, sessions), func(b *testing.B) {
				benchAuthAccept(b, auth, sessions, signed)
			})
		}
	}
}

// procCPU returns the CPU time, user and system, process pid has used
// (/proc/pid/stat, in clock ticks of 10 ms).
func procCPU(b *testing.B, pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	var ticks int64
	for _, v := range f[11:13] { // utime, stime
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func benchAuthAccept(b *testing.B, auth string, sessions int, msg []byte) {
	root := filepath.Join(testlib.BenchDir(b), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	conf := "defaultdomain example.org\nhostname mx.example.org\nspf " + auth + "\ndmarc " + auth + "\nmaxperip 1000\n"
	if err := os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte(conf), 0644); err != nil {
		b.Fatal(err)
	}
	d := startDaemon(b, root)
	clients := make([]*smtp.Client, sessions)
	for i := range clients {
		dialer := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}}
		conn, err := dialer.Dial("tcp", d.SMTP[0])
		if err != nil {
			b.Fatal(err)
		}
		c, err := smtp.NewClient(conn, "127.0.0.1")
		if err == nil {
			err = c.Hello("mail.sender.example")
		}
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	// One message first, so that the DNS answers are in the cache and a
	// failure shows before the timing.
	if err := sendOn(clients[0], "alice@sender.example", []string{"bob@example.org"}, msg); err != nil {
		b.Fatal(err)
	}
	cpu0 := procCPU(b, d.Cmd.Process.Pid)
	testlib.Concurrently(b, sessions, "msgs/s", func(w int) error {
		return sendOn(clients[w], "alice@sender.example", []string{"bob@example.org"}, msg)
	})
	b.ReportMetric((procCPU(b, d.Cmd.Process.Pid)-cpu0).Seconds()*1000/float64(b.N), "cpu-ms/msg")
	log, _ := os.ReadFile(filepath.Join(root, "log", "smtpd"))
	if auth != "off" && !strings.Contains(string(log), "dmarc=pass from='sender.example'") {
		b.Errorf("the messages did not pass DMARC:\n%s", log)
	}
}
