package test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
)

// TestQueueSubmitLineEnds: through the 9P queue file, a header with a
// lone CR (which would end a line when sent, and make a field of what
// follows, a Bcc: among them) fails the write that ends the header, with
// a clear error, and nothing is queued; LF and CRLF line ends, mixed,
// still work; and a lone CR in the body ends a line, so "\r.\r" is sent
// as a line holding a dot, not as the end of the data.
func TestQueueSubmitLineEnds(t *testing.T) {
	w := startQueue(t, "smarthost %SINK\n")
	bad := "From: alice@example.org\nTo: bob@remote.example\nSubject: hi\rBcc: eve@hidden.example\n"
	err := fstest.Write(w.fsys, "queue", plan9.OWRITE, bad, "\nbody\n")
	if want := `invalid header line 3: a CR not followed by LF: "Subject: hi\rBcc: eve@hidden.example"`; err == nil || err.Error() != want {
		t.Errorf("a header with a lone CR: %v, want %s", err, want)
	}
	if q := w.list(); len(q) != 0 {
		t.Errorf("the refused message was queued: %v", q)
	}

	msg := "From: alice@example.org\r\nTo: bob@remote.example\nSubject: mixed\r\n\r\none\r.\rRCPT TO:<eve@hidden.example>\r\n.\r\ntwo tok-cr\n"
	if err := fstest.Write(w.fsys, "queue", plan9.OWRITE, msg); err != nil {
		t.Fatal(err)
	}
	m := w.sink.Wait(t, 1, 15*time.Second)[0]
	if !slices.Equal(m.Rcpts, []string{"bob@remote.example"}) {
		t.Errorf("recipients at the sink %q", m.Rcpts)
	}
	data := string(m.Data)
	if !strings.Contains(data, "From: alice@example.org\r\nTo: bob@remote.example\r\nSubject: mixed\r\n") ||
		!strings.HasSuffix(data, "\r\n\r\none\r\n.\r\nRCPT TO:<eve@hidden.example>\r\n.\r\ntwo tok-cr\r\n") {
		t.Errorf("the sink got\n%q", data)
	}
	for _, s := range w.sink.Sessions() {
		for _, c := range s {
			if strings.Contains(c, "eve") {
				t.Errorf("a line of the body was taken for a command: %q", s)
			}
		}
	}
	w.waitEmpty()
	if n := len(w.sink.Messages()); n != 1 {
		t.Errorf("the sink has %d messages, want 1", n)
	}
}
