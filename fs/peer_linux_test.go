package fs

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFindSocket(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the table below is written as a little-endian machine writes it")
	}
	// Three connections to 127.0.0.1:5640 (1608), from 127.0.0.1:41922
	// (A3C2) as uid 65534, from [::1]:41923 as uid 1000, and from
	// 127.0.0.1:41924 through an IPv6 socket (mapped) as uid 0, and our
	// side of the first, as uid 0; and a client closed at once,
	// 127.0.0.1:41925, in FIN-WAIT-2 with no inode.
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1608 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A3C2 0100007F:1608 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1608 0100007F:A3C2 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:A3C5 0100007F:1608 05 00000000:00000000 03:00001765 00000000     0        0 0 3 000000000dcbff79
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:A3C3 00000000000000000000000001000000:1608 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:A3C4 0000000000000000FFFF00000100007F:1608 04 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 20 4 30 10 -1
`
	ap := netip.MustParseAddrPort
	srv := ap("127.0.0.1:5640")
	for _, tc := range []struct {
		table         string
		local, remote netip.AddrPort
		sk            sockInfo
		found         bool
	}{
		{tcp, ap("127.0.0.1:41922"), srv, sockInfo{tcpEstablished, 65534, 2}, true},
		{tcp, srv, ap("127.0.0.1:41922"), sockInfo{tcpEstablished, 0, 3}, true},
		{tcp, ap("127.0.0.1:41925"), srv, sockInfo{tcpFinWait2, 0, 0}, true},
		{tcp, ap("127.0.0.1:41922"), ap("127.0.0.1:5641"), sockInfo{}, false},
		{tcp, ap("127.0.0.2:41922"), srv, sockInfo{}, false},
		{tcp6, ap("[::1]:41923"), ap("[::1]:5640"), sockInfo{tcpEstablished, 1000, 4}, true},
		{tcp6, ap("127.0.0.1:41924"), srv, sockInfo{tcpFinWait1, 0, 5}, true},
		{tcp6, ap("[::ffff:127.0.0.1]:41924"), ap("[::ffff:127.0.0.1]:5640"), sockInfo{tcpFinWait1, 0, 5}, true},
		{tcp6, ap("127.0.0.1:41922"), srv, sockInfo{}, false},
	} {
		sk, found, err := findSocket(strings.NewReader(tc.table), tc.local, tc.remote)
		if sk != tc.sk || found != tc.found || err != nil {
			t.Errorf("findSocket(%v, %v) = %+v, %v, %v; want %+v, %v", tc.local, tc.remote, sk, found, err, tc.sk, tc.found)
		}
	}
	for _, bad := range []string{
		"h\n0: 0100007F:1608\n",
		"h\n0: 0100007F 0100007F:1608 01 0 0 0 0 0 0 0\n",
		"h\n0: 0100007F:1608 0100007F:1608 01 0 0 0 x 0 0 0\n",
		"h\n0: 0100007F:1608 0100007F:1608 zz 0 0 0 0 0 0 0\n",
		"h\n0: 0100007F:1608 0100007F:1608 01 0 0 0 0 0 -1\n",
		"h\n0: 0100007F:1608 0100007F:1608 01 0 0 0 0 0\n",
	} {
		if _, _, err := findSocket(strings.NewReader(bad), srv, srv); err == nil {
			t.Errorf("findSocket accepted %q", bad)
		}
	}
}

// TestSockOwner: the decision on what the kernel says of a client's
// socket. Only a socket that still has its file (an inode) in a
// connected state tells its owner.
func TestSockOwner(t *testing.T) {
	for _, tc := range []struct {
		sk   sockInfo
		uid  int
		want string // in the error; "" for none
	}{
		{sockInfo{tcpEstablished, 1000, 77}, 1000, ""},
		{sockInfo{tcpEstablished, 0, 77}, 0, ""},
		{sockInfo{tcpFinWait1, 1000, 77}, 1000, ""}, // shutdown(SHUT_WR), still held
		{sockInfo{tcpFinWait2, 1000, 77}, 1000, ""},
		// Orphans: the attack. TIME-WAIT and FIN-WAIT stubs say uid 0.
		{sockInfo{tcpFinWait2, 0, 0}, -1, "closed before it could be checked (FIN-WAIT-2, no owner left)"},
		{sockInfo{tcpFinWait1, 65534, 0}, -1, "closed before it could be checked (FIN-WAIT-1, no owner left)"},
		{sockInfo{6, 0, 0}, -1, "closed before it could be checked (TIME-WAIT, no owner left)"},
		{sockInfo{tcpEstablished, 0, 0}, -1, "closed before it could be checked (ESTABLISHED, no owner left)"},
		{sockInfo{3, 0, 0}, -1, "closed before it could be checked (SYN-RECV, no owner left)"},
		// Held, but not a connected client.
		{sockInfo{10, 0, 77}, -1, "its socket is not connected (LISTEN)"},
		{sockInfo{8, 0, 77}, -1, "its socket is not connected (CLOSE-WAIT)"},
		{sockInfo{tcpClose, 0, 77}, -1, "its socket is not connected (CLOSE)"},
		{sockInfo{99, 0, 77}, -1, "its socket is not connected (state 99)"},
	} {
		uid, err := tc.sk.owner()
		if uid != tc.uid || (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: owner() = %d, %v; want %d, %q", tc.sk, uid, err, tc.uid, tc.want)
		}
	}
}

// diagReply builds a kernel answer: a netlink message of type typ and
// sequence number seq holding body.
func diagReply(typ uint16, seq uint32, body []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(body)+3)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(nlmsgHdrLen+len(body)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint32(b[8:], seq)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// diagSocket builds a struct inet_diag_msg.
func diagSocket(family, state uint8, src, dst netip.AddrPort, uid, inode uint32) []byte {
	m := make([]byte, diagMsgLen+8) // and an attribute the kernel adds
	m[0], m[1] = family, state
	s, d := src.Addr(), dst.Addr()
	if family == unix.AF_INET6 {
		s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	}
	putSockID(m[4:], s, d, src.Port(), dst.Port())
	binary.NativeEndian.PutUint32(m[64:], uid)
	binary.NativeEndian.PutUint32(m[68:], inode)
	return m
}

func diagErr(errno syscall.Errno) []byte {
	return binary.NativeEndian.AppendUint32(make([]byte, 0, 20), uint32(-int32(errno)))
}

func TestDiagRequest(t *testing.T) {
	ap := netip.MustParseAddrPort
	ne := binary.NativeEndian
	for _, tc := range []struct {
		local, remote netip.AddrPort
		family        uint8
		src, dst      []byte
	}{
		{ap("127.0.0.1:41922"), ap("127.0.0.1:5640"), unix.AF_INET, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 1}},
		{ap("[::ffff:127.0.0.2]:41922"), ap("[::ffff:127.0.0.1]:5640"), unix.AF_INET, []byte{127, 0, 0, 2}, []byte{127, 0, 0, 1}},
		{ap("[::1]:41922"), ap("[::1]:5640"), unix.AF_INET6, net.IPv6loopback, net.IPv6loopback},
	} {
		b := diagRequest(tc.local, tc.remote)
		r := b[nlmsgHdrLen:]
		id := r[8:]
		switch {
		case len(b) != 72 || ne.Uint32(b) != 72 || ne.Uint16(b[4:]) != 20 || ne.Uint16(b[6:]) != 1 || ne.Uint32(b[8:]) != diagSeq:
			t.Errorf("%v: header % x", tc.local, b[:16])
		case r[0] != tc.family || r[1] != 6 || ne.Uint32(r[4:]) != ^uint32(0):
			t.Errorf("%v: family, protocol, states % x", tc.local, r[:8])
		case binary.BigEndian.Uint16(id) != 41922 || binary.BigEndian.Uint16(id[2:]) != 5640:
			t.Errorf("%v: ports % x", tc.local, id[:4])
		case string(id[4:4+len(tc.src)]) != string(tc.src) || string(id[20:20+len(tc.dst)]) != string(tc.dst):
			t.Errorf("%v: addresses % x", tc.local, id[4:36])
		case ne.Uint32(id[36:]) != 0 || ne.Uint32(id[40:]) != ^uint32(0) || ne.Uint32(id[44:]) != ^uint32(0):
			t.Errorf("%v: interface and cookie % x", tc.local, id[36:48])
		}
	}
}

func TestParseDiagReply(t *testing.T) {
	ap := netip.MustParseAddrPort
	cl, srv := ap("127.0.0.1:41922"), ap("127.0.0.1:5640")
	for _, tc := range []struct {
		what  string
		reply []byte
		sk    sockInfo
		found bool
		err   string
	}{
		{"established", diagReply(20, diagSeq, diagSocket(unix.AF_INET, tcpEstablished, cl, srv, 65534, 41)),
			sockInfo{tcpEstablished, 65534, 41}, true, ""},
		{"orphan", diagReply(20, diagSeq, diagSocket(unix.AF_INET, tcpFinWait2, cl, srv, 0, 0)),
			sockInfo{tcpFinWait2, 0, 0}, true, ""},
		{"an IPv6 socket talking to IPv4", diagReply(20, diagSeq, diagSocket(unix.AF_INET6, tcpEstablished,
			ap("[::ffff:127.0.0.1]:41922"), ap("[::ffff:127.0.0.1]:5640"), 1000, 42)), sockInfo{tcpEstablished, 1000, 42}, true, ""},
		{"a listener on the client's port", diagReply(20, diagSeq, diagSocket(unix.AF_INET, 10, ap("127.0.0.1:41922"), ap("0.0.0.0:0"), 1000, 43)),
			sockInfo{}, false, ""},
		{"another connection", diagReply(20, diagSeq, diagSocket(unix.AF_INET, tcpEstablished, cl, ap("127.0.0.1:5641"), 0, 44)),
			sockInfo{}, false, ""},
		{"not found", diagReply(2, diagSeq, diagErr(syscall.ENOENT)), sockInfo{}, false, ""},
		{"other message first", append(diagReply(20, 7, diagSocket(unix.AF_INET, tcpEstablished, cl, srv, 0, 45)),
			diagReply(20, diagSeq, diagSocket(unix.AF_INET, tcpEstablished, cl, srv, 1000, 46))...), sockInfo{tcpEstablished, 1000, 46}, true, ""},
		{"refused", diagReply(2, diagSeq, diagErr(syscall.EPERM)), sockInfo{}, false, "sock_diag: operation not permitted"},
		{"empty", nil, sockInfo{}, false, "sock_diag: no answer"},
		{"short error", diagReply(2, diagSeq, []byte{1}), sockInfo{}, false, "sock_diag: truncated error"},
		{"short socket", diagReply(20, diagSeq, make([]byte, 40)), sockInfo{}, false, "sock_diag: truncated socket"},
		{"bad length", diagReply(20, diagSeq, make([]byte, 80))[:50], sockInfo{}, false, "sock_diag: truncated reply"},
		{"other family", diagReply(20, diagSeq, func() []byte { m := diagSocket(unix.AF_INET, 1, cl, srv, 0, 1); m[0] = 1; return m }()),
			sockInfo{}, false, "sock_diag: a socket of family 1"},
	} {
		sk, found, err := parseDiagReply(tc.reply, cl, srv)
		if sk != tc.sk || found != tc.found || (err == nil) != (tc.err == "") || err != nil && err.Error() != tc.err {
			t.Errorf("%s: %+v, %v, %v; want %+v, %v, %q", tc.what, sk, found, err, tc.sk, tc.found, tc.err)
		}
	}
}

// pair returns a loopback connection on network (tcp4 or tcp6): the
// client's end and ours.
func pair(t *testing.T, addr string) (client, ours *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("%s: %v", addr, err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestPeerUIDTCP: the owner of a real loopback connection's client socket
// is found, on IPv4 and IPv6, by sock_diag and in /proc/net; so is that
// of one whose client shut down its writing side; one whose client has
// closed or reset it is refused, whatever it sent.
func TestPeerUIDTCP(t *testing.T) {
	me := os.Geteuid()
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			c, s := pair(t, addr)
			if uid, err := peerUID(s); uid != me || err != nil {
				t.Errorf("open: peerUID = %d, %v; want %d", uid, err, me)
			}
			peer, us := s.RemoteAddr().(*net.TCPAddr).AddrPort(), s.LocalAddr().(*net.TCPAddr).AddrPort()
			for name, lookup := range map[string]func(l, r netip.AddrPort) (sockInfo, bool, error){"sock_diag": diagLookup, "/proc/net": procNetLookup} {
				sk, found, err := lookup(peer, us)
				if uid, oerr := sk.owner(); !found || err != nil || uid != me || oerr != nil || sk.state != tcpEstablished {
					t.Errorf("%s: %+v, %v, %v; want an established socket of uid %d", name, sk, found, err, me)
				}
			}

			c, s = pair(t, addr)
			c.Write([]byte("data"))
			c.CloseWrite()
			if uid, err := peerUID(s); uid != me || err != nil {
				t.Errorf("shut down for writing: peerUID = %d, %v; want %d", uid, err, me)
			}

			c, s = pair(t, addr)
			c.Write([]byte("data"))
			c.Close()
			if uid, err := peerUID(s); uid != -1 || err == nil || !strings.Contains(err.Error(), "closed before it could be checked") {
				t.Errorf("closed: peerUID = %d, %v; want refused", uid, err)
			}
			peer, us = s.RemoteAddr().(*net.TCPAddr).AddrPort(), s.LocalAddr().(*net.TCPAddr).AddrPort()
			if sk, found, err := procNetLookup(peer, us); !found || err != nil || sk.inode != 0 {
				t.Errorf("closed, in /proc/net: %+v, %v, %v; want a socket without inode", sk, found, err)
			}

			c, s = pair(t, addr)
			c.Write([]byte("data"))
			c.SetLinger(0)
			c.Close() // a reset
			if uid, err := peerUID(s); uid != -1 || err == nil {
				t.Errorf("reset: peerUID = %d, %v; want refused", uid, err)
			}
		})
	}
}

// TestPeerUIDMapped: a client of an IPv6 socket talking to an IPv4
// listener through a mapped address is found.
func TestPeerUIDMapped(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	f := os.NewFile(uintptr(fd), "client")
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		t.Fatal(err)
	}
	sa := &unix.SockaddrInet6{Port: l.Addr().(*net.TCPAddr).Port, Addr: [16]byte{10: 0xff, 11: 0xff, 12: 127, 15: 1}}
	if err := unix.Connect(fd, sa); err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if uid, err := peerUID(s); uid != os.Geteuid() || err != nil {
		t.Errorf("peerUID = %d, %v; want %d", uid, err, os.Geteuid())
	}
}
