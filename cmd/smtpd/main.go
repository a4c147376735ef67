// Smtpd serves one SMTP session on its standard input and output, as
// upas smtpd does: for inetd, systemd socket units, s6 and tcpserver.
//
//	smtpd [-adDfgprs] [-c certfile] [-h mydom] [-k evilip]... [-m mailer] [-n netdir] [-R root] [-C conf]
//
// The flags are upas's (see smtpd(8), man/man8/smtpd.8); each is the smtpd.conf verb it
// stands for, and wins over the file. The client's address comes from
// -n netdir (files remote and local holding ip!port, as on Plan 9), else
// from the socket on standard input, else from $TCPREMOTEIP and
// $TCPLOCALIP (tcpserver); without one, smtpd refuses to run.
//
// The mail root (-R) defaults to ./mail, made absolute at start: under
// inetd or systemd, whose working directory is /, that is /mail, as on
// Plan 9. smtpd does not make the root (smtpfs does, on its first run);
// it refuses to run without it, and if lib/secrets is readable by group
// or others. It logs to <root>/log/smtpd, never to its standard output,
// which is the client's. With the greylist on, once the client has gone,
// it expires old triplets if nobody has for an hour (smtpfs does that on
// its own). Failed AUTH is counted in <root>/grey/authfail, with the
// other sessions and smtpfs, so that the lockout holds across them. Mail
// from outside is checked (SPF, DKIM, DMARC) as smtpfs checks it, and what
// trusted clients queue is signed with the keys of lib/dkim. It exits 0
// when the session ended outside a transaction, 1 when it ended inside one
// (the client gone, or timed out, after MAIL and before its message was
// answered), and 1 on an error before it (a usage error, a missing root
// or -C file).
package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"smtpfs/cmd/internal/arg"
	"smtpfs/cmd/internal/setup"
	"smtpfs/smtp/mlog"
	"smtpfs/smtp/queue"
	"smtpfs/smtpd"
	"smtpfs/smtpd/conf"
)

func main() {
	var f setup.Flags
	var netdir string
	set := argSet(&f, &netdir)
	args, err := set.Parse(os.Args[1:])
	if err == nil && len(args) > 0 {
		err = fmt.Errorf("unexpected argument %q", args[0])
	}
	if err != nil {
		setup.Usage(set, err)
	}
	if err := run(&f, netdir); err != nil {
		// Under inetd standard error is the client's socket, which has
		// heard the session's end; the status is what tells.
		if err != errAbandoned || !isSocket(os.Stderr) {
			fmt.Fprintf(os.Stderr, "smtpd: %v\n", err)
		}
		os.Exit(1)
	}
}

// errAbandoned is the end of a session inside a transaction: the client
// went, or timed out, after MAIL and before its message was answered. The
// message was not accepted, which the exit status says (a here-document
// with LF line ends never ends its DATA: it needs CRLF, and CRLF.CRLF).
var errAbandoned = errors.New("the session ended inside a transaction: the message was not accepted")

func isSocket(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// argSet is smtpd's table of flags: upas smtpd's, -R, -C and -n.
func argSet(f *setup.Flags, netdir *string) *arg.Set {
	s := arg.New("smtpd [-adDfgprs] [-c certfile] [-h mydom] [-k evilip]... [-m mailer] [-n netdir] [-R root] [-C conf]")
	f.Register(s)
	s.String('n', netdir)
	return s
}

func run(f *setup.Flags, netdir string) error {
	if err := f.CheckConf(); err != nil {
		return err
	}
	root, err := f.RootDir()
	if err != nil {
		return err
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return fmt.Errorf("mail root %s: not a directory (make it with smtpfs, or give -R)", root)
	}
	cfg, secrets, err := setup.Load(root, f.ConfFile(root), f.Verbs())
	if err != nil {
		return err
	}
	conn, err := clientConn(netdir)
	if err != nil {
		return err
	}
	logs := mlog.New(filepath.Join(root, "log"), nil)
	defer logs.Close()
	config := func() *conf.Config { return cfg }
	logger := logs.Logger("smtpd")
	blocked, err := setup.OpenBlocked(root, logger)
	if err != nil {
		return err
	}
	// The queue is written into, not run: smtpfs's runner finds what this
	// session queued at its next scan of the directory.
	q, err := queue.OpenWriter(filepath.Join(root, "queue"), setup.QueueSettings(cfg), logs.Logger("runq"))
	if err != nil {
		return err
	}
	defer q.Close()
	keys, err := setup.OpenKeys(root, cfg)
	if err != nil {
		return err
	}
	rs := setup.SessionRedis(cfg, logger) // greystore redis://...: shared by every host; nil: the files
	srv := &smtpd.Server{
		Root:       root,
		Config:     config,
		Secrets:    func() *smtpd.Secrets { return secrets },
		Log:        logger,
		Queue:      q,
		Greylister: &setup.LazyGreylist{Root: root, Config: config, Log: logger, Redis: rs},
		Classifier: setup.Classifier{Blocked: blocked},
		Resolver:   &setup.Resolver{Config: config},
		MailAuth:   &setup.AuthChecker{Config: config},
		Signer:     &setup.Signer{Keys: keys, Config: config, Log: logger},
	}
	srv.AuthLimiter = setup.AuthLimiter(root, rs) // shared with smtpfs and the other sessions
	srv.ServeConn(conn)
	if cfg.Greylist {
		setup.SweepIfDue(root, cfg, logger)
	}
	if srv.Stats.Abandoned.Load() > 0 {
		return errAbandoned
	}
	return nil
}

// clientConn returns the connection on standard input and output, with the
// client's and our addresses.
func clientConn(netdir string) (net.Conn, error) {
	if netdir != "" {
		remote, err1 := os.ReadFile(filepath.Join(netdir, "remote"))
		local, err2 := os.ReadFile(filepath.Join(netdir, "local"))
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("can't get remote system's address from %s: %v", netdir, firstErr(err1, err2))
		}
		return stdio(bangAddr(strings.TrimSpace(string(local))), bangAddr(strings.TrimSpace(string(remote))))
	}
	if c, err := net.FileConn(os.Stdin); err == nil {
		if _, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			return c, nil
		}
		c.Close() // a Unix socket or the like: no address to go by
	}
	if ip := os.Getenv("TCPREMOTEIP"); ip != "" {
		return stdio(bangAddr(os.Getenv("TCPLOCALIP")+"!"+os.Getenv("TCPLOCALPORT")),
			bangAddr(ip+"!"+os.Getenv("TCPREMOTEPORT")))
	}
	return nil, fmt.Errorf("can't get remote system's address: give -n netdir, a socket on standard input, or $TCPREMOTEIP")
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// A bangAddr is an address in Plan 9's form, ip!port.
type bangAddr string

func (a bangAddr) Network() string { return "tcp" }
func (a bangAddr) String() string  { return string(a) }

func (a bangAddr) valid() bool {
	ip, _, _ := strings.Cut(string(a), "!")
	_, err := netip.ParseAddr(ip)
	return err == nil
}

// stdio returns standard input and output as one connection. They are
// made non-blocking so that the session's deadlines work on pipes too.
func stdio(local, remote bangAddr) (net.Conn, error) {
	if !remote.valid() {
		return nil, fmt.Errorf("can't get remote system's address: %q is not ip!port", remote)
	}
	if !local.valid() { // it names the greylist's triplets (grey/tmp/<local-ip>/...)
		return nil, fmt.Errorf("can't get our own address: %q is not ip!port", local)
	}
	for _, fd := range []int{0, 1} {
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, err
		}
	}
	return &stdioConn{r: os.NewFile(0, "stdin"), w: os.NewFile(1, "stdout"), local: local, remote: remote}, nil
}

type stdioConn struct {
	r, w          *os.File
	local, remote net.Addr
}

func (c *stdioConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *stdioConn) LocalAddr() net.Addr         { return c.local }
func (c *stdioConn) RemoteAddr() net.Addr        { return c.remote }

func (c *stdioConn) Close() error {
	c.w.Close()
	return c.r.Close()
}

func (c *stdioConn) SetDeadline(t time.Time) error {
	c.w.SetWriteDeadline(t)
	return c.r.SetReadDeadline(t)
}

func (c *stdioConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *stdioConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }
