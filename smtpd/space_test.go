package smtpd

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMinFree: MAIL is refused with 452 4.3.1 when the mail root's file
// system has less than minfree plus the declared SIZE free, and so is a
// message at its end when the space went meanwhile. The figure is read at
// most once a second.
func TestMinFree(t *testing.T) {
	clk := &clock{now: time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC)}
	var mu sync.Mutex
	free, calls := int64(80<<20), 0
	var statErr error
	setFree := func(n int64, err error) {
		mu.Lock()
		defer mu.Unlock()
		free, statErr = n, err
		clk.add(2 * time.Second)
	}
	ts := newTestServerWith(t, "minfree 64m", func(s *Server) {
		s.Now = clk.Now
		s.statfs = func(dir string) (int64, error) {
			mu.Lock()
			defer mu.Unlock()
			if dir != s.Root {
				t.Errorf("statfs %s, want the mail root %s", dir, s.Root)
			}
			calls++
			return free, statErr
		}
	})
	c := ts.ehloed("192.0.2.7")
	for _, tc := range []struct{ param, want string }{
		{"", "250 "},
		{" SIZE=10000000", "250 "},
		{" SIZE=20000000", "452 4.3.1 insufficient system storage"},
	} {
		c.send("MAIL FROM:<a@sender.net>" + tc.param)
		if got := c.reply(); !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("MAIL%s with 80 MiB free: got %q, want %q", tc.param, got, tc.want)
		}
		c.send("RSET")
		c.expect("250 ")
	}
	mu.Lock()
	if calls != 1 {
		t.Errorf("statfs called %d times within a second, want once", calls)
	}
	mu.Unlock()
	// The space goes while the message comes.
	c.open("a@sender.net", "b@example.org")
	setFree(60<<20, nil)
	c.send("Subject: s")
	c.send("")
	c.send(".")
	c.expect("452 4.3.1 insufficient system storage")
	c.send("MAIL FROM:<a@sender.net>")
	c.expect("452 4.3.1 ")
	if m := boxFiles(t, ts.Root, "b"); len(m) != 0 {
		t.Errorf("delivered %d messages", len(m))
	}
	// A file system that cannot say is no reason to refuse mail.
	setFree(0, errors.New("statfs: input/output error"))
	if got := c.mail("a@sender.net", []string{"b@example.org"}, ""); got[0] != "250 2.5.0 sent" {
		t.Errorf("statfs failing: %q", got)
	}
	if !strings.Contains(ts.logbuf.String(), "free space of the mail root: statfs: input/output error") {
		t.Errorf("log:\n%s", ts.logbuf)
	}
}
