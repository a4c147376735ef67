package queue

import "testing"

func TestParseDirty(t *testing.T) {
	tests := []struct {
		text string
		want int64
		ok   bool
	}{
		{"MemTotal:       24684092 kB\nMemFree:        21083588 kB\nDirty:           1197528 kB\nWriteback:             0 kB\n", 1197528 << 10, true},
		{"Dirty: 0 kB\n", 0, true},
		{"MemTotal:       24684092 kB\n", 0, false},
		{"Dirty:           1197528 MB\n", 0, false},
		{"Dirty:           -5 kB\n", 0, false},
		{"Dirty:           lots kB\n", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseDirty([]byte(tt.text))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseDirty(%q) = %d, %v; want %d, %v", tt.text, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := dirtyBytes(); !ok {
		t.Errorf("no Dirty line in this machine's /proc/meminfo")
	}
}
