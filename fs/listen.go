package fs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A listener is one accept loop.
type listener struct {
	l    net.Listener
	addr string // the dial string it listens on
	open bool   // serves clients from beyond this machine (ListenNetwork)
}

// Post posts the tree as a Unix socket called name in the plan9port name
// space directory ($NAMESPACE, else /tmp/ns.$USER.$DISPLAY), where
// `9p -a unix!...`, 9pfuse and mount9p find it. The directory is made
// (mode 0700) when it is missing, and refused when someone else owns it or
// others may write it. A stale socket left by a server that died is
// replaced; one that a live server answers on is not ("busy"). Post
// returns the dial string, unix!path.
func (s *Server) Post(name string) (string, error) {
	if name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("post %q: invalid service name", name)
	}
	ns := namespace()
	if err := checkNamespace(ns); err != nil {
		return "", err
	}
	return s.listenUnix(filepath.Join(ns, name))
}

// Listen serves the tree on a dial string: unix!path, or tcp!host!port
// (also net!host!port, host!port, host:port) on a loopback address; port 0
// picks a free port. It returns the dial string it listens on.
//
// The tree is the machine owner's (SPEC §3), and 9P has no authentication
// here, so every connection is checked as it arrives: the process at the
// other end must run as our user or as root. A Unix socket is private
// (mode 0600), and the kernel tells its peer (SO_PEERCRED); on TCP, Linux
// tells the owner of the client's socket (sock_diag, peer_linux.go),
// before a byte of 9P is read, and only while that socket is still
// connected and held by a process: a client that closed before the check
// cannot be told from root. A connection whose owner cannot be told is
// refused, and so is every TCP connection on systems other than Linux. An
// address that is not loopback (a host of * or nothing means every
// address) is refused: see ListenNetwork.
func (s *Server) Listen(dialstring string) (string, error) { return s.listen(dialstring, false) }

// ListenNetwork is Listen on any TCP address, for the rare network where
// every host that can reach the port is trusted: a client from another
// machine cannot be checked, and whoever it is controls this server (it
// can set the mailer, a command the daemon runs). The log says so when
// the listener starts. A process of this machine is still checked as
// Listen checks it, wherever it connects from.
func (s *Server) ListenNetwork(dialstring string) (string, error) { return s.listen(dialstring, true) }

func (s *Server) listen(dialstring string, open bool) (string, error) {
	network, addr, err := parseDial(dialstring)
	if err != nil {
		return "", err
	}
	if network == "unix" {
		return s.listenUnix(addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	ta := l.Addr().(*net.TCPAddr)
	ds := "tcp!" + ta.IP.String() + "!" + fmt.Sprint(ta.Port)
	switch {
	case open:
		s.log.Printf("listening on %s for clients of any machine: anyone who can reach it controls this server", ds)
	case !ta.IP.IsLoopback():
		l.Close()
		return "", fmt.Errorf("9p listen %s: permission denied: not a loopback address, and anyone who reached it would control this server", dialstring)
	}
	return ds, s.start(&listener{l: l, addr: ds, open: open})
}

// parseDial splits a dial string into a network and an address.
func parseDial(ds string) (network, addr string, err error) {
	f := strings.Split(ds, "!")
	var host, port string
	switch {
	case len(f) == 2 && f[0] == "unix" && f[1] != "":
		return "unix", f[1], nil
	case len(f) == 3 && (f[0] == "tcp" || f[0] == "net"):
		host, port = f[1], f[2]
	case len(f) == 2 && (f[0] == "tcp" || f[0] == "net"):
		return "", "", fmt.Errorf("invalid dial string %q: no port", ds)
	case len(f) == 2 && f[0] != "unix":
		host, port = f[0], f[1]
	case len(f) == 1:
		if host, port, err = net.SplitHostPort(ds); err != nil {
			return "", "", fmt.Errorf("invalid dial string %q", ds)
		}
	default:
		return "", "", fmt.Errorf("invalid dial string %q", ds)
	}
	if port == "" {
		return "", "", fmt.Errorf("invalid dial string %q: no port", ds)
	}
	if host == "*" {
		host = ""
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

// listenUnix listens on a socket at path, private to its owner.
func (s *Server) listenUnix(path string) (string, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return "", fmt.Errorf("post %s: permission denied: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return "", fmt.Errorf("post %s: busy: another server answers there", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return "", err
	}
	if err := os.Chmod(path, 0600); err != nil {
		l.Close()
		return "", err
	}
	ds := "unix!" + path
	return ds, s.start(&listener{l: l, addr: ds})
}

func (s *Server) start(ln *listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ln.l.Close()
		return errors.New("server closed")
	}
	s.listeners[ln] = true
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

// accept serves the connections of one listener until it is closed,
// backing off when accepting fails (out of file descriptors).
func (s *Server) accept(ln *listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := ln.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Printf("accept on %s: %v", ln.addr, err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go s.admit(ln, nc)
	}
}

// errRemote: the peer is not a process of this machine.
var errRemote = errors.New("a client from another machine")

// admit serves a connection that passes the check of Listen, and closes
// any other: its peer must be a process of our user or root, or (on a
// listener of ListenNetwork) a client from elsewhere. The check asks the
// kernel, so it runs beside the accept loop, not in it; nothing is read
// from the connection before it.
func (s *Server) admit(ln *listener, nc net.Conn) {
	uid, err := peerUID(nc)
	switch {
	case err == nil && uid != 0 && uid != os.Geteuid():
		err = fmt.Errorf("uid %d is another user", uid)
	case errors.Is(err, errRemote) && ln.open:
		err = nil
	}
	if err != nil {
		s.log.Printf("%s: refused a connection from %s: %v", ln.addr, remoteName(nc), err)
		nc.Close()
		return
	}
	if c := s.register(nc); c != nil {
		c.serve()
	}
}

// remoteName names the peer of nc in the log.
func remoteName(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return "tcp!" + a.IP.String() + "!" + fmt.Sprint(a.Port)
	}
	return "the unix socket"
}

// Close stops the listeners, removes the posted sockets, ends every
// connection (blocked readers wake, every open file is closed, half-written
// messages are dropped) and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var conns []*conn
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	for ln := range s.listeners {
		ln.l.Close() // a Unix listener removes its socket
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.close()
	}
	s.wg.Wait()
	return nil
}

// Namespace returns the plan9port name space directory, where Post posts:
// for clients, such as `smtpfs mount`, to find the service.
func Namespace() string { return namespace() }

// namespace returns the plan9port name space directory, as plan9port's
// getns and 9fans.net/go/plan9/client do: $NAMESPACE, else
// /tmp/ns.$USER.$DISPLAY with $DISPLAY's ".0" dropped, :0 without one.
func namespace() string {
	if ns := os.Getenv("NAMESPACE"); ns != "" {
		return ns
	}
	disp := os.Getenv("DISPLAY")
	if disp == "" {
		disp = ":0"
	}
	if i := strings.LastIndexByte(disp, ':'); i >= 0 {
		if j := strings.IndexByte(disp[i:], '.'); j >= 0 && disp[i+j:] == ".0" {
			disp = disp[:i+j]
		}
	}
	disp = strings.ReplaceAll(disp, "/", "_")
	u := os.Getenv("USER")
	if u == "" {
		u = currentUser()
	}
	return "/tmp/ns." + u + "." + disp
}

// checkNamespace makes dir (mode 0700) if it is missing, and refuses it
// unless it is a directory of ours that only we may write. A directory
// that another user made (anyone may make /tmp/ns.$USER.$DISPLAY before
// us) or may write could be used to read or replace what is posted
// there, so smtpfs does not post in it, nor somewhere else on its own:
// plan9port's tools, which refuse such a directory too, would not find
// the service there, and the user would not learn that someone holds
// their name space. The error says how to go on: a private $NAMESPACE
// (for the clients too), or the directory removed or made private.
func checkNamespace(dir string) error {
	fi, err := os.Lstat(dir)
	if os.IsNotExist(err) {
		if err = os.MkdirAll(dir, 0700); err != nil {
			return err
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return err
	}
	use := "set $NAMESPACE to a directory of yours of mode 0700, for 9p and 9pfuse too"
	if os.Getenv("NAMESPACE") != "" {
		use = "set $NAMESPACE to another directory, of yours and of mode 0700"
	}
	switch st, _ := fi.Sys().(*syscall.Stat_t); {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("name space %s: permission denied: a symbolic link; remove it, or %s", dir, use)
	case !fi.IsDir():
		return fmt.Errorf("name space %s: not a directory; remove it, or %s", dir, use)
	case st != nil && int(st.Uid) != os.Getuid():
		return fmt.Errorf("name space %s: permission denied: owned by uid %d, who could read or replace what is posted there; %s, or remove the directory (as root)", dir, st.Uid, use)
	case fi.Mode().Perm()&022 != 0:
		return fmt.Errorf("name space %s: permission denied: mode %#o lets others write; chmod 700 %s, or %s", dir, fi.Mode().Perm(), dir, use)
	}
	return nil
}

// quietGo9p stops go9p's fs server from writing a line to the standard
// logger on every Tattach ("glenda attached"), the one line it still logs
// under our loop. The attach is made in the name go9pUser, and the
// standard logger's output is wrapped, once, to drop exactly the lines
// that name makes. A daemon that sets the standard logger's output should
// do it before New.
func quietGo9p() {
	quietOnce.Do(func() { log.SetOutput(&dropAttached{w: log.Writer()}) })
}

// go9pUser is the name every attach is made in.
const go9pUser = "smtpfs.9p.attach"

var quietOnce sync.Once

type dropAttached struct{ w io.Writer }

func (d *dropAttached) Write(p []byte) (int, error) {
	if bytes.HasSuffix(p, []byte(" "+go9pUser+" attached\n")) {
		return len(p), nil
	}
	return d.w.Write(p)
}
