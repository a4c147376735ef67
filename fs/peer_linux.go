package fs

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// peerUID returns the uid of the process at the other end of nc. For a
// Unix socket the kernel says it (SO_PEERCRED). For TCP the client's own
// socket is looked up in /proc/net/tcp and /proc/net/tcp6, the sockets of
// this machine (of our network name space): its local address is the
// peer's, its remote address ours, and its uid column names the user who
// made it. A peer with no such socket is not a process here: errRemote
// when it comes from beyond loopback, else an error (it cannot be told).
func peerUID(nc net.Conn) (int, error) {
	switch c := nc.(type) {
	case *net.UnixConn:
		return unixPeerUID(c)
	case *net.TCPConn:
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		us := c.LocalAddr().(*net.TCPAddr).AddrPort()
		uid, found, err := procNetUID(peer, us)
		switch {
		case err != nil:
			return -1, fmt.Errorf("cannot tell whose it is: %v", err)
		case found:
			return uid, nil
		case peer.Addr().Unmap().IsLoopback():
			return -1, errors.New("cannot tell whose it is: its socket is not in /proc/net/tcp")
		}
		return -1, errRemote
	}
	return -1, fmt.Errorf("cannot tell whose it is: a %s connection", nc.LocalAddr().Network())
}

func unixPeerUID(uc *net.UnixConn) (int, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *syscall.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return -1, fmt.Errorf("cannot tell whose it is: SO_PEERCRED: %v", err)
	}
	return int(cred.Uid), nil
}

// procNetUID finds the TCP socket of this machine whose local address is
// local and remote address remote, and returns its owner's uid. An IPv4
// connection may be in either table (an IPv6 socket talks to IPv4 through
// mapped addresses), an IPv6 one only in tcp6.
func procNetUID(local, remote netip.AddrPort) (uid int, found bool, err error) {
	tables := []string{"/proc/net/tcp6"}
	if local.Addr().Unmap().Is4() {
		tables = []string{"/proc/net/tcp", "/proc/net/tcp6"}
	}
	read := 0
	for _, name := range tables {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return -1, false, err
		}
		uid, found, err = findSocket(f, local, remote)
		f.Close()
		if err != nil || found {
			return uid, found, err
		}
		read++
	}
	if read == 0 {
		return -1, false, errors.New("no /proc/net/tcp")
	}
	return -1, false, nil
}

// findSocket reads a table in the format of /proc/net/tcp (and tcp6):
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//	 0: 0100007F:A3C2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  65534        0 53211 ...
//
// and returns the uid of the socket with the local and remote addresses
// given. The addresses are written as the kernel holds them: each 32-bit
// word of the address in the machine's byte order, the port as a number.
func findSocket(r io.Reader, local, remote netip.AddrPort) (uid int, found bool, err error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	sc := bufio.NewScanner(r)
	header := true
	for sc.Scan() {
		if header { // the column names
			header = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			return -1, false, fmt.Errorf("unexpected line %q", sc.Text())
		}
		l, err1 := parseProcAddr(f[1])
		r, err2 := parseProcAddr(f[2])
		if err1 != nil || err2 != nil {
			return -1, false, fmt.Errorf("unexpected line %q", sc.Text())
		}
		if l != local || r != remote {
			continue
		}
		n, err := strconv.ParseUint(f[7], 10, 32)
		if err != nil {
			return -1, false, fmt.Errorf("unexpected uid in %q", sc.Text())
		}
		return int(n), true, nil
	}
	return -1, false, sc.Err()
}

// parseProcAddr parses an address of /proc/net/tcp: 0100007F:1F90 is
// 127.0.0.1:8080 on a little-endian machine. IPv4-mapped IPv6 addresses
// come back as IPv4.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || len(h) != 8 && len(h) != 32 {
		return netip.AddrPort{}, errors.New("bad address")
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, errors.New("bad address")
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}
