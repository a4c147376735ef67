// Ninepc is a tiny 9P client for the end-to-end tests, to be run as
// another user (the test binary and its build cache are private to the
// user who runs the tests; this program is copied where anyone may run it).
//
//	ninepc dialstring file          print the file
//	ninepc dialstring file text     write text to the file
//	ninepc -burst dialstring file text
//
// It exits 1 with the error on standard error when anything fails: the
// connection, the 9P version or attach, the open, the read or write, or
// the clunk.
//
// With -burst it sends the whole conversation that writes text to the
// file (Tversion, Tattach, Twalk, Topen, Twrite, Tclunk) in one write,
// closes its socket at once without reading a reply, and prints its own
// address (tcp!ip!port): the client that leaves an orphaned socket behind
// it, for the peer check of the server to look at.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"
	"github.com/knusbaum/go9p/proto"
)

func main() {
	burst := len(os.Args) == 5 && os.Args[1] == "-burst"
	if !burst && len(os.Args) != 3 && len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: ninepc [-burst] dialstring file [text]")
		os.Exit(2)
	}
	var err error
	if burst {
		err = runBurst(os.Args[2], os.Args[3], os.Args[4])
	} else {
		err = run(os.Args[1], os.Args[2], os.Args[3:])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ninepc: %v\n", err)
		os.Exit(1)
	}
}

// tcpAddr turns tcp!host!port into host:port.
func tcpAddr(ds string) (string, error) {
	f := strings.Split(ds, "!")
	if len(f) != 3 || f[0] != "tcp" {
		return "", fmt.Errorf("want tcp!host!port, not %q", ds)
	}
	return net.JoinHostPort(f[1], f[2]), nil
}

func run(ds, name string, text []string) error {
	addr, err := tcpAddr(ds)
	if err != nil {
		return err
	}
	conn, err := client.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	fsys, err := conn.Attach(nil, "glenda", "")
	if err != nil {
		return err
	}
	if len(text) == 0 {
		fid, err := fsys.Open(name, plan9.OREAD)
		if err != nil {
			return err
		}
		defer fid.Close()
		_, err = io.Copy(os.Stdout, fid)
		return err
	}
	fid, err := fsys.Open(name, plan9.OWRITE)
	if err != nil {
		return err
	}
	if _, err := fid.Write([]byte(text[0])); err != nil {
		fid.Close()
		return err
	}
	return fid.Close()
}

func runBurst(ds, name, text string) error {
	addr, err := tcpAddr(ds)
	if err != nil {
		return err
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	h := func(typ uint8, tag uint16) proto.Header { return proto.Header{Type: typ, Tag: tag} }
	var b []byte
	for _, m := range []proto.FCall{
		&proto.TRVersion{Header: h(proto.Tversion, 0xFFFF), Msize: 8192, Version: "9P2000"},
		&proto.TAttach{Header: h(proto.Tattach, 1), Fid: 0, Afid: ^uint32(0), Uname: "glenda"},
		&proto.TWalk{Header: h(proto.Twalk, 2), Fid: 0, Newfid: 1, Nwname: 1, Wname: []string{name}},
		&proto.TOpen{Header: h(proto.Topen, 3), Fid: 1, Mode: proto.Owrite},
		&proto.TWrite{Header: h(proto.Twrite, 4), Fid: 1, Count: uint32(len(text)), Data: []byte(text)},
		&proto.TClunk{Header: h(proto.Tclunk, 5), Fid: 1},
	} {
		b = append(b, m.Compose()...)
	}
	if _, err := c.Write(b); err != nil {
		c.Close()
		return err
	}
	a := c.LocalAddr().(*net.TCPAddr)
	if err := c.Close(); err != nil {
		return err
	}
	fmt.Printf("tcp!%s!%d\n", a.IP, a.Port)
	return nil
}
