package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"smtpfs/cmd/internal/arg"
	"smtpfs/cmd/internal/setup"
	"smtpfs/fs"
	"smtpfs/fs/mount"
	"smtpfs/smtp"
)

const mountUsage = "smtpfs mount [-9 dialstring] dir"

// mountMain is `smtpfs mount`: it mounts the 9P tree of a running smtpfs
// on dir through FUSE (package fs/mount) and serves it in the foreground,
// as mount9p does, until the directory is unmounted (fusermount3 -u), a
// SIGINT, SIGTERM or SIGHUP comes (it unmounts, lazily if the mount is
// busy), or the daemon goes away (it unmounts, and exits 1). It says
// "smtpfs: mounted on DIR" once the mount is there. The service is the
// posted one ($NAMESPACE/smtpfs) unless -9 gives a dial string
// (unix!path, tcp!host!port). The mount is the mounting user's alone
// (no allow_other).
func mountMain(args []string) {
	var addr string
	set := arg.New(mountUsage)
	set.String('9', &addr)
	args, err := set.Parse(args)
	if err == nil && len(args) != 1 {
		err = fmt.Errorf("mount needs one directory")
	}
	if err != nil {
		setup.Usage(set, err)
	}
	if addr == "" {
		addr = "unix!" + filepath.Join(fs.Namespace(), "smtpfs")
	}
	if err := mountRun(addr, args[0]); err != nil {
		fmt.Fprintf(os.Stderr, "smtpfs: mount: %v\n", err)
		os.Exit(1)
	}
}

func mountRun(addr, dir string) error {
	log.SetOutput(dropLateInterrupts{os.Stderr})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	nc, err := dial9P(addr)
	if err != nil {
		return err
	}
	m, err := mount.New(nc, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "smtpfs: mounted %s on %s\n", addr, m.Dir())
	ended := make(chan error, 1)
	go func() { ended <- m.Wait() }()
	select {
	case err := <-ended:
		return err
	case <-sig:
		return m.Unmount()
	}
}

// dial9P connects to a 9P service's dial string.
func dial9P(addr string) (net.Conn, error) {
	ds, err := smtp.ParseDialString(addr)
	if err != nil {
		return nil, err
	}
	network, a := "unix", ds.Host
	if ds.Net != "unix" {
		if ds.Port == "" {
			return nil, fmt.Errorf("invalid dial string %q: no port", addr)
		}
		network, a = "tcp", ds.Address("")
	}
	nc, err := net.DialTimeout(network, a, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("9P service %s: %v", addr, err)
	}
	return nc, nil
}

// dropLateInterrupts drops go-fuse's log line for an interrupt it did not
// find in flight at once: it asks the kernel to send the interrupt again
// (EAGAIN), and the kernel refuses when the request has been answered
// meanwhile, as it has when Ctrl-C worked.
type dropLateInterrupts struct{ w io.Writer }

func (d dropLateInterrupts) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("Write/Writev failed")) && bytes.HasSuffix(p, []byte("opcode: INTERRUPT\n")) {
		return len(p), nil
	}
	return d.w.Write(p)
}
