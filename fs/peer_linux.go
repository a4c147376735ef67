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

	"golang.org/x/sys/unix"
)

// Whose a TCP connection is, on Linux.
//
// The client's own socket is on this machine (in our network name space)
// when the client is: its local address is the peer's and its remote
// address ours. The kernel says its state, the uid of the user who made
// it and its inode, through the sock_diag netlink interface, asked for
// that one socket by its addresses (an "inet_diag" exact lookup: no scan,
// whatever the number of connections), or, where the kernel has no
// inet_diag, in the lines of /proc/net/tcp and tcp6.
//
// A socket's uid is that of its file, and a socket that its last process
// closed has no file: the kernel keeps it a while (FIN-WAIT, then as a
// TIME-WAIT stub) with inode 0, and an uid of 0 in TIME-WAIT whoever made
// it. A client that sends its whole conversation and closes at once would
// pass for root if the check came after the close. So the check asks for
// a socket that still has its file (inode != 0) in a connected state:
// ESTABLISHED, or FIN-WAIT-1/2, a socket whose process shut down its
// writing side (shutdown(SHUT_WR)) and still holds it: its uid is still
// its file's. Anything else is refused, and the reason logged.
//
// Races, and why the answer holds:
//   - The client closes after the check: it was the owner's when checked,
//     and what it sent before is the owner's.
//   - The addresses name another socket than the one that sent: a socket
//     at the same four addresses can be made only when the first is gone,
//     and can connect only to a new socket of ours, since our end answers
//     for those addresses while it is open (it is hashed until we close it
//     or the peer resets it). So our end is asked after the lookup: reset
//     (state CLOSE) is refused; otherwise the socket found is the one
//     that connected to it.
//   - A socket passed to another process (SCM_RIGHTS, fork, exec of a
//     setuid program) keeps the uid of the user who made it: root's or the
//     owner's socket handed to someone else is served, their choice.
//   - A client of an IPv6 socket talking to IPv4 (mapped addresses) is
//     found by its IPv4 addresses, as the kernel hashes it.

// TCP states, as include/net/tcp_states.h numbers them.
const (
	tcpEstablished = 1
	tcpFinWait1    = 4
	tcpFinWait2    = 5
	tcpClose       = 7
)

var tcpStateNames = [...]string{"", "ESTABLISHED", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2",
	"TIME-WAIT", "CLOSE", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING"}

func tcpStateName(s uint8) string {
	if int(s) < len(tcpStateNames) && s > 0 {
		return tcpStateNames[s]
	}
	return fmt.Sprintf("state %d", s)
}

// A sockInfo is what the kernel says of a TCP socket.
type sockInfo struct {
	state uint8
	uid   int
	inode uint64
}

// owner returns the uid of the user whose socket it is, or why that
// cannot be told.
func (s sockInfo) owner() (int, error) {
	switch {
	case s.inode == 0:
		return -1, fmt.Errorf("its socket was closed before it could be checked (%s, no owner left)", tcpStateName(s.state))
	case s.state != tcpEstablished && s.state != tcpFinWait1 && s.state != tcpFinWait2:
		return -1, fmt.Errorf("its socket is not connected (%s)", tcpStateName(s.state))
	}
	return s.uid, nil
}

// peerUID returns the uid of the process at the other end of nc. For a
// Unix socket the kernel says it (SO_PEERCRED). For TCP, see above; a
// peer whose socket is not on this machine is errRemote when it comes
// from beyond loopback, else an error (it cannot be told).
func peerUID(nc net.Conn) (int, error) {
	switch c := nc.(type) {
	case *net.UnixConn:
		return unixPeerUID(c)
	case *net.TCPConn:
		return tcpPeerUID(c)
	}
	return -1, fmt.Errorf("cannot tell whose it is: a %s connection", nc.LocalAddr().Network())
}

func tcpPeerUID(c *net.TCPConn) (int, error) {
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	us := c.LocalAddr().(*net.TCPAddr).AddrPort()
	sk, found, err := lookupSocket(peer, us)
	if err != nil {
		return -1, fmt.Errorf("cannot tell whose it is: %v", err)
	}
	// Our end, after the lookup: see "Races" above.
	if st, err := tcpState(c); err != nil {
		return -1, fmt.Errorf("cannot tell whose it is: %v", err)
	} else if st == tcpClose {
		return -1, errors.New("it reset the connection before it could be checked")
	}
	switch {
	case found:
		return sk.owner()
	case peer.Addr().Unmap().IsLoopback():
		return -1, errors.New("cannot tell whose it is: its socket is not found")
	}
	return -1, errRemote
}

// tcpState returns the state of our end of c (TCP_INFO).
func tcpState(c *net.TCPConn) (uint8, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, err
	}
	if ierr != nil {
		return 0, fmt.Errorf("TCP_INFO: %v", ierr)
	}
	return info.State, nil
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

// lookupSocket finds the TCP socket of this machine whose local address
// is local and remote address remote, by sock_diag, or in /proc/net/tcp
// where sock_diag cannot answer. sock_diag answers ENOENT both for a
// socket it does not have and when the kernel has no inet_diag: a miss is
// believed only when the socket at the other end, remote to local, which
// is ours and open, is found.
func lookupSocket(local, remote netip.AddrPort) (sockInfo, bool, error) {
	sk, found, err := diagLookup(local, remote)
	switch {
	case err == nil && found:
		return sk, true, nil
	case err == nil:
		if _, ours, err := diagLookup(remote, local); err == nil && ours {
			return sockInfo{}, false, nil
		}
	}
	return procNetLookup(local, remote)
}

// Netlink and sock_diag, from include/uapi/linux/{netlink,sock_diag,inet_diag}.h.
const (
	nlmsgHdrLen     = 16 // struct nlmsghdr
	diagReqLen      = 56 // struct inet_diag_req_v2
	diagMsgLen      = 72 // struct inet_diag_msg
	nlmsgError      = 2
	nlmFRequest     = 1
	sockDiagByFam   = 20 // SOCK_DIAG_BY_FAMILY
	diagSeq         = 1
	diagReplyBufLen = 8192
)

// diagLookup asks sock_diag for the TCP socket with local address local
// and remote address remote. found is false when the kernel says ENOENT.
func diagLookup(local, remote netip.AddrPort) (sk sockInfo, found bool, err error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return sockInfo{}, false, fmt.Errorf("sock_diag: %v", err)
	}
	defer unix.Close(fd)
	// The kernel answers within the send; the timeout is a safeguard.
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return sockInfo{}, false, fmt.Errorf("sock_diag: %v", err)
	}
	if err := unix.Sendto(fd, diagRequest(local, remote), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return sockInfo{}, false, fmt.Errorf("sock_diag: %v", err)
	}
	buf := make([]byte, diagReplyBufLen)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return sockInfo{}, false, fmt.Errorf("sock_diag: %v", err)
	}
	return parseDiagReply(buf[:n], local, remote)
}

// diagRequest is a netlink message asking for one TCP socket by its
// addresses: an IPv4 pair (mapped IPv6 ones too) as AF_INET, which finds
// IPv6 sockets talking to IPv4, as the kernel hashes them by IPv4.
func diagRequest(local, remote netip.AddrPort) []byte {
	b := make([]byte, nlmsgHdrLen+diagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFam)
	ne.PutUint16(b[6:], nlmFRequest) // alone: an exact lookup, not a dump
	ne.PutUint32(b[8:], diagSeq)
	r := b[nlmsgHdrLen:]
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	r[0] = unix.AF_INET6
	if la.Is4() && ra.Is4() {
		r[0] = unix.AF_INET
	}
	r[1] = unix.IPPROTO_TCP
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	putSockID(r[8:], la, ra, local.Port(), remote.Port())
	ne.PutUint32(r[8+40:], ^uint32(0)) // cookie: INET_DIAG_NOCOOKIE
	ne.PutUint32(r[8+44:], ^uint32(0))
	return b
}

// putSockID writes the addresses of a struct inet_diag_sockid: source and
// destination ports in network order, then the addresses (IPv4 in the
// first four bytes). The interface stays 0 (any).
func putSockID(b []byte, src, dst netip.Addr, sport, dport uint16) {
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	if src.Is4() {
		a, d := src.As4(), dst.As4()
		copy(b[4:], a[:])
		copy(b[20:], d[:])
	} else {
		a, d := src.As16(), dst.As16()
		copy(b[4:], a[:])
		copy(b[20:], d[:])
	}
}

// parseDiagReply reads the kernel's answer to diagRequest: a
// SOCK_DIAG_BY_FAMILY message holding a struct inet_diag_msg, or an
// NLMSG_ERROR. The socket described must be the one asked for.
func parseDiagReply(b []byte, local, remote netip.AddrPort) (sockInfo, bool, error) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		n := int(ne.Uint32(b[0:]))
		if n < nlmsgHdrLen || n > len(b) {
			return sockInfo{}, false, errors.New("sock_diag: truncated reply")
		}
		typ, seq, body := ne.Uint16(b[4:]), ne.Uint32(b[8:]), b[nlmsgHdrLen:n]
		b = b[min(len(b), (n+3)&^3):]
		if seq != diagSeq {
			continue
		}
		switch typ {
		case nlmsgError:
			if len(body) < 4 {
				return sockInfo{}, false, errors.New("sock_diag: truncated error")
			}
			errno := -int32(ne.Uint32(body))
			if syscall.Errno(errno) == syscall.ENOENT {
				return sockInfo{}, false, nil
			}
			return sockInfo{}, false, fmt.Errorf("sock_diag: %v", syscall.Errno(errno))
		case sockDiagByFam:
			return diagMsg(body, local, remote)
		}
	}
	return sockInfo{}, false, errors.New("sock_diag: no answer")
}

// diagMsg reads a struct inet_diag_msg:
//
//	family[1] state[1] timer[1] retrans[1] sockid[48] expires[4] rqueue[4] wqueue[4] uid[4] inode[4]
func diagMsg(m []byte, local, remote netip.AddrPort) (sockInfo, bool, error) {
	if len(m) < diagMsgLen {
		return sockInfo{}, false, errors.New("sock_diag: truncated socket")
	}
	id := m[4:52]
	var src, dst netip.Addr
	switch m[0] {
	case unix.AF_INET:
		src, dst = netip.AddrFrom4([4]byte(id[4:8])), netip.AddrFrom4([4]byte(id[20:24]))
	case unix.AF_INET6:
		src, dst = netip.AddrFrom16([16]byte(id[4:20])).Unmap(), netip.AddrFrom16([16]byte(id[20:36])).Unmap()
	default:
		return sockInfo{}, false, fmt.Errorf("sock_diag: a socket of family %d", m[0])
	}
	got := [2]netip.AddrPort{
		netip.AddrPortFrom(src, binary.BigEndian.Uint16(id[0:])),
		netip.AddrPortFrom(dst, binary.BigEndian.Uint16(id[2:])),
	}
	want := [2]netip.AddrPort{
		netip.AddrPortFrom(local.Addr().Unmap(), local.Port()),
		netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()),
	}
	if got != want { // a listener, when the client's socket is gone
		return sockInfo{}, false, nil
	}
	ne := binary.NativeEndian
	return sockInfo{state: m[1], uid: int(ne.Uint32(m[64:])), inode: uint64(ne.Uint32(m[68:]))}, true, nil
}

// procNetLookup finds the socket in /proc/net/tcp and /proc/net/tcp6. An
// IPv4 connection may be in either table (an IPv6 socket talks to IPv4
// through mapped addresses), an IPv6 one only in tcp6.
func procNetLookup(local, remote netip.AddrPort) (sk sockInfo, found bool, err error) {
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
			return sockInfo{}, false, err
		}
		sk, found, err = findSocket(f, local, remote)
		f.Close()
		if err != nil || found {
			return sk, found, err
		}
		read++
	}
	if read == 0 {
		return sockInfo{}, false, errors.New("no sock_diag and no /proc/net/tcp")
	}
	return sockInfo{}, false, nil
}

// findSocket reads a table in the format of /proc/net/tcp (and tcp6):
//
//	sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
//	 0: 0100007F:A3C2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  65534        0 53211 ...
//
// and returns the state, uid and inode of the socket with the local and
// remote addresses given. The addresses are written as the kernel holds
// them: each 32-bit word of the address in the machine's byte order, the
// port as a number.
func findSocket(r io.Reader, local, remote netip.AddrPort) (sk sockInfo, found bool, err error) {
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
		if len(f) < 10 {
			return sockInfo{}, false, fmt.Errorf("unexpected line %q", sc.Text())
		}
		l, err1 := parseProcAddr(f[1])
		r, err2 := parseProcAddr(f[2])
		if err1 != nil || err2 != nil {
			return sockInfo{}, false, fmt.Errorf("unexpected line %q", sc.Text())
		}
		if l != local || r != remote {
			continue
		}
		st, err1 := strconv.ParseUint(f[3], 16, 8)
		uid, err2 := strconv.ParseUint(f[7], 10, 32)
		ino, err3 := strconv.ParseUint(f[9], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return sockInfo{}, false, fmt.Errorf("unexpected line %q", sc.Text())
		}
		return sockInfo{state: uint8(st), uid: int(uid), inode: ino}, true, nil
	}
	return sockInfo{}, false, sc.Err()
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
