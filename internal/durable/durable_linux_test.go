package durable

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

// TestSyncfsReportsErrors: syncfs(2) reports writeback errors since Linux
// 5.8; before it, and when the release cannot be read, it is not trusted.
func TestSyncfsReportsErrors(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"6.18.44-fc-v657", true},
		{"5.8.0", true},
		{"5.8-rc1", true},
		{"5.7-rc7", false},
		{"6.1", true},
		{"5.10.0-28-amd64", true},
		{"5.15.0-91-generic", true},
		{"10.0", true},
		{"5.7.19", false},
		{"5.4.0-150-generic", false},
		{"4.19.0-25-amd64", false},
		{"3.10.0-1160.el7.x86_64", false},
		{"5", false},
		{"", false},
		{"x.y", false},
	} {
		if got := syncfsReportsErrors(tc.release); got != tc.want {
			t.Errorf("syncfsReportsErrors(%q) = %v, want %v", tc.release, got, tc.want)
		}
	}
	if !kernelSyncfsOK() {
		t.Logf("this kernel's syncfs is not trusted: every batch is fsynced file by file")
	}
}
