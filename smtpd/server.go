package smtpd

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"smtpfs/smtp"
	"smtpfs/smtp/mailauth"
	"smtpfs/smtpd/authfail"
	"smtpfs/smtpd/conf"
)

// Queue takes messages for remote recipients. PutMail returns only once
// the message is durable on disk. m.From is "" for the null sender, else
// local@domain; m.Rcpts are local@domain (local@[ip] for address
// literals), m.Params what the client asked (DSN, REQUIRETLS, SMTPUTF8). msg is the
// message as it will be sent: CRLF line ends, no dot-stuffing, our
// Received: line first. PutDelivered queues the success DSN for the
// recipients of m delivered here that asked NOTIFY=SUCCESS ("" if none
// did), durable when it returns.
type Queue interface {
	PutMail(ctx context.Context, m smtp.Mail, msg io.Reader) (id string, err error)
	PutDelivered(ctx context.Context, m smtp.Mail, msg io.Reader) (id string, err error)
}

// Greylister decides at DATA, after all recipients, for a client that is
// neither trusted nor authenticated. It logs its own decisions.
type Greylister interface {
	Check(local, remote netip.Addr, from string, rcpts []string) (pass bool)
}

// SenderGreylister is what a Greylister may also implement: CheckSender
// greylists the pair (sender domain, recipient) instead of (client
// address, recipient), for a sender whose domain passed SPF (mailauth.go).
type SenderGreylister interface {
	CheckSender(local, remote netip.Addr, domain, from string, rcpts []string) (pass bool)
}

// Classifier gives the lib/blocked verdict (upas ratfs semantics) for the
// client address and the sender as a lower-case upas bang path
// ("example.com!bob"; "" for the null sender).
type Classifier interface {
	Classify(ip netip.Addr, sender string) Verdict
}

// A Verdict is what lib/blocked says about a client and its sender.
type Verdict int

// The verdicts, with what the server does at DATA (upas.md §2.12.1).
const (
	Accept Verdict = iota // go on with the other checks
	Block                 // read the message, dump it (saveblockedmsg), 554
	Deny                  // 554 "We don't accept mail from <sender>"
	Dial                  // 554 dial-up, and every later command too
	Delay                 // read the message, dump it (saveblockedmsg), 450
)

// Resolver answers the sender check (-r): whether domain has an MX, A or
// AAAA record. (false, nil): it does not exist (NXDOMAIN, or none of those
// records); an error: DNS failed, the answer is unknown.
type Resolver interface {
	DomainExists(ctx context.Context, domain string) (bool, error)
}

// A Server serves SMTP sessions. Set its fields, then call Serve for each
// listener or ServeConn for one connection; the fields must not change
// after that. Nil seams turn their check off: a nil Queue means remote
// recipients get 451 4.3.0 at RCPT (never a lost message), a nil
// Greylister, Classifier or Resolver skips the greylist, the block list or
// the sender domain check.
type Server struct {
	Root    string              // the mail root: box/, log/, lib/, queue.dump/, tmp/
	Config  func() *conf.Config // read at the start of each session and at each MAIL; the result is not modified
	Secrets func() *Secrets     // AUTH users; nil or a nil result: nobody can authenticate
	Log     *log.Logger         // facility smtpd; nil: no log
	Now     func() time.Time    // the clock; nil: time.Now

	Queue      Queue
	Greylister Greylister
	Classifier Classifier
	Resolver   Resolver
	// AuthLimiter counts failed AUTH across sessions; nil: one in memory
	// (authfail.Memory), for this Server alone.
	AuthLimiter AuthLimiter
	// Maildir delivers to local users; nil: one is made on <Root>/box at
	// the first delivery. Share it with the queue so that they commit
	// together.
	Maildir *Maildir

	// MailAuth checks SPF, DKIM and DMARC of mail from outside (the spf and
	// dmarc verbs); nil: nothing is checked and no Authentication-Results
	// field is added. Signer signs what trusted clients queue (DKIM); nil:
	// nothing is signed. See mailauth.go.
	MailAuth MailAuth
	Signer   Signer

	// Stats counts what the server did, for the 9P stats file; AuthStats
	// the verdicts of MailAuth.
	Stats     Stats
	AuthStats mailauth.Counters

	// sleep waits for d unless ctx is done first; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	mem   memBudget // of the message spools; max spoolBudget unless a test set it
	auths AuthLimiter
	boxes boxLimiter  // boxes made per client an hour (mkboxperhour)
	loops loopLimiter // mail of untrusted clients to themselves
	space freeSpace
	// statfs returns the free space of a directory's file system;
	// tests replace it.
	statfs func(dir string) (int64, error)
	// nofile returns the file descriptor limit (RLIMIT_NOFILE), 0 if
	// unknown; tests replace it.
	nofile func() int

	once     sync.Once
	mu       sync.Mutex
	sessions map[*session]struct{}
	perIP    map[netip.Prefix]int // sessions per untrusted client (clientNet)
	ls       map[net.Listener]struct{}
	left     *sync.Cond      // signalled when a session ends
	drainCtx context.Context // done when Shutdown starts: finish the transaction, then go
	drain    context.CancelFunc
	killCtx  context.Context // done when Shutdown's grace period is over: abandon deliveries
	kill     context.CancelFunc
	draining bool
	wg       sync.WaitGroup
	dbseq    int // transcript file sequence
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtpd: server closed")

func (s *Server) init() {
	s.once.Do(func() {
		s.sessions = map[*session]struct{}{}
		s.perIP = map[netip.Prefix]int{}
		s.ls = map[net.Listener]struct{}{}
		s.left = sync.NewCond(&s.mu)
		s.drainCtx, s.drain = context.WithCancel(context.Background())
		s.killCtx, s.kill = context.WithCancel(context.Background())
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.sleep == nil {
			s.sleep = sleepCtx
		}
		if s.mem.max == 0 {
			s.mem.max = spoolBudget
		}
		if s.nofile == nil {
			s.nofile = rlimitNofile
		}
		if s.auths = s.AuthLimiter; s.auths == nil {
			s.auths = &authfail.Memory{}
		}
		if s.statfs == nil {
			s.statfs = statfsFree
		}
		if s.Maildir == nil {
			s.Maildir = NewMaildir(filepath.Join(s.Root, "box"))
			s.Maildir.MkBox = func() bool { return s.Config().MkBox }
		}
	})
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Log != nil {
		s.Log.Printf(format, args...)
	}
}

// Serve accepts connections on l and serves each in its own goroutine
// until Shutdown, when it returns ErrServerClosed. Transient accept errors
// (out of file descriptors) are retried with a growing pause.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, nil) }

// serve is Serve for the sessions of listener p (nil: an smtp one).
func (s *Server) serve(l net.Listener, p *Listener) error {
	s.init()
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.ls[l] = struct{}{}
	s.mu.Unlock()
	defer func() { // a listener closed while the server goes on (listen changed)
		s.mu.Lock()
		delete(s.ls, l)
		s.mu.Unlock()
	}()
	var pause time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.drainCtx.Err() != nil {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.logf("accept: %v; pausing %v", err, pause)
			time.Sleep(pause)
			continue
		}
		pause = 0
		// Add under mu, unless Shutdown has begun: Shutdown sets draining
		// under mu before it waits, so no Add can race its Wait
		// (sync.WaitGroup), and no session starts after it.
		s.mu.Lock()
		if s.draining {
			s.mu.Unlock()
			c.Close()
			return ErrServerClosed
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(c, p)
		}()
	}
}

// ServeConn serves one session on c and closes it. The client's address is
// c.RemoteAddr() and ours c.LocalAddr(): a *net.TCPAddr, or any net.Addr
// whose String is ip:port or ip!port.
func (s *Server) ServeConn(c net.Conn) { s.serveConn(c, nil) }

// serveConn is ServeConn for a session of listener p (nil: an smtp one).
func (s *Server) serveConn(c net.Conn, p *Listener) {
	s.init()
	defer c.Close()
	remote, local := addrIP(c.RemoteAddr()), addrIP(c.LocalAddr())
	cfg := s.Config()
	if cfg.IsEvil(remote) {
		s.Stats.Refused.Add(1)
		return // the man page: at once, no greeting, nothing logged
	}
	sess := newSession(s, c, cfg, local, remote)
	sess.lis, sess.role = p, p.Role()
	if r := s.admit(sess); r != nil {
		s.Stats.Refused.Add(1)
		s.logf("refused %s: %s", remote, r.Lines[0])
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		c.Write(r.Wire())
		return
	}
	defer s.leave(sess)
	defer s.recovered(sess)
	sess.serve()
	if sess.abandoned {
		s.Stats.Abandoned.Add(1)
	}
}

// recovered, deferred, turns a panic in a session (a bug, ours or a
// seam's) into the end of that session alone: it is logged with its
// stack and counted, and the client told 421; every other session goes on.
func (s *Server) recovered(sess *session) {
	r := recover()
	if r == nil {
		return
	}
	s.Stats.Panics.Add(1)
	s.logf("panic in session with %s: %v\n%s", sess.remote, r, debug.Stack())
	sess.reply(smtp.Replyf(421, "4.3.0", "%s internal error", sess.cfg.DefaultDomain))
	sess.flush()
}

// admit registers a new session, or returns the reply refusing it: too
// many sessions in all (maxconns, or as many as the file descriptor limit
// allows), too many from this untrusted client, or the server is shutting
// down.
func (s *Server) admit(sess *session) *smtp.Reply {
	nofile := s.nofile() // a system call: outside the lock
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := sess.cfg
	switch {
	case s.draining:
		return smtp.Replyf(421, "4.3.2", "%s shutting down", cfg.DefaultDomain)
	case len(s.sessions) >= cfg.MaxConns:
		return smtp.Replyf(421, "4.7.0", "%s too many connections", cfg.DefaultDomain)
	case len(s.sessions) >= sessionCeiling(cfg.MaxConns, nofile):
		s.logf("%d sessions, as many as the file descriptor limit (RLIMIT_NOFILE %d) allows", len(s.sessions), nofile)
		return smtp.Replyf(421, "4.7.0", "%s too many connections", cfg.DefaultDomain)
	case !sess.trusted && s.perIP[clientNet(sess.remote)] >= cfg.MaxPerIP:
		return smtp.Replyf(421, "4.7.0", "%s too many connections from %s", cfg.DefaultDomain, clientName(sess.remote))
	}
	s.sessions[sess] = struct{}{}
	s.perIP[clientNet(sess.remote)]++
	s.Stats.Connections.Add(1)
	s.Stats.Sessions.Add(1)
	sess.lstats().Connections.Add(1)
	sess.lstats().Sessions.Add(1)
	return nil
}

// sessionCeiling returns how many sessions may be open at once: maxconns,
// but no more than the file descriptor limit nofile allows (0: no limit
// known), so that a crowd gets 421 from us rather than failing accepts,
// spools and Maildir files for everyone. An idle session holds one
// descriptor, its socket; one in DATA may hold a second, its spool file,
// and if that cannot be had the message gets a 451 and the session stays
// in step. The rest of the program keeps an eighth of the limit (at least
// 256, or half of a small limit) for the listeners, logs, the queue's
// files and outbound connections, spools and Maildir files.
func sessionCeiling(maxconns, nofile int) int {
	if nofile <= 0 {
		return maxconns
	}
	reserve := max(min(256, nofile/2), nofile/8)
	return min(maxconns, max(1, nofile-reserve))
}

// rlimitNofile returns the soft limit of file descriptors. Go raises it
// to the hard limit at start; an operator may change it with prlimit, so
// it is read at each connection (a system call, next to an accept).
func rlimitNofile() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int(min(rl.Cur, 1<<31))
}

func (s *Server) leave(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
	n := clientNet(sess.remote)
	if s.perIP[n]--; s.perIP[n] <= 0 {
		delete(s.perIP, n)
	}
	s.Stats.Sessions.Add(-1)
	sess.lstats().Sessions.Add(-1)
	s.left.Broadcast()
}

// Shutdown stops the listeners, lets every session finish the transaction
// it is in (idle sessions are told 421 at once), and returns when all have
// ended. When ctx is done first it closes the remaining connections, so
// that a message not yet acknowledged is simply not acknowledged, and
// returns ctx's error once their goroutines are gone.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.draining = true
	s.drain()
	for l := range s.ls {
		l.Close()
	}
	for sess := range s.sessions {
		sess.wake()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.waitSessions()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.kill()
	s.mu.Lock()
	for sess := range s.sessions {
		sess.kill()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// waitSessions waits until every session has ended, including those of
// ServeConn callers other than Serve.
func (s *Server) waitSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.sessions) > 0 {
		s.left.Wait()
	}
}

// clientNet returns what counts as one client for the limits per client
// (maxperip, AUTH failures): an IPv4 address, or the /64 of an IPv6
// address, the least a site is given (RFC 6177 §2), so that a site cannot
// multiply itself by calling from many of its addresses.
func clientNet(ip netip.Addr) netip.Prefix {
	bits := ip.BitLen()
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// clientName is clientNet for logs and replies: 192.0.2.1, 2001:db8::/64.
func clientName(ip netip.Addr) string {
	if ip.Is6() {
		return clientNet(ip).String()
	}
	return ip.String()
}

// addrIP returns the IP address of a net.Addr, or the zero Addr.
func addrIP(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	s := a.String()
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if i := lastBang(s); i >= 0 {
		s = s[:i]
	}
	ip, _ := netip.ParseAddr(s)
	return ip.Unmap()
}

func lastBang(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '!' {
			return i
		}
	}
	return -1
}

// transcriptFile opens a new debug transcript, <Root>/log/smtpd.db/
// <yyyymmdd-hhmmss>.<n>, mode 0600: it holds message headers.
func (s *Server) transcriptFile() (*os.File, error) {
	dir := filepath.Join(s.Root, "log", "smtpd.db")
	if err := os.MkdirAll(dir, 0700); err != nil {
		return nil, err
	}
	stamp := s.Now().Format("20060102-150405")
	var err error
	for range 1000 {
		s.mu.Lock()
		s.dbseq++
		n := s.dbseq
		s.mu.Unlock()
		var f *os.File
		name := filepath.Join(dir, stamp+"."+strconv.Itoa(n))
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0600)
		if err == nil {
			return f, nil
		}
		if !os.IsExist(err) {
			break
		}
	}
	return nil, err
}
