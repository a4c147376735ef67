package queue

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"smtpfs/smtp"
)

// crashDir names the queue directory to the helper process.
const crashDir = "SMTPFS_QUEUE_CRASH_DIR"

// crashMsg is the message for token: about 5 KB that can be made again
// from the token alone, so that whole and damaged copies can be told.
func crashMsg(token string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Token: %s\r\nSubject: crash test\r\n\r\n", token)
	for i := range 80 {
		fmt.Fprintf(&b, "%03d %s %s\r\n", i, token, token)
	}
	return b.Bytes()
}

// tokenOf takes the token out of a message.
func tokenOf(msg []byte) string {
	line, _, _ := bytes.Cut(msg, []byte("\r\n"))
	return strings.TrimPrefix(string(line), "Token: ")
}

// A mailbox delivers by writing each message, durably, to a file named by
// its token: what a far-end server that said 250 holds.
type mailbox struct{ dir string }

func (m mailbox) Send(ctx context.Context, dest string, mail smtp.Mail, msg io.Reader) ([]error, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(m.dir, "tmp."+nonce())
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(b); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	f.Close()
	if err := os.Rename(tmp, filepath.Join(m.dir, tokenOf(b))); err != nil {
		return nil, err
	}
	d, err := os.Open(m.dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return nil, d.Sync()
}

// TestCrashHelper is the process TestCrash kills: 16 producers Put
// messages as fast as they can while the runner delivers them, and each
// Put that returned is reported on standard output as "ok id token".
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDir)
	if dir == "" {
		t.Skip("the helper process of TestCrash")
	}
	s := DefaultSettings()
	s.Backoff = []time.Duration{time.Second}
	q, err := Open(filepath.Join(dir, "queue"), s, mailbox{filepath.Join(dir, "mbox")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go q.Run(context.Background())
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for range 16 {
		go func() {
			for {
				var r [8]byte
				crand.Read(r[:])
				token := hex.EncodeToString(r[:])
				id, err := q.Put(context.Background(), "alice@example.org", []string{"bob@example.com", "carol@example.net"},
					bytes.NewReader(crashMsg(token)))
				mu.Lock()
				if err != nil {
					fmt.Fprintf(out, "error %v\n", err)
				} else {
					fmt.Fprintf(out, "ok %s %s\n", id, token)
				}
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrash kills the helper with SIGKILL at a random moment, several
// times over one directory, and checks after each kill that every message
// whose Put had returned is whole in the queue or in the mailbox, that
// Open leaves no temporary file, and that nothing half-written is loaded.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: not with -short")
	}
	dir := t.TempDir()
	mbox := filepath.Join(dir, "mbox")
	if err := os.Mkdir(mbox, 0700); err != nil {
		t.Fatal(err)
	}
	acked := map[string]string{} // id → token
	for round := range 6 {
		n := crashRound(t, dir, acked)
		q, err := Open(filepath.Join(dir, "queue"), DefaultSettings(), mailbox{mbox}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		queued := map[string]bool{}
		for _, it := range q.List() {
			b, err := os.ReadFile(q.st.path(it.ID, ".msg"))
			if err != nil || !bytes.Equal(b, crashMsg(tokenOf(b))) || int64(len(b)) != it.Size {
				t.Errorf("round %d: %s is loaded but damaged (%v): %q", round, it.ID, err, b)
			}
			if len(it.Rcpts) == 0 || len(it.Rcpts) > 2 {
				t.Errorf("round %d: %s has recipients %q", round, it.ID, it.Rcpts)
			}
			queued[tokenOf(b)] = true
		}
		lost := 0
		for id, token := range acked {
			if queued[token] {
				continue
			}
			if b, err := os.ReadFile(filepath.Join(mbox, token)); err != nil || !bytes.Equal(b, crashMsg(token)) {
				t.Errorf("round %d: %s (token %s) acknowledged, neither queued nor delivered whole: %v", round, id, token, err)
				lost++
			}
		}
		if left := files(t, filepath.Join(dir, "queue", "tmp")); len(left) != 0 {
			t.Errorf("round %d: tmp/ after Open: %q", round, left)
		}
		if bad := files(t, filepath.Join(dir, "queue", "bad")); len(bad) != 0 {
			t.Errorf("round %d: records found damaged: %q", round, bad)
		}
		t.Logf("round %d: %d acknowledged in this round, %d in all, %d queued, %d delivered, %d lost",
			round, n, len(acked), len(queued), len(files(t, mbox)), lost)
		q.Close()
	}
}

// crashRound runs the helper until a random moment after its first
// acknowledgement, kills it, and adds what it acknowledged to acked.
func crashRound(t *testing.T, dir string, acked map[string]string) int {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$")
	cmd.Env = append(os.Environ(), crashDir+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	n := 0
	var kill <-chan time.Time
	deadline := time.After(time.Minute)
	for line := range lines {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "ok" {
			acked[f[1]] = f[2]
			n++
		}
		if kill == nil {
			kill = time.After(time.Duration(20+rand.IntN(500)) * time.Millisecond)
		}
		select {
		case <-kill:
			cmd.Process.Kill() // SIGKILL
			kill = make(chan time.Time)
		case <-deadline:
			t.Fatal("the helper never got going")
		default:
		}
	}
	cmd.Wait()
	return n
}
