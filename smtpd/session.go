package smtpd

import (
	"bufio"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"smtpfs/internal/errquote"
	"smtpfs/smtp"
	"smtpfs/smtp/mailauth"
	"smtpfs/smtpd/conf"
)

// A state is where a session is in the protocol; the command table says
// in which states each command is allowed.
type state uint8

const (
	stInit state = 1 << iota // greeted; no HELO/EHLO yet (or after STARTTLS)
	stHelo                   // HELO/EHLO done, no transaction
	stMail                   // MAIL accepted
	stRcpt                   // at least one RCPT accepted
	stAny  = stInit | stHelo | stMail | stRcpt
)

// Buffer sizes. An idle session holds a goroutine stack, these two buffers
// and the session itself: a few KiB, so that ten thousand idle sessions
// fit in well under 300 MB. Longer lines are read in pieces.
const (
	readBuf  = 1024
	writeBuf = 512
)

// maxDiscard bounds what a client may send on one overlong command line
// before we give up on it and hang up.
const maxDiscard = 64 << 10

// maxJunk is how many commands that move no mail an untrusted session may
// send.
const maxJunk = 100

// A session is one SMTP connection. Only its own goroutine touches it,
// except for mu and what it guards (Shutdown's wake and kill).
type session struct {
	srv    *Server
	cfg    *conf.Config
	local  netip.Addr
	remote netip.Addr
	in     *deadlineReader
	r      *bufio.Reader
	out    *deadlineWriter
	w      *bufio.Writer
	tr     *transcript // nil unless debug
	lis    *Listener   // the listener's policy and counters; nil: an smtp one
	role   conf.Role
	line   []byte // the command line buffer
	cur    string // the command being served, for logs (AUTH masked)

	state     state
	helo      string // the HELO/EHLO argument: upas's "him"
	esmtp     bool
	tls       bool
	trusted   bool   // in ournets, or authenticated
	authUser  string // "" until AUTH succeeds
	authFails int
	errors    int  // refused commands, upas's rejectcount
	junkN     int  // commands that moved no mail (junk)
	dialup    bool // a Dial verdict: every command but QUIT is refused
	quit      bool
	broken    bool // a write failed: say nothing more
	abandoned bool // it ended inside a transaction, the message unanswered (Stats.Abandoned)

	from  mailPath // the transaction
	rcpts []rcpt
	body8 bool
	utf8  bool // MAIL said SMTPUTF8 (utf8.go)
	// utf8Msg: the message needs SMTPUTF8 (needsUTF8), known once read
	utf8Msg bool
	// params: the transaction's RET, ENVID and REQUIRETLS (dsn.go)
	params smtp.Params
	// A BDAT transaction (bdat.go): its chunks so far, whether one failed,
	// and the octets of BDAT read in the session, for its hard bound.
	chunks      *chunkWriter
	chunkFailed bool
	chunkRead   int64
	mails       int // MAIL commands of the session (maxmails, limits.go)
	// Of the transaction's recipients, kept as they are accepted so that
	// a RCPT costs the same however many came before (maxrcpts):
	rcptSeen  map[string]bool // addresses, lower case
	rcptBoxes map[string]bool // local boxes
	newBoxes  int             // boxes the delivery will make
	loopRcpts int             // recipients at the client's own address (loopbackOK)
	// boxesHeld boxes of the client's hour starting at boxesSince are
	// counted for the transaction (takeBox) and not yet made.
	boxesHeld  int
	boxesSince time.Time
	// Mail authentication (mailauth.go): the SPF result of the sender, and
	// for the message after DATA the header without forged
	// Authentication-Results fields (nil: unchanged) and the fields added.
	spf        *mailauth.SPFResult
	stripped   []byte
	authRes    string
	quarantine string

	mu      sync.Mutex
	conn    net.Conn // plain or TLS; swapped under mu
	waiting bool     // reading a command outside a transaction: Shutdown may interrupt
}

// A rcpt is an accepted recipient.
type rcpt struct {
	addr string // local@domain: for the queue, Delivered-To:, To:
	bang string // upas's form, for replies and the mailer
	box  string // the local box, "" for a remote recipient
	// newBox: box has no directory yet; the delivery makes it (mkbox)
	newBox bool
	dsn    smtp.RcptParams // NOTIFY and ORCPT (dsn.go)
}

func newSession(srv *Server, c net.Conn, cfg *conf.Config, local, remote netip.Addr) *session {
	s := &session{srv: srv, cfg: cfg, conn: c, local: local, remote: remote, state: stInit}
	s.in = &deadlineReader{c: c}
	s.r = bufio.NewReaderSize(s.in, readBuf)
	s.out = &deadlineWriter{c: c, timeout: cfg.CmdTimeout}
	s.w = bufio.NewWriterSize(s.out, writeBuf)
	s.trusted = cfg.Trusted(remote)
	return s
}

// A deadlineReader sets a read deadline before each Read when perRead is
// set (DATA: a timeout per block, RFC 5321 §4.5.3.2.5); otherwise the
// session sets one deadline per command.
type deadlineReader struct {
	c       net.Conn
	perRead time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.perRead > 0 {
		d.c.SetReadDeadline(time.Now().Add(d.perRead))
	}
	return d.c.Read(p)
}

// A deadlineWriter sets a write deadline before each Write: a reply
// longer than the write buffer is written in pieces as it is made, maybe
// long after the last flush (a slow delivery), and each piece needs a
// deadline of its own.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.c.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.c.Write(p)
}

// serve runs the session: greeting, then the command loop.
func (s *session) serve() {
	if s.cfg.Debug {
		s.tr = openTranscript(s)
	}
	defer s.tr.close()
	if s.role == conf.RoleSubmissions && !s.implicitTLS() {
		return
	}
	s.reply(smtp.Replyf(220, "", "%s ESMTP", s.cfg.DefaultDomain))
	for !s.quit {
		line, err := s.readCommand()
		switch {
		case err == errLineLong:
			s.cur = "(overlong line)"
			s.tr.in(s.cur)
			s.fail(errLineLong)
		case err != nil:
			s.readFailed(err)
		default:
			s.command(line)
		}
		if !s.quit && s.errors >= s.cfg.MaxErrors {
			s.logf("Rejected (%s/%s): %d errors", s.helo, s.remote, s.errors)
			s.reply(smtp.Replyf(554, "5.5.0", "too many errors.  transaction failed."))
			s.quit = true
		}
	}
	s.giveBoxes() // of a transaction left open; before the last reply goes
	s.dropChunks()
	s.flush()
}

// command serves one command line: parse, look up, check the state, run.
func (s *session) command(line []byte) {
	c, err := parseCommand(line)
	s.cur = maskAuth(string(line))
	s.tr.in(s.cur)
	if c.verb != "QUIT" {
		s.pause()
	}
	spec, known := commands[c.verb]
	switch {
	case err != nil:
		s.fail(err)
	case c.verb == "BDAT": // its octets are read in every state
		s.bdat(c.arg)
	case httpVerbs[c.verb] && c.arg != "":
		s.logf("non-SMTP command from %s: %q; hanging up", s.remote, s.cur)
		s.quit = true
	case !known:
		s.fail(errSyntax)
	case s.dialup && c.verb != "QUIT":
		s.fail(errDialup)
	case s.state&spec.states == 0:
		s.fail(seqError(c.verb, s.state))
	case spec.arg == argNone && c.arg != "", spec.arg == argReq && c.arg == "":
		s.fail(errArgs)
	case spec.junk && s.junk():
	default:
		spec.fn(s, c.arg)
	}
}

// junk counts a command that moves no mail, and ends the session with 421
// (returning true) when an untrusted client has sent more than maxJunk:
// else a NOOP every few minutes would hold a session for ever. Refused
// commands are not junk; they count towards maxerrors instead.
func (s *session) junk() bool {
	if s.trusted {
		return false
	}
	if s.junkN++; s.junkN <= maxJunk {
		return false
	}
	s.logf("[%s/%s] %d commands that move no mail; hanging up", s.helo, s.remote, s.junkN)
	s.reply(smtp.Replyf(421, "4.7.0", "%s too many commands that move no mail; closing", s.cfg.DefaultDomain))
	s.quit = true
	return true
}

// maskAuth hides the initial response of an AUTH command.
func maskAuth(line string) string {
	f := strings.Fields(line)
	if len(f) > 2 && strings.EqualFold(f[0], "AUTH") {
		return f[0] + " " + f[1] + " (protected)"
	}
	return line
}

// httpVerbs are the first words of requests of other protocols; a client
// that sends one is not speaking SMTP, perhaps a browser tricked into a
// cross-protocol attack, and is cut off at once.
var httpVerbs = map[string]bool{"GET": true, "POST": true, "HEAD": true, "PUT": true, "CONNECT": true, "OPTIONS": true, "DELETE": true}

var errDraining = errors.New("shutting down")

// readCommand reads the next command line, first flushing the replies if
// the client has sent nothing more (RFC 2920 §3.2).
func (s *session) readCommand() ([]byte, error) {
	if s.r.Buffered() == 0 {
		if err := s.flush(); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	if s.srv.drainCtx.Err() != nil && s.state&(stMail|stRcpt) == 0 {
		s.mu.Unlock()
		return nil, errDraining
	}
	s.waiting = s.state&(stMail|stRcpt) == 0
	s.conn.SetReadDeadline(time.Now().Add(s.cfg.CmdTimeout))
	s.mu.Unlock()
	line, err := s.readLine()
	s.mu.Lock()
	s.waiting = false
	s.mu.Unlock()
	return line, err
}

// wake interrupts a session waiting for a command outside a transaction,
// for Shutdown.
func (s *session) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting {
		s.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// kill closes the connection, for Shutdown after its grace period.
func (s *session) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn.Close()
}

var errFlood = errors.New("overlong line")

// readLine reads one line of at most maxCmdLine octets and returns it
// without its line end (CRLF, or a bare LF: see the package doc). An
// overlong line is read to its end and thrown away (errLineLong), unless
// it goes on past maxDiscard (errFlood).
func (s *session) readLine() ([]byte, error) {
	s.line = s.line[:0]
	long, discarded := false, 0
	for {
		frag, err := s.r.ReadSlice('\n')
		if !long && len(s.line)+len(frag) <= maxCmdLine {
			s.line = append(s.line, frag...)
		} else if long, discarded = true, discarded+len(frag); discarded > maxDiscard {
			return nil, errFlood
		}
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
	if long {
		return nil, errLineLong
	}
	line := s.line[:len(s.line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readFailed ends the session after a failed command read.
func (s *session) readFailed(err error) {
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	dom := s.cfg.DefaultDomain
	switch {
	case err == errDraining || timeout && s.srv.drainCtx.Err() != nil:
		s.reply(smtp.Replyf(421, "4.3.2", "%s shutting down", dom))
	case err == errFlood:
		s.failLog(errLineLong, "overlong line from %s; hanging up", s.remote)
	case timeout:
		s.srv.Stats.Timeouts.Add(1)
		s.logf("timeout waiting for a command from %s/%s", s.helo, s.remote)
		s.reply(smtp.Replyf(421, "4.4.2", "%s timeout", dom))
	}
	s.quit = true
	s.abandoned = s.state&(stMail|stRcpt) != 0
}

// reply sends r (buffered until the next flush).
func (s *session) reply(r *smtp.Reply) {
	if s.broken {
		return
	}
	w := r.Wire()
	s.tr.out(w)
	if _, err := s.w.Write(w); err != nil {
		s.broken, s.quit = true, true
	}
}

// fail refuses the current command with r: it counts towards maxerrors
// and the tarpit, and is logged once.
func (s *session) fail(r *smtp.Reply) {
	s.failLog(r, "[%s/%s] %q: %s", s.helo, s.remote, s.cur, r.Error())
}

// failLog is fail with its own log line.
func (s *session) failLog(r *smtp.Reply, format string, args ...any) {
	s.errors++
	s.srv.Stats.Errors.Add(1)
	s.logf(format, args...)
	s.reply(r)
}

// flush sends the buffered replies.
func (s *session) flush() error {
	if s.broken || s.w.Buffered() == 0 {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		s.broken, s.quit = true, true
		return err
	}
	return nil
}

func (s *session) logf(format string, args ...any) { s.srv.logf(format, args...) }

// pause is upas's tarpit after a refused command, before every command
// but QUIT: 8 s, 16 s, 32 s, ..., at most the long tarpit delay; only with
// tarpit on, never for trusted clients.
func (s *session) pause() {
	if !s.cfg.Tarpit || s.trusted || s.errors == 0 {
		return
	}
	d := s.cfg.TarpitLong
	if s.errors <= 10 {
		d = min(8*time.Second<<(s.errors-1), d)
	}
	s.delay(d)
}

// delay sleeps for d, or less if the server shuts down. Replies are
// flushed first, so the client sees where it stands.
func (s *session) delay(d time.Duration) {
	s.flush()
	s.srv.sleep(s.srv.drainCtx, d)
}

// resetTxn forgets the transaction, giving back the boxes it counted and
// did not make.
func (s *session) resetTxn() {
	s.giveBoxes()
	s.dropChunks()
	s.from, s.rcpts, s.body8 = mailPath{}, nil, false
	s.utf8, s.utf8Msg = false, false
	s.params = smtp.Params{}
	s.rcptSeen, s.rcptBoxes, s.newBoxes = nil, nil, 0
	s.loopRcpts = 0
	s.spf, s.stripped, s.authRes, s.quarantine = nil, nil, "", ""
	if s.state&(stMail|stRcpt) != 0 {
		s.state = stHelo
	}
}

// ours reports whether mail to domain d (a mailPath domain: lower case, "" for
// none, or an address literal) is delivered here.
func (s *session) ours(d string) bool {
	if strings.HasPrefix(d, "[") {
		a, ok := parseLiteral(d)
		return ok && a.IsValid() && a == s.local
	}
	return d == "" || s.cfg.OurDomain(d)
}

// newID returns a message id for Received: and the log.
func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// A transcript is the debug record of one session (debug on, -d): both
// directions, AUTH payloads hidden, message bodies elided. People read it
// on a terminal, so each line has its control characters escaped
// (errquote.Escape): a client's ESC [ 2 J or C1 CSI is shown, not obeyed.
type transcript struct{ f *os.File }

func openTranscript(s *session) *transcript {
	f, err := s.srv.transcriptFile()
	if err != nil {
		s.logf("debug transcript: %v", err)
		return nil
	}
	t := &transcript{f}
	t.note(fmt.Sprintf("session from %s to %s at %s", s.remote, s.local, s.srv.Now().Format(time.RFC3339)))
	return t
}

func (t *transcript) in(line string) {
	if t != nil {
		fmt.Fprintf(t.f, "<- %s\n", errquote.Escape(line))
	}
}

func (t *transcript) out(wire []byte) {
	if t != nil {
		for l := range strings.SplitSeq(strings.TrimSuffix(string(wire), "\r\n"), "\r\n") {
			fmt.Fprintf(t.f, "-> %s\n", errquote.Escape(l))
		}
	}
}

func (t *transcript) note(s string) {
	if t != nil {
		fmt.Fprintf(t.f, "-- %s\n", errquote.Escape(s))
	}
}

func (t *transcript) close() {
	if t != nil {
		t.f.Close()
	}
}
