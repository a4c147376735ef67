// Ninepc is a tiny 9P client for the end-to-end tests, to be run as
// another user (the test binary and its build cache are private to the
// user who runs the tests; this program is copied where anyone may run it).
//
//	ninepc dialstring file          print the file
//	ninepc dialstring file text     write text to the file
//
// It exits 1 with the error on standard error when anything fails: the
// connection, the 9P version or attach, the open, the read or write, or
// the clunk.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"
)

func main() {
	if len(os.Args) != 3 && len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: ninepc dialstring file [text]")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3:]); err != nil {
		fmt.Fprintf(os.Stderr, "ninepc: %v\n", err)
		os.Exit(1)
	}
}

func run(ds, name string, text []string) error {
	f := strings.Split(ds, "!")
	if len(f) != 3 || f[0] != "tcp" {
		return fmt.Errorf("want tcp!host!port, not %q", ds)
	}
	conn, err := client.Dial("tcp", f[1]+":"+f[2])
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
