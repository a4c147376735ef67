package testlib

import (
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrently runs b.N operations spread over workers goroutines, op(w)
// being worker w's, and reports their rate (per second, under unit, such
// as "msgs/s") and the median, 99th percentile and worst time of one, in
// milliseconds (p50-ms, p99-ms, max-ms). An error stops its worker and
// fails the benchmark. Setup done before the call is not timed.
func Concurrently(b *testing.B, workers int, unit string, op func(w int) error) {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := op(w); err != nil {
					b.Error(err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), unit)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}

// BenchDir returns a directory for a benchmark's files, removed at the
// end: in $SMTPFS_BENCH_DIR when it is set, else a temporary one. fsync
// figures mean something only on a real disk, and the temporary
// directory may be a tmpfs.
func BenchDir(b testing.TB) string {
	parent := os.Getenv("SMTPFS_BENCH_DIR")
	if parent == "" {
		return b.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "smtpfs-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
