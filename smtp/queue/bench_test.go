package queue

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

// BenchmarkPut measures durable Puts of 5 KB messages by 1, 10 and 50
// concurrent producers, each Put returning only once its message is
// durable: "group" shares the syncs of files and directory among the
// Puts waiting (group commit), "each" fsyncs every file and the directory
// for every Put alone. msgs/s is the headline, p50-ms, p99-ms and max-ms
// the times of Puts; syncs/put is how many syncs a Put cost on average.
func BenchmarkPut(b *testing.B) {
	for _, mode := range []string{"group", "each"} {
		for _, producers := range []int{1, 10, 50} {
			b.Run(fmt.Sprintf("%s/%d", mode, producers), func(b *testing.B) {
				benchPut(b, mode == "each", producers)
			})
		}
	}
}

func benchPut(b *testing.B, single bool, producers int) {
	q, err := Open(testlib.BenchDir(b), DefaultSettings(), nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	q.st.single = single
	msg := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=\r\n"), 5120/66)
	rcpts := []string{"bob@example.com"}
	b.SetBytes(int64(len(msg)))
	testlib.Concurrently(b, producers, "msgs/s", func(int) error {
		_, err := q.Put(context.Background(), "alice@example.org", rcpts, bytes.NewReader(msg))
		return err
	})
	if runs := q.st.syncs.Runs(); !single && runs > 0 {
		b.ReportMetric(float64(runs)/float64(b.N), "syncs/put")
	}
}

// BenchmarkList lists a queue of 100,000 messages, and renders the
// listing as the 9P queue file does, one line per message: the file must
// be readable in well under 2 s.
func BenchmarkList(b *testing.B) {
	q := newQueue(nil, DefaultSettings(), nil, nil, nil, realClock{})
	now := time.Now()
	for i := range 100000 {
		e := &entry{id: newID(now.Add(time.Duration(i) * time.Millisecond)), hidx: -1,
			envelope: envelope{from: "alice@example.org", arrived: now, size: 5120, rcpts: []*rcpt{
				{addr: fmt.Sprintf("user%d@example.com", i), tries: 3, next: now.Add(time.Hour), err: "451 4.7.1 greylisted, try again later"},
				{addr: fmt.Sprintf("other%d@example.net", i), next: now}}}}
		q.insert(e)
	}
	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			if n := len(q.List()); n != 100000 {
				b.Fatalf("listed %d", n)
			}
		}
	})
	b.Run("render", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			for _, it := range q.List() {
				fmt.Fprintf(&buf, "%s %s %s %d %s %d %s %s\n", it.ID, quote(it.From), strings.Join(it.Rcpts, ","), it.Size,
					now.Sub(it.Arrived).Round(time.Second), it.Tries, it.Next.Format(time.RFC3339), quote(it.LastErr))
			}
		}
	})
}
