package fs

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func TestFindSocket(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the table below is written as a little-endian machine writes it")
	}
	// Three connections to 127.0.0.1:5640 (1608), from 127.0.0.1:41922
	// (A3C2) as uid 65534, from [::1]:41923 as uid 1000, and from
	// 127.0.0.1:41924 through an IPv6 socket (mapped) as uid 0, and our
	// side of the first, as uid 0.
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1608 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A3C2 0100007F:1608 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1608 0100007F:A3C2 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:A3C3 00000000000000000000000001000000:1608 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:A3C4 0000000000000000FFFF00000100007F:1608 01 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 20 4 30 10 -1
`
	ap := netip.MustParseAddrPort
	srv := ap("127.0.0.1:5640")
	for _, tc := range []struct {
		table         string
		local, remote netip.AddrPort
		uid           int
		found         bool
	}{
		{tcp, ap("127.0.0.1:41922"), srv, 65534, true},
		{tcp, srv, ap("127.0.0.1:41922"), 0, true},
		{tcp, ap("127.0.0.1:41922"), ap("127.0.0.1:5641"), -1, false},
		{tcp, ap("127.0.0.2:41922"), srv, -1, false},
		{tcp6, ap("[::1]:41923"), ap("[::1]:5640"), 1000, true},
		{tcp6, ap("127.0.0.1:41924"), srv, 0, true},
		{tcp6, ap("[::ffff:127.0.0.1]:41924"), ap("[::ffff:127.0.0.1]:5640"), 0, true},
		{tcp6, ap("127.0.0.1:41922"), srv, -1, false},
	} {
		uid, found, err := findSocket(strings.NewReader(tc.table), tc.local, tc.remote)
		if uid != tc.uid || found != tc.found || err != nil {
			t.Errorf("findSocket(%v, %v) = %d, %v, %v; want %d, %v", tc.local, tc.remote, uid, found, err, tc.uid, tc.found)
		}
	}
	for _, bad := range []string{"h\n0: 0100007F:1608\n", "h\n0: 0100007F 0100007F:1608 01 0 0 0 0\n", "h\n0: 0100007F:1608 0100007F:1608 01 0 0 0 x\n"} {
		if _, _, err := findSocket(strings.NewReader(bad), srv, srv); err == nil {
			t.Errorf("findSocket accepted %q", bad)
		}
	}
}

// TestPeerUIDTCP: the owner of a real loopback connection's client socket
// is found, on IPv4 and IPv6.
func TestPeerUIDTCP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v", addr, err)
			continue
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		if uid, err := peerUID(sc); uid != os.Geteuid() || err != nil {
			t.Errorf("%s: peerUID = %d, %v; want %d", addr, uid, err, os.Geteuid())
		}
	}
}
