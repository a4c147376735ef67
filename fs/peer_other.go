//go:build !linux

package fs

import (
	"errors"
	"net"
	"os"
)

// peerUID returns the uid of the process at the other end of nc, as far
// as this system lets us tell. A Unix socket is taken to be ours: its mode
// 0600, in a directory of mode 0700, keeps other users out. For TCP
// nothing tells the uid here, so a peer on loopback is refused, and one
// from beyond is errRemote.
func peerUID(nc net.Conn) (int, error) {
	switch c := nc.(type) {
	case *net.UnixConn:
		return os.Geteuid(), nil
	case *net.TCPConn:
		if c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().IsLoopback() {
			return -1, errors.New("cannot tell whose it is on this system")
		}
		return -1, errRemote
	}
	return -1, errors.New("cannot tell whose it is")
}
