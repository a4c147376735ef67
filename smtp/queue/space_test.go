package queue

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"smtpfs/smtp"
)

// TestMinFree: while the queue's file system has less than
// Settings.MinFree free, Put and Submit refuse with a temporary 452 4.3.1
// and write nothing; a DSN is still queued (it is small, and a failed
// message's DSN frees the message's room); with room again, they accept.
func TestMinFree(t *testing.T) {
	s := testSettings()
	s.MinFree = 1 << 20
	h := newHarness(t, s)
	var free atomic.Int64
	free.Store(1<<20 - 1)
	h.q.st.free = func() (int64, error) { return free.Load(), nil }

	_, err := h.q.Put(context.Background(), "alice@example.org", []string{"bob@example.com"}, strings.NewReader(testMsg("alice@example.org")))
	var r *smtp.Reply
	if !errors.As(err, &r) || r.Code != 452 || r.Enh != "4.3.1" || !smtp.IsTemporary(err) || err.Error() != "452 4.3.1 insufficient system storage" {
		t.Errorf("Put with too little room: %v, want 452 4.3.1 insufficient system storage", err)
	}
	if _, err := h.q.Submit(context.Background(), []byte("From: alice@example.org\nTo: bob@example.com\n\nhi\n")); !errors.Is(err, ErrInsufficientStorage) {
		t.Errorf("Submit with too little room: %v", err)
	}
	if err := h.q.CheckSpace(); !errors.Is(err, ErrInsufficientStorage) {
		t.Errorf("CheckSpace with too little room: %v", err)
	}
	if n := len(h.q.List()); n != 0 {
		t.Errorf("%d messages queued with too little room", n)
	}
	if left := files(t, h.dir); len(left) != 0 {
		t.Errorf("files written with too little room: %q", left)
	}
	if !strings.Contains(h.log.String(), "refused a message: 1048575 bytes free on the queue's file system, minfree 1048576") {
		t.Errorf("log:\n%s", h.log)
	}

	// A DSN is queued all the same.
	h.d.setResult(func(ctx context.Context, c call) ([]error, error) {
		if c.from == "" {
			return nil, nil
		}
		return []error{remoteErr{noSuchUser, "mx1.example.com"}}, nil
	})
	free.Store(1 << 30)
	id := h.put("alice@example.org", "bad@example.com")
	free.Store(0)
	h.run()
	if ids := h.wait(2); !slices.Contains(ids, id) { // the message, then its DSN
		t.Fatalf("finished %q; log:\n%s", ids, h.log)
	}
	if calls := h.d.take(); len(calls) != 2 || calls[1].from != "" {
		t.Errorf("no DSN delivered while the disk was full: %+v", calls)
	}

	// Room again: Put accepts; and MinFree 0 never asks.
	free.Store(1 << 20)
	h.put("alice@example.org", "bob@example.com")
	s.MinFree = 0
	h.q.SetSettings(s)
	h.q.st.free = func() (int64, error) { t.Error("free space asked with MinFree 0"); return 0, nil }
	h.put("alice@example.org", "bob@example.com")
}

// TestStatfsFree: the real free space of the test's file system is found.
func TestStatfsFree(t *testing.T) {
	n, err := statfsFree(t.TempDir())
	if err == errNoStatfs {
		t.Skip(err)
	}
	if err != nil || n <= 0 {
		t.Errorf("statfsFree = %d, %v", n, err)
	}
}
