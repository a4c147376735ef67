package smtpd

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"smtpfs/smtpd/conf"
)

// BenchmarkIdleSessions opens n sessions that sit idle after the
// greeting, and reports the memory each costs (heap and stacks, both ends
// of the connection, as this process holds them): the target is 10,000
// idle sessions in 300 MB, 30 KB each. Run it with
//
//	go test -run '^$' -bench IdleSessions -benchtime 3x ./smtpd/
func BenchmarkIdleSessions(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			cfg := conf.Default()
			cfg.MaxPerIP = n + 1
			srv := &Server{Root: b.TempDir(), Config: func() *conf.Config { return cfg }}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(l)
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				srv.Shutdown(ctx)
			}()
			var perSession float64
			for b.Loop() {
				before := inUse()
				conns := make([]net.Conn, 0, n)
				buf := make([]byte, 64)
				for range n {
					c, err := net.Dial("tcp", l.Addr().String())
					if err != nil {
						b.Fatalf("after %d sessions: %v", len(conns), err)
					}
					if _, err := io.ReadAtLeast(c, buf, len("220 ")); err != nil {
						b.Fatal(err)
					}
					conns = append(conns, c)
				}
				perSession = float64(inUse()-before) / float64(n)
				for _, c := range conns {
					c.Close()
				}
			}
			b.ReportMetric(perSession, "bytes/session")
			b.ReportMetric(perSession*10000/1e6, "MB/10k")
		})
	}
}

func inUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
