package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSigner signs every message with a made-up field naming the message's
// first line, and fails on a message whose Subject says so.
type fakeSigner struct {
	mu sync.Mutex
	n  int
}

func (f *fakeSigner) Sign(msg io.Reader) ([]byte, error) {
	b, err := io.ReadAll(msg)
	if err != nil {
		return nil, err
	}
	if strings.Contains(string(b), "Subject: unsignable") {
		return nil, errors.New("dkim: no single From domain to sign for")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	first, _, _ := strings.Cut(string(b), "\r\n")
	return []byte(fmt.Sprintf("DKIM-Signature: n=%d; over=%q\r\n", f.n, first)), nil
}

// TestSigned: with a Signer, a message written to the queue file and the
// DSNs the queue makes are stored signed, the signature on top of the
// message it covers; what Put is given is stored as it came; a message
// that cannot be signed is stored unsigned, and the log says why.
func TestSigned(t *testing.T) {
	h := newHarness(t, testSettings())
	h.q.SetSigner(&fakeSigner{})
	read := func(id string) string {
		b, err := os.ReadFile(h.q.st.path(id, ".msg"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	id, err := h.q.Submit(context.Background(), []byte("From: a@example.org\nTo: b@example.com\nSubject: x\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := read(id); !strings.HasPrefix(got, "DKIM-Signature: n=1; over=\"From: a@example.org\"\r\nFrom: a@example.org\r\n") {
		t.Errorf("submitted message as queued:\n%s", got)
	}
	put := h.put("alice@example.org", "bad@example.com")
	if got := read(put); strings.Contains(got, "DKIM-Signature") {
		t.Errorf("Put signed what it was given:\n%s", got)
	}
	id, err = h.q.Submit(context.Background(), []byte("From: a@example.org\nTo: b@example.com\nSubject: unsignable\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := read(id); strings.Contains(got, "DKIM-Signature") {
		t.Errorf("unsignable message:\n%s", got)
	}
	if !strings.Contains(h.log.String(), "not DKIM-signed: dkim: no single From domain to sign for") {
		t.Errorf("log:\n%s", h.log)
	}

	// The bounce of the message Put queued (its recipient is refused) is
	// signed; the submitted message is delivered as stored, signed.
	h.q.Delete(id)
	dsns := make(chan string, 10)
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			dsns <- string(c.msg)
			return nil, nil
		}
		errs := make([]error, len(c.rcpts))
		for i, r := range c.rcpts {
			if strings.HasPrefix(r, "bad") {
				errs[i] = remoteErr{noSuchUser, "mx1.example.com"}
			}
		}
		return errs, nil
	})
	h.run()
	select {
	case got := <-dsns:
		if !strings.HasPrefix(got, "DKIM-Signature: n=2; over=\"From: Mail Delivery System <MAILER-DAEMON@mx.test>\"\r\n") {
			t.Errorf("DSN as sent:\n%s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no DSN; log:\n%s", h.log)
	}
}
