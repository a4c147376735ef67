package main

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// profile starts a CPU profile into $SMTPFS_CPUPROFILE when it is set (a
// tool for measuring, off by default: README, Performance) and returns
// what ends it, at shutdown.
func profile() (stop func(), err error) {
	path := os.Getenv("SMTPFS_CPUPROFILE")
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("SMTPFS_CPUPROFILE: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("SMTPFS_CPUPROFILE: %v", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
