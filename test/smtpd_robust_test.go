package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmtpdSpoolFailure: with the spool unusable (<root>/tmp a plain file,
// as for a full disk), a message over the 1 MiB kept in memory gets 451
// once its real end has been read; the lines after the 1 MiB point are
// not run as commands (the reviewer's probe).
func TestSmtpdSpoolFailure(t *testing.T) {
	d := startMail(t, "")
	tmp := filepath.Join(d.Root, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0600); err != nil {
		t.Fatal(err)
	}
	r := ehlo(t, d, "127.0.0.5")
	line := strings.Repeat("x", 998) + "\r\n"
	body := "Subject: big\r\n\r\n" + strings.Repeat(line, 1100) + "NOOP smuggled\r\nRCPT TO:<carol@localhost>\r\n"
	if got := r.transaction("a@sender.example", []string{"bob@localhost"}, body); !strings.HasPrefix(got, "451 4.3.0 ") {
		t.Errorf("got %q, want 451 4.3.0", got)
	}
	r.Send("RSET")
	r.Expect("250 2.0.0 ok")
	if m := boxMessages(t, d.Root, "bob"); len(m) != 0 {
		t.Errorf("bob got %d messages", len(m))
	}
}
