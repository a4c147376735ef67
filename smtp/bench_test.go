package smtp_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"smtpfs/smtp"
	"smtpfs/test/testlib"
)

// BenchmarkDeliver measures whole sessions against a sink on loopback: one
// message of 10 KiB, to 1 and to 100 recipients (pipelined).
func BenchmarkDeliver(b *testing.B) {
	msg := []byte("Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 160))
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("rcpts=%d", n), func(b *testing.B) {
			s := testlib.NewSink(b, testlib.SinkOptions{})
			c := &smtp.Client{Hello: "bench.example", Timeouts: fast}
			var rcpts []string
			for i := 0; i < n; i++ {
				rcpts = append(rcpts, fmt.Sprintf("u%d@example.org", i))
			}
			dest := "tcp!127.0.0.1!" + s.Port()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Deliver(context.Background(), dest, "", rcpts, bytes.NewReader(msg)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConvert measures the conversion of a 1 MiB message.
func BenchmarkConvert(b *testing.B) {
	msg := []byte("From: glenda\nTo: kremvax!ken, rob\nSubject: x\n\n" + strings.Repeat("a line of text, as mail has them, long enough to count\n", 19000))
	cv := smtp.Conversion{Addresser: smtp.Addresser{HostDomain: "gnot.example.com"}}
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		r, err := smtp.Convert(bytes.NewReader(msg), cv)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, r)
	}
}
