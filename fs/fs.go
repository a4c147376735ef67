// Package fs presents smtpfs as a 9P file tree, in the Plan 9 manner: the
// mail server is operated through files, from a shell or an rc script, by
// any 9P client (plan9port's 9p and 9pfuse, go9p's mount9p, Linux v9fs,
// 9fans.net/go/plan9/client).
//
//	ctl        rw  the configuration as ctl verbs; write verbs, one a line
//	whitelist  rw  the greylist whitelist; writes append, > and >> alike
//	blocked    rw  lib/blocked, the same way (when the daemon has one)
//	queue      rw  one line per queued message; write a message to queue it
//	log        r   recent log lines, then new ones as they come (blocks)
//	log.recent r   the recent log lines, then end of file
//	queue.d/   r   a file per queued message, by id; rm deletes the message
//	stats      r   counters, `name value` a line
//	version    r   the daemon's version
//	dkim/      r   a file per domain with DKIM keys: the TXT records to publish
//
// The package only presents: it declares small interfaces for what it
// shows and steers (Control, List, Queue, Stats) and the daemon implements
// them. It speaks 9P2000 (Plan 9 manual section 5) through go9p, whose
// package is also called fs and is imported as ninep everywhere. Messages
// written to the queue file are RFC 5322 messages, with an optional upas
// "From " line.
//
// Policy. Every file reports length 0 and ignores offsets on write, so
// that FUSE clients neither cache nor cut what they read (reference/ninep.md
// §4). A length-0 wstat of a writable file (what `>` sends) is accepted
// and changes nothing (whitelist and blocked are append-only, and a list
// entry is removed with a ctl verb), as are the times (touch); any other
// change is refused (checkWstat). Each error says, in a way 9pfuse cannot
// misread, the errno it means (errno.go: EINVAL for a bad line, entry or
// message, ENOENT for what is not there, E2BIG, EAGAIN, EIO, EACCES, EBUSY),
// and its full reason goes to the log. Only write errors reach a shell: a
// clunk error is lost, so one write is a whole command (cmdfile.go), a
// message's header is checked line by line as it arrives, and the outcome
// of a clunk (a message queued) goes to the log. Nothing can be created or
// renamed, and only a queued message can be removed.
//
// Serving. The tree is posted as a Unix socket in the plan9port name space
// directory, private to its owner, and may listen on TCP: on loopback,
// where each connection is served only if the process at the other end
// runs as our user or root (asked of Linux's sock_diag), or with
// ListenNetwork on any address, open to other machines. Each connection runs our own loop over go9p's request
// handlers (serve.go), which stands up to what go9p's own loop does not:
// malformed messages, Tflush, a flood of outstanding requests, clients
// that vanish with fids open.
package fs

import (
	"context"
	"log"
	"os/user"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knusbaum/go9p"
	ninep "github.com/knusbaum/go9p/fs"
	"github.com/knusbaum/go9p/proto"

	"smtpfs/smtp/queue"
)

// Control is the running configuration, as the ctl file shows and changes
// it.
type Control interface {
	// Ctl applies the lines of text (verbs of smtpd.conf and the runtime
	// verbs), all of them or none. Its error is what the write that
	// carried the lines fails with; it should name the bad line, as
	// conf.Apply's "invalid ctl line N 'text': reason" does.
	Ctl(text string) error
	// Config returns the effective configuration as ctl lines that Ctl
	// reads back to the same configuration.
	Config() string
}

// List is an append-only list kept in a file: the greylist whitelist,
// lib/blocked.
type List interface {
	// Text returns the list as it is on disk; the tree does not change
	// it.
	Text() []byte
	// Add validates the lines of text and appends them durably, all or
	// none; the list's users see them at once. Its error is what the
	// write fails with.
	Add(text string) error
}

// Queue is the outbound queue.
type Queue interface {
	// List returns a snapshot of the queued messages, in the order the
	// queue file lists them.
	List() []queue.Item
	// Check validates the header of a message written to the queue file
	// (an optional upas `From sender` line, then the RFC 5322 header,
	// including its last line's end) as soon as it is complete, so that a
	// message without recipients or with a bad address fails the write;
	// the tree has checked its lines already, one by one as they came
	// (queue.LineChecker). A message that is all header is checked at the
	// clunk.
	// The daemon's implementation wraps queue.ParseEnvelope, and fails too
	// while the queue has no room (queue.Queue.CheckSpace). An error with
	// a Temporary method that says true (a 4xx *smtp.Reply) reaches the
	// client as "temporary failure: ...", which 9pfuse maps to EAGAIN.
	Check(header []byte) error
	// Submit queues the whole message durably and returns its id. It runs
	// when the writer's fid is clunked; ctx ends when the server closes.
	Submit(ctx context.Context, msg []byte) (id string, err error)
}

// Stats gives the counters of the stats file.
type Stats interface {
	Stats() []Stat
}

// Config holds what a Server shows and how it serves. Control, Whitelist
// and Queue are required; the other fields have defaults.
type Config struct {
	Control   Control
	Whitelist List
	Blocked   List // the blocked file is there only when this is set
	Queue     Queue
	Stats     Stats // nil: the stats file has the tree's counters only
	Version   string
	DKIM      DKIM // the dkim directory is there only when this is set

	// Log is the hub behind the log files. The daemon makes it with
	// NewLog and hands it to smtp/mlog as the tee, so that every line of
	// every facility arrives. nil: New makes one.
	Log *Log
	// Logger gets the tree's own lines: ctl changes, whitelist entries,
	// queue outcomes, errors with their full reason, 9P protocol trouble.
	// nil: they go straight to Log, prefixed "9p: ".
	Logger *log.Logger

	Owner        string           // owner of the files; default the current user
	MaxMessage   int64            // largest message written to queue; default DefaultMaxMessage; see SetMaxMessage
	MaxFollowers int              // readers of log at once; default DefaultMaxFollowers
	MaxConns     int              // 9P connections at once; default DefaultMaxConns
	Mark         time.Duration    // a blocked log read gets a mark line after this; default 30s, <0 never
	Now          func() time.Time // the clock; default time.Now
}

// A Server serves the tree to any number of 9P connections.
type Server struct {
	cfg  Config
	log  *log.Logger
	hub  *Log
	fsys *ninep.FS
	srv  go9p.Srv
	root *dir

	ctx    context.Context
	cancel context.CancelFunc

	newConnMu sync.Mutex // go9p's NewConn counts connections without a lock

	maxMessage atomic.Int64 // of the queue file; SetMaxMessage changes it

	mu        sync.Mutex
	closed    bool
	listeners map[*listener]bool
	conns     map[uint32]*conn
	wg        sync.WaitGroup
}

// New builds the tree over the backends in c.
func New(c Config) *Server {
	if c.Log == nil {
		c.Log = NewLog(0)
	}
	if c.Logger == nil {
		c.Logger = log.New(c.Log, "9p: ", 0)
	}
	if c.Owner == "" {
		c.Owner = currentUser()
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxFollowers <= 0 {
		c.MaxFollowers = DefaultMaxFollowers
	}
	if c.Mark == 0 {
		c.Mark = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Log.setMax(c.MaxFollowers)
	quietGo9p()
	s := &Server{cfg: c, log: c.Logger, hub: c.Log, listeners: map[*listener]bool{}, conns: map[uint32]*conn{}}
	s.maxMessage.Store(c.MaxMessage)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.fsys, _ = ninep.NewFS(c.Owner, c.Owner, 0555,
		ninep.IgnorePermissions(), // Open checks access itself
		ninep.WithCreateFile(func(*ninep.FS, ninep.Dir, string, string, uint32, uint8) (ninep.File, error) {
			return nil, errPerm
		}),
		ninep.WithCreateDir(func(*ninep.FS, ninep.Dir, string, string, uint32, uint8) (ninep.Dir, error) {
			return nil, errPerm
		}),
		ninep.WithRemoveFile(s.remove), // only queue.d's messages
	)
	s.root = s.build()
	s.fsys.Root = s.root
	s.srv = s.fsys.Server()
	return s
}

// Log returns the hub behind the log files.
func (s *Server) Log() *Log { return s.hub }

// SetMaxMessage sets the size limit of a message written to the queue
// file (the daemon's maxsize, which ctl may change); n <= 0 means
// DefaultMaxMessage. Each write checks the limit of its moment, so a
// message being written when the limit drops fails at its next write.
func (s *Server) SetMaxMessage(n int64) {
	if n <= 0 {
		n = DefaultMaxMessage
	}
	s.maxMessage.Store(n)
}

// build makes the tree.
func (s *Server) build() *dir {
	c := s.cfg
	root := newDir(s.fsys, "/", c.Owner)
	file := func(name string, mode uint32) node { return newNode(s.fsys, name, c.Owner, mode) }
	root.add(&cmdFile{node: file("ctl", 0644), what: "ctl", apply: c.Control.Ctl, render: func() []byte { return []byte(c.Control.Config()) },
		aborted: s.aborted, maxWrite: s.maxWrite, log: s.log})
	root.add(&cmdFile{node: file("whitelist", 0644|proto.DMAPPEND), what: "whitelist entry",
		apply: c.Whitelist.Add, render: c.Whitelist.Text, aborted: s.aborted, maxWrite: s.maxWrite, log: s.log})
	if c.Blocked != nil {
		root.add(&cmdFile{node: file("blocked", 0644|proto.DMAPPEND), what: "blocked entry",
			apply: c.Blocked.Add, render: c.Blocked.Text, aborted: s.aborted, maxWrite: s.maxWrite, log: s.log})
	}
	root.add(&queueFile{node: file("queue", 0644), q: c.Queue, max: s.maxMessage.Load, now: c.Now,
		ctx: s.ctx, aborted: s.aborted, log: s.log})
	if msgs, ok := c.Queue.(Messages); ok {
		root.add(&queueDir{node: file("queue.d", proto.DMDIR|0555), s: s, msgs: msgs})
	}
	root.add(&logFile{node: file("log", 0444), hub: s.hub, mark: max(c.Mark, 0), now: c.Now, intr: s.interrupt})
	root.add(&textFile{node: file("log.recent", 0444), render: s.hub.Recent})
	root.add(&textFile{node: file("stats", 0444), render: s.stats})
	root.add(&textFile{node: file("version", 0444), render: func() []byte { return []byte(c.Version + "\n") }})
	if c.DKIM != nil {
		root.add(newDKIMDir(s, c.DKIM))
	}
	return root
}

// stats renders the backend's counters and the tree's own.
func (s *Server) stats() []byte {
	var l []Stat
	if s.cfg.Stats != nil {
		l = s.cfg.Stats.Stats()
	}
	s.mu.Lock()
	conns := len(s.conns)
	s.mu.Unlock()
	return renderStats(append(l, Stat{"9p.connections", int64(conns)}, Stat{"9p.logreaders", int64(s.hub.Followers())}))
}

// newConn registers a connection with go9p. go9p's NewConn increments its
// connection counter without a lock, so that two connections could get the
// same id and share per-fid state (reference/ninep.md §1.1).
func (s *Server) newConn() (go9p.Conn, uint32) {
	s.newConnMu.Lock()
	defer s.newConnMu.Unlock()
	gc := s.srv.NewConn()
	// go9p's files see fids as connID<<32 | fid; the id is unexported.
	return gc, uint32(reflect.ValueOf(gc).Elem().FieldByName("connID").Uint())
}

// connOf returns the live connection a file's fid belongs to.
func (s *Server) connOf(fid uint64) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[uint32(fid>>32)]
}

// aborted reports whether the Close of fid is not the client's clunk but
// ours, for a connection that died or was reset.
func (s *Server) aborted(fid uint64) bool {
	c := s.connOf(fid)
	return c == nil || c.isAborting()
}

// maxWrite returns the most data one Twrite on fid's connection carries,
// msize less the 24 bytes of IOHDRSZ: the size 9P clients cut a long
// write into. 0 when the connection is gone.
func (s *Server) maxWrite(fid uint64) int {
	c := s.connOf(fid)
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(int(c.msize)-24, 0)
}

// interrupt returns a channel that is closed when the read in progress on
// fid should end: flushed, or its connection gone.
func (s *Server) interrupt(fid uint64) <-chan struct{} {
	if c := s.connOf(fid); c != nil {
		return c.readInterrupt(uint32(fid))
	}
	return closedChan
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "none"
}
