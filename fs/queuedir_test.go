package fs_test

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"

	"9fans.net/go/plan9"

	"smtpfs/fs"
	"smtpfs/fs/fstest"
	"smtpfs/smtp/queue"
)

// msgQueue is a queue whose messages can be read, for queue.d.
type msgQueue struct {
	*queueBackend
	msgs map[string]string
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func (q msgQueue) OpenMessage(id string) (fs.MessageReader, error) {
	m, ok := q.msgs[id]
	if !ok {
		return nil, fmt.Errorf("%w: message %s", fs.ErrNotFound, id)
	}
	return nopCloser{bytes.NewReader([]byte(m))}, nil
}

func TestQueueDir(t *testing.T) {
	big := strings.Repeat("A line of a long message body.\n", 4000) // > one read
	q := msgQueue{&queueBackend{}, map[string]string{"q1": message, "q2": big}}
	e := newEnv(t, func(c *fs.Config) { c.Queue = q })
	e.q = q.queueBackend
	e.q.set([]queue.Item{{ID: "q1", Rcpts: []string{"bob@example.net"}}, {ID: "q2"}, {ID: "q3"}, {ID: "../x"}}, nil)
	fsys := fstest.Dial(t, e.ds)

	fid, err := fsys.Open("queue.d", plan9.OREAD)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := fid.Dirreadall()
	fid.Close()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		names = append(names, fmt.Sprintf("%s %v", d.Name, d.Mode))
	}
	sort.Strings(names)
	if got, want := strings.Join(names, ", "), "q1 --r--r--r--, q2 --r--r--r--, q3 --r--r--r--"; got != want {
		t.Errorf("queue.d: %s, want %s", got, want)
	}
	st1, _ := fsys.Stat("queue.d/q1")
	st2, _ := fsys.Stat("queue.d/q1")
	if st1 == nil || st2 == nil || st1.Qid != st2.Qid {
		t.Errorf("qid of q1 changed between walks: %v %v", st1, st2)
	}

	for id, want := range q.msgs {
		fid, err := fsys.Open("queue.d/"+id, plan9.OREAD)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(fid)
		fid.Close()
		if err != nil || string(got) != want {
			t.Errorf("queue.d/%s: %d bytes (%v), want %d", id, len(got), err, len(want))
		}
	}
	for _, tc := range []struct {
		what string
		err  error
		want string
	}{
		{"open missing message", func() error { _, err := fsys.Open("queue.d/q3", plan9.OREAD); return err }(), "not found: message q3"},
		{"walk to a gone id", func() error { _, err := fsys.Stat("queue.d/q9"); return err }(), "file does not exist"},
		{"write a message", func() error { _, err := fsys.Open("queue.d/q1", plan9.OWRITE); return err }(), "permission denied"},
		{"create in queue.d", func() error { _, err := fsys.Create("queue.d/new", plan9.OWRITE, 0644); return err }(), "permission denied"},
		{"remove queue.d", fsys.Remove("queue.d"), "permission denied"},
		{"remove a message", fsys.Remove("queue.d/q1"), ""},
	} {
		if errText(tc.err) != tc.want {
			t.Errorf("%s: %q, want %q", tc.what, errText(tc.err), tc.want)
		}
	}
	if acts := e.ctl.actions(); len(acts) != 1 || acts[0].Verb != "delete" || strings.Join(acts[0].Args, " ") != "q1" {
		t.Errorf("ctl actions after rm: %v, want delete q1", acts)
	}
	waitLog(t, e, "9p: queue.d: rm q1\n")
}

// genQueue counts listings and has a Generation the test moves.
type genQueue struct {
	msgQueue
	mu    sync.Mutex
	gen   uint64
	lists int
}

func (q *genQueue) List() []queue.Item {
	q.mu.Lock()
	q.lists++
	q.mu.Unlock()
	return q.msgQueue.List()
}

func (q *genQueue) Generation() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.gen
}

// TestQueueDirGeneration: walks into queue.d list the queue once while
// its Generation stays, so that `ls -l queue.d` costs one listing, not
// one per message; a new Generation shows the new ids.
func TestQueueDirGeneration(t *testing.T) {
	q := &genQueue{msgQueue: msgQueue{&queueBackend{}, map[string]string{"q1": message, "q2": message}}}
	e := newEnv(t, func(c *fs.Config) { c.Queue = q })
	e.q = q.queueBackend
	e.q.set([]queue.Item{{ID: "q1"}, {ID: "q2"}}, nil)
	fsys := fstest.Dial(t, e.ds)
	for range 10 {
		for _, id := range []string{"q1", "q2"} {
			if _, err := fsys.Stat("queue.d/" + id); err != nil {
				t.Fatal(err)
			}
		}
	}
	q.mu.Lock()
	lists := q.lists
	q.mu.Unlock()
	if lists != 1 {
		t.Errorf("20 walks listed the queue %d times, want 1", lists)
	}
	e.q.set([]queue.Item{{ID: "q1"}, {ID: "q2"}, {ID: "q3"}}, nil)
	if _, err := fsys.Stat("queue.d/q3"); err == nil {
		t.Errorf("q3 found before the Generation changed: the listing was not kept")
	}
	q.mu.Lock()
	q.gen++
	q.mu.Unlock()
	if _, err := fsys.Stat("queue.d/q3"); err != nil {
		t.Errorf("q3 after the Generation changed: %v", err)
	}
}
