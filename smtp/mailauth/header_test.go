package mailauth

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadHeader(t *testing.T) {
	// A line of 25 buffers of the reader: its CRLF comes in a read of its
	// own.
	long := "X: " + strings.Repeat("a", 25*4096-3) + "\r\n"
	tests := []struct {
		in, want string
		err      bool
	}{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n\r\n", false},
		{"A: 1\nB: 2\n\nbody\n", "A: 1\nB: 2\n\n", false},
		{"A: 1\r\nB: 2", "A: 1\r\nB: 2", false},
		// A long line whose end comes apart from it is not the empty line.
		{long + "B: 2\r\n\r\nbody", long + "B: 2\r\n\r\n", false},
		{"A: " + strings.Repeat("a", maxHeader) + "\r\n\r\n", "", true},
	}
	for _, tt := range tests {
		got, err := readHeader(bufio.NewReaderSize(strings.NewReader(tt.in), 4096))
		if (err != nil) != tt.err || !tt.err && string(got) != tt.want {
			t.Errorf("readHeader(%.20q...) = %.40q..., %v", tt.in, got, err)
		}
	}
}
