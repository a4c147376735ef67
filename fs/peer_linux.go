package fs

import (
	"net"
	"os"
	"syscall"
)

// peerAllowed reports whether the process at the other end of a Unix
// socket runs as our user or as root (SO_PEERCRED). The socket is mode
// 0600 already; this closes the moment between its creation and chmod.
// Other connections are allowed.
func peerAllowed(nc net.Conn) bool {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return true
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil || cerr != nil {
		return false
	}
	return int(cred.Uid) == os.Getuid() || cred.Uid == 0
}
