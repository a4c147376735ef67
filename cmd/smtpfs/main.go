// Smtpfs is the mail daemon: it listens for SMTP, runs the outbound
// queue and serves the 9P tree.
//
//	smtpfs [-adDfgprs] [-c certfile] [-h mydom] [-k evilip]... [-m mailer] [-R root] [-C conf] [-l dialstring]... [-9 dialstring]... [-N dialstring]...
//
// The flags are upas smtpd's (see smtpd(8) and smtpfs(8) in man/); each is the smtpd.conf verb
// it stands for, and wins over the file. -R is the mail root (default
// ./mail, made on the first run), -C the configuration (default
// <root>/lib/smtpd.conf), -l an SMTP listener (repeatable; default
// tcp!127.0.0.1!2525; tcp!*!25 for every address on port 25), -9 a 9P
// listener besides the posted Unix socket (repeatable), on a loopback
// address: only processes of the daemon's user or root are served (see
// fs.Server.Listen). -N is a 9P listener on any address, for a network
// where every host that reaches it is trusted: a client from another
// machine cannot be checked and controls the server (fs.Server.ListenNetwork).
//
// `smtpfs mount [-9 dialstring] dir` mounts the tree of a running smtpfs
// on dir through FUSE (mountMain).
//
// It says on standard error where it listens, one line per listener
// ("smtpfs: smtp listening on tcp!127.0.0.1!2525"), then "smtpfs: ready".
// SIGHUP re-reads the configuration, lib/secrets and the log files.
// SIGTERM and SIGINT stop it: no new sessions; sessions in a transaction
// may finish it for a grace period, then they are closed; a message that
// was acknowledged is safe, one that was not is simply not acknowledged.
// The queue runner stops its deliveries (a message cut short stays queued
// and is sent again) and the 9P tree closes.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"smtpfs/cmd/internal/arg"
	"smtpfs/cmd/internal/setup"
	"smtpfs/smtpd/conf"
)

// grace is how long sessions may go on finishing their transactions after
// SIGTERM.
const grace = 10 * time.Second

func main() {
	if len(os.Args) > 1 && os.Args[1] == "mount" {
		mountMain(os.Args[2:])
		return
	}
	var f setup.Flags
	var l listeners
	set := argSet(&f, &l)
	args, err := set.Parse(os.Args[1:])
	if err == nil && len(args) > 0 {
		err = fmt.Errorf("unexpected argument %q", args[0])
	}
	if err != nil {
		setup.Usage(set, err)
	}
	if err := run(&f, l.smtp, l.ninep, l.open); err != nil {
		fmt.Fprintf(os.Stderr, "smtpfs: %v\n", err)
		os.Exit(1)
	}
}

func run(f *setup.Flags, listen, ninep, open []string) error {
	// Signals are caught from the start: one that came between "ready"
	// and the handler would kill the daemon.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	if err := f.CheckConf(); err != nil {
		return err
	}
	endProfile, err := profile()
	if err != nil {
		return err
	}
	defer endProfile()
	root, err := f.RootDir()
	if err != nil {
		return err
	}
	if err := setup.MakeRoot(root); err != nil {
		return err
	}
	verbs := f.Verbs()
	for _, s := range listen { // -l: an smtp listener, after the file's
		verbs = append(verbs, "listen "+conf.Quote(s)+" smtp")
	}
	d, err := newDaemon(root, f.ConfFile(root), verbs, os.Stderr)
	if err != nil {
		return err
	}
	d.confNamed = f.Conf != ""
	defer d.close()
	d.started.Store(true)
	ls, err := d.syncListeners(d.Config())
	if err != nil {
		return err
	}
	posted, err := d.tree.Post("smtpfs")
	if err != nil {
		return fmt.Errorf("posting the 9P service: %v", err)
	}
	var ninepAt, openAt []string
	for _, s := range ninep {
		ds, err := d.tree.Listen(s)
		if err != nil {
			return fmt.Errorf("-9 %s: %v (-N listens beyond loopback)", s, err)
		}
		ninepAt = append(ninepAt, ds)
	}
	for _, s := range open {
		ds, err := d.tree.ListenNetwork(s)
		if err != nil {
			return fmt.Errorf("-N %s: %v", s, err)
		}
		openAt = append(openAt, ds)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	engines := make(chan struct{})
	go func() { d.run(ctx); close(engines) }()
	for _, l := range ls {
		fmt.Fprintf(os.Stderr, "smtpfs: %s listening on %s\n", l.pol.Role(), dialString(l.l.Addr()))
	}
	fmt.Fprintf(os.Stderr, "smtpfs: 9p posted on %s\n", posted)
	for _, ds := range ninepAt {
		fmt.Fprintf(os.Stderr, "smtpfs: 9p listening on %s\n", ds)
	}
	for _, ds := range openAt {
		fmt.Fprintf(os.Stderr, "smtpfs: 9p listening on %s\n", ds)
		fmt.Fprintf(os.Stderr, "smtpfs: warning: 9p on %s serves every machine that reaches it, unchecked: whoever connects controls this server\n", ds)
	}
	d.log.Printf("smtpfs started, mail root %s", root)
	fmt.Fprintln(os.Stderr, "smtpfs: ready")
	d.wait(sig)
	stop()
	<-engines
	d.log.Printf("stopped")
	return nil
}

// listeners are the dial strings of -l (SMTP), -9 (9P on loopback) and -N
// (9P on any address).
type listeners struct{ smtp, ninep, open []string }

// argSet is smtpfs's table of flags: upas smtpd's, -R, -C and the
// listeners.
func argSet(f *setup.Flags, l *listeners) *arg.Set {
	s := arg.New("smtpfs [-adDfgprs] [-c certfile] [-h mydom] [-k evilip]... [-m mailer] [-R root] [-C conf] [-l dialstring]... [-9 dialstring]... [-N dialstring]...")
	f.Register(s)
	s.List('l', &l.smtp)
	s.List('9', &l.ninep)
	s.List('N', &l.open)
	return s
}

// dialString writes a listener's address as tcp!host!port.
func dialString(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return fmt.Sprintf("tcp!%s!%d", t.IP, t.Port)
	}
	return a.Network() + "!" + a.String()
}

// wait serves the signals until SIGTERM or SIGINT, then stops the SMTP
// server, giving sessions in a transaction the grace period to finish
// unless the signal comes again.
func (d *daemon) wait(sig <-chan os.Signal) {
	for s := range sig {
		if s == syscall.SIGHUP {
			d.log.Printf("SIGHUP: reloading")
			d.Reload()
			continue
		}
		d.log.Printf("%v: shutting down", s)
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		go func() { // a second SIGTERM or SIGINT: no more grace
			for s := range sig {
				if s != syscall.SIGHUP {
					d.log.Printf("%v again: closing sessions now", s)
					cancel()
					return
				}
			}
		}()
		err := d.srv.Shutdown(ctx)
		cancel()
		if err != nil {
			d.log.Printf("sessions still open after %v were closed", grace)
		}
		return
	}
}

// version is what the 9P version file says: the module's version and VCS
// revision when the binary carries them.
var version = func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "smtpfs"
	}
	v := "smtpfs " + bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			v += " " + s.Value
		}
	}
	return v
}()
