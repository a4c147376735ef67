package fs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/knusbaum/go9p"
	"github.com/knusbaum/go9p/proto"
)

// One connection is served by our own loop over go9p's request handlers
// (the Srv of go9p's fs package), in place of go9p.ServeReadWriter, which
// panics in its parser on a malformed message, panics the whole process
// when 100 requests wait, answers Tflush at once and the flushed request
// later, leaves a worker without a reply on a Tversion it does not know,
// and never closes the files of a client that went away
// (reference/ninep.md §1, §3). The loop:
//
//   - reads whole messages by their size field, bounded by the msize of
//     Tversion, and parses each under recover(): a malformed message with a
//     sound size gets Rerror "invalid 9P message" and the connection goes
//     on; an impossible size ends the connection;
//   - answers Tversion itself: 9P2000.u and 9P2000.L get 9P2000, anything
//     else "unknown", and a new Tversion starts a new session;
//   - runs at most maxOutstanding requests at once, each in its own
//     goroutine under recover() (errInternal), and reads nothing more
//     until one is answered;
//   - answers Tflush correctly (flush(5)): at once when the old request is
//     done; otherwise after the old request's reply, which a blocked read of
//     the log file gives up at once ("interrupted");
//   - remembers the fids of the connection, and when it ends (or is reset
//     by Tversion) clunks those still there once its requests are done, so
//     that every file's Close runs, knowing (Server.aborted) that the client
//     did not clunk: a half-written message is dropped, not queued, while a
//     Tclunk the client did send before going is honoured;
//   - refuses walks of open fids, walks to fids in use, and walks longer
//     than 16 names, which go9p lets through, and keeps an open of a fid
//     from running beside other requests on it (go9p would race);
//   - bounds the fids of a connection (MaxFids): a Tattach or Twalk that
//     would make one more gets "too many fids in use" (EBUSY under 9pfuse),
//     logged once per connection, and the connection goes on.
//
// Idle connections are kept: a FUSE mount is idle for hours. A dead one is
// found by TCP keep-alives, by the failure to write a reply (writeTimeout),
// or when a blocked log read writes its mark line.

// DefaultMaxConns bounds the 9P connections served at once. Each FUSE
// mount is one; each `9p` command is one while it runs.
const DefaultMaxConns = 256

// MaxFids bounds the fids of one connection, each a few hundred bytes
// here and in go9p. A FUSE client holds one per file the kernel
// remembers (9pfuse per looked-up node, mount9p per path): the tree's
// dozen files and, after `ls -l queue.d`, one per queued message. A
// `9p` command uses two or three.
const MaxFids = 16384

const (
	// maxOutstanding requests of one connection are handled at once. go9p's
	// own loop has 100 workers and dies when 100 more requests wait;
	// blocked log reads take at most DefaultMaxFollowers of these.
	maxOutstanding = 64
	// preVersionMax bounds the messages before Tversion, which is short.
	preVersionMax = 8192
	// minMsize is the smallest msize we agree to: a stat must fit.
	minMsize = 256
	// maxWalk is MAXWELEM, the most names a Twalk may carry (walk(5)).
	maxWalk = 16
	// maxFlushes bounds the Tflushes waiting on one request.
	maxFlushes = 64
	// maxBadLogged malformed messages are logged per connection.
	maxBadLogged = 8

	versionTimeout = 30 * time.Second // for the first Tversion
	writeTimeout   = time.Minute      // for one reply

	noFid    = ^uint32(0)
	cloneFid = noFid - 1 // for a remove of an open fid (remove)
	noTag    = ^uint16(0)
)

// A conn is one 9P connection.
type conn struct {
	s     *Server
	nc    net.Conn
	gc    go9p.Conn
	id    uint32 // go9p's connection id: the top half of a file's fid
	slots chan struct{}
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	bad   int // malformed messages so far; read by the reader only

	wmu      sync.Mutex // held while a reply (and its Rflushes) is written
	removeMu sync.Mutex // guards cloneFid

	mu       sync.Mutex
	msize    uint32 // 0 until Tversion
	ending   bool   // the connection is gone: reads give up
	aborting bool   // the fids left are being clunked for the client
	inflight map[uint16]*request
	fids     map[uint32]bool // fids of the session; true when open
	newFids  int             // fids being made by requests in progress
	fidsFull bool            // a fid was refused: MaxFids (logged once)
	locks    map[uint32]*fidLock
	reads    map[uint32]*pendingRead
}

// A fidLock orders the requests on one fid that go9p would race on: its
// Open and Create change its record of the fid without a lock, which its
// Read, Write and Clunk read.
type fidLock struct {
	sync.RWMutex
	refs int
}

// A request is one T-message being handled.
type request struct {
	fc      proto.FCall
	flushes []uint16 // tags of Tflushes to answer after the reply
}

// A pendingRead is the reads in progress on one fid, and the channel that
// tells them to give up.
type pendingRead struct {
	n      int
	ch     chan struct{}
	closed bool
}

func (p *pendingRead) interrupt() {
	if !p.closed {
		close(p.ch)
		p.closed = true
	}
}

// ServeConn serves one connection until it ends or the server closes.
// Its peer is not checked as Listen checks it: the caller vouches for it.
func (s *Server) ServeConn(nc net.Conn) {
	if c := s.register(nc); c != nil {
		c.serve()
	}
}

// register makes a conn for nc, or closes nc if the server is closed.
func (s *Server) register(nc net.Conn) *conn {
	gc, id := s.newConn()
	c := &conn{s: s, nc: nc, gc: gc, id: id, slots: make(chan struct{}, maxOutstanding),
		done: make(chan struct{}), inflight: map[uint16]*request{},
		fids: map[uint32]bool{}, locks: map[uint32]*fidLock{}, reads: map[uint32]*pendingRead{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.cfg.MaxConns {
		if !s.closed {
			s.log.Printf("refused a connection: %d connections already", len(s.conns))
		}
		nc.Close()
		return nil
	}
	s.conns[id] = c
	s.wg.Add(1)
	return c
}

// close ends the connection: its reads and writes fail from now on.
func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

func (c *conn) serve() {
	defer c.teardown()
	br := bufio.NewReaderSize(c.nc, 16<<10)
	c.nc.SetReadDeadline(time.Now().Add(versionTimeout))
	for {
		frame, err := c.readFrame(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !c.isDone() {
				c.logBad(err)
			}
			return
		}
		if !c.dispatch(frame) {
			return
		}
	}
}

func (c *conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// readFrame reads one message: size[4] type[1] tag[2] ...
func (c *conn) readFrame(br *bufio.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, err
	}
	size := binary.LittleEndian.Uint32(h[:])
	limit := uint32(preVersionMax)
	c.mu.Lock()
	if c.msize > 0 {
		limit = c.msize
	}
	c.mu.Unlock()
	if size < 7 || size > limit {
		return nil, fmt.Errorf("invalid message size %d", size)
	}
	b := make([]byte, size)
	copy(b, h[:])
	if _, err := io.ReadFull(br, b[4:]); err != nil {
		return nil, err
	}
	return b, nil
}

// parseFrame parses one T-message. go9p's parser allocates what a
// Twrite's (or an Rread's) count says before it finds the data missing,
// and then panics: so R-messages are refused unparsed, a Twrite's count
// must be what its size says, and the parser runs under recover().
func parseFrame(b []byte) (fc proto.FCall, err error) {
	if !isRequest(b[4]) {
		return nil, fmt.Errorf("unexpected message type %d", b[4])
	}
	// size[4] Twrite tag[2] fid[4] offset[8] count[4] data[count]
	if b[4] == proto.Twrite && (len(b) < 23 || binary.LittleEndian.Uint32(b[19:]) != uint32(len(b)-23)) {
		return nil, errors.New("malformed Twrite: count and size disagree")
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed message of type %d: %v", b[4], p)
		}
	}()
	return proto.ParseCall(bytes.NewReader(b))
}

// dispatch handles one message; false ends the connection.
func (c *conn) dispatch(frame []byte) bool {
	tag := binary.LittleEndian.Uint16(frame[5:])
	fc, err := parseFrame(frame)
	if err != nil {
		c.logBad(err)
		c.send(rerror(tag, "invalid 9P message"))
		return true
	}
	switch m := fc.(type) {
	case *proto.TRVersion:
		return c.version(m)
	case *proto.TFlush:
		return c.flush(m)
	}
	c.mu.Lock()
	versioned := c.msize > 0
	_, dup := c.inflight[tag]
	c.mu.Unlock()
	switch {
	case !versioned:
		c.send(rerror(tag, "version not negotiated"))
		return true
	case dup:
		c.send(rerror(tag, "duplicate tag"))
		return true
	}
	select {
	case c.slots <- struct{}{}:
	case <-c.done:
		return false
	}
	r := &request{fc: fc}
	c.mu.Lock()
	c.inflight[tag] = r
	if rd, ok := fc.(*proto.TRead); ok {
		// Registered here, not in the handler, so that a Tflush read
		// next finds the read even before its handler runs.
		c.beginRead(rd.Fid)
	}
	c.mu.Unlock()
	c.wg.Add(1)
	go c.handle(r)
	return true
}

// isRequest reports whether t is the type of a T-message.
func isRequest(t byte) bool {
	return t >= proto.Tversion && t <= proto.Twstat && t%2 == 0 && t != proto.Terror
}

func (c *conn) handle(r *request) {
	defer c.wg.Done()
	c.reply(r, c.call(r.fc))
}

// call runs one request through go9p's handlers, with our checks around.
func (c *conn) call(fc proto.FCall) (resp proto.FCall) {
	tag := fc.GetTag()
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Printf("panic serving %s: %v\n%s", fc, p, debug.Stack())
			resp = rerror(tag, errInternal)
		}
	}()
	if fid, ok := fidOf(fc); ok {
		defer c.lockFid(fid, isType[*proto.TOpen](fc) || isType[*proto.TCreate](fc))()
	}
	srv, gc := c.s.srv, c.gc
	var err error
	switch m := fc.(type) {
	case *proto.TAuth:
		return rerror(tag, "authentication not required")
	case *proto.TAttach:
		if c.hasFid(m.Fid) {
			return rerror(tag, "fid in use")
		}
		// go9p checks nothing with the name under IgnorePermissions, and
		// writes it to the standard logger: it gets one that quietGo9p
		// knows, never the client's.
		m.Uname = go9pUser
		done, ok := c.reserveFid("Tattach")
		if !ok {
			return rerror(tag, errFids.Error())
		}
		defer done()
		if resp, err = srv.Attach(gc, m); isType[*proto.RAttach](resp) {
			c.setFid(m.Fid, false)
		}
	case *proto.TWalk:
		return c.walk(m)
	case *proto.TOpen:
		if resp, err = srv.Open(gc, m); isType[*proto.ROpen](resp) {
			c.setFid(m.Fid, true)
		}
	case *proto.TCreate:
		resp, err = srv.Create(gc, m) // refused by the tree's hook
	case *proto.TRead:
		c.mu.Lock()
		m.Count = min(m.Count, c.msize-11) // size[4] Rread tag[2] count[4]
		c.mu.Unlock()
		defer c.endRead(m.Fid) // begun by dispatch
		resp, err = srv.Read(gc, m)
	case *proto.TWrite:
		resp, err = srv.Write(gc, m)
	case *proto.TClunk:
		resp, err = srv.Clunk(gc, m)
		c.dropFid(m.Fid)
	case *proto.TRemove:
		return c.remove(m)
	case *proto.TStat:
		resp, err = srv.Stat(gc, m)
	case *proto.TWstat:
		return c.wstat(m)
	default:
		return rerror(tag, "invalid 9P message")
	}
	return c.result(tag, resp, err)
}

// fidOf returns the fid a request works on, if it works on an existing one.
func fidOf(fc proto.FCall) (uint32, bool) {
	switch m := fc.(type) {
	case *proto.TWalk:
		return m.Fid, true
	case *proto.TOpen:
		return m.Fid, true
	case *proto.TCreate:
		return m.Fid, true
	case *proto.TRead:
		return m.Fid, true
	case *proto.TWrite:
		return m.Fid, true
	case *proto.TClunk:
		return m.Fid, true
	case *proto.TRemove:
		return m.Fid, true
	case *proto.TStat:
		return m.Fid, true
	case *proto.TWstat:
		return m.Fid, true
	}
	return 0, false
}

// lockFid takes fid's lock, exclusive or shared, and returns its release.
func (c *conn) lockFid(fid uint32, exclusive bool) func() {
	c.mu.Lock()
	l := c.locks[fid]
	if l == nil {
		l = &fidLock{}
		c.locks[fid] = l
	}
	l.refs++
	c.mu.Unlock()
	if exclusive {
		l.Lock()
	} else {
		l.RLock()
	}
	return func() {
		if exclusive {
			l.Unlock()
		} else {
			l.RUnlock()
		}
		c.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(c.locks, fid)
		}
		c.mu.Unlock()
	}
}

func isType[T proto.FCall](fc proto.FCall) bool {
	_, ok := fc.(T)
	return ok
}

// result turns what a go9p handler returned into our reply, with go9p's
// error texts in Plan 9's words.
func (c *conn) result(tag uint16, resp proto.FCall, err error) proto.FCall {
	if err != nil || resp == nil {
		c.s.log.Printf("9P handler error: %v", err)
		return rerror(tag, errInternal)
	}
	if e, ok := resp.(*proto.RError); ok {
		if t, ok := go9pErrors[e.Ename]; ok {
			e.Ename = t
		} else if strings.HasSuffix(e.Ename, "Not a directory") {
			e.Ename = "not a directory"
		}
	}
	return resp
}

// The protocol's own errors, worded for 9pfuse's table as the rest
// (smtpfs(4), DIAGNOSTICS; fs/mount.Errno): " fid " makes a fid error
// EBADF, and "i/o" makes an internal error EIO; without a word of the
// table 9pfuse would say ERANGE.
const (
	errUnknownFid = "unknown fid on this connection"  // walk(5), go9p's "Bad Fid."
	errWalkOpen   = "walk of an open fid not allowed" // walk(5)
	errInternal   = "internal i/o error"              // a handler's panic or error; the log says which
)

// go9pErrors translates the Rerror texts of go9p's fs server.
var go9pErrors = map[string]string{
	"No such path":               "file does not exist",
	"Bad Fid.":                   errUnknownFid,
	"Fid already open.":          "fid already open",
	"Permission denied.":         "permission denied",
	"Cannot write to directory.": "is a directory",
	"File not opened for write.": "permission denied",
	"1File not opened.":          "permission denied",
	"2File not opened.":          "permission denied",
}

// walk checks what go9p does not: walk(5) forbids walking an open fid,
// to a newfid in use, or more than MAXWELEM names. go9p also creates
// newfid on a partial walk of "..", which is undone.
func (c *conn) walk(m *proto.TWalk) proto.FCall {
	tag := m.Tag
	c.mu.Lock()
	open, known := c.fids[m.Fid]
	_, inUse := c.fids[m.Newfid]
	c.mu.Unlock()
	switch {
	case m.Nwname > maxWalk:
		return rerror(tag, "invalid walk: too many names")
	case !known:
		return rerror(tag, errUnknownFid)
	case open:
		return rerror(tag, errWalkOpen)
	case inUse && m.Newfid != m.Fid:
		return rerror(tag, "fid in use")
	}
	if m.Newfid != m.Fid {
		done, ok := c.reserveFid("Twalk")
		if !ok {
			return rerror(tag, errFids.Error())
		}
		defer done()
	}
	resp, err := c.s.srv.Walk(c.gc, m)
	if rw, ok := resp.(*proto.RWalk); ok {
		if rw.Nwqid == m.Nwname {
			c.setFid(m.Newfid, false)
		} else if m.Newfid != m.Fid {
			c.s.srv.Clunk(c.gc, &proto.TClunk{Header: proto.Header{Type: proto.Tclunk, Tag: tag}, Fid: m.Newfid})
		}
	}
	return c.result(tag, resp, err)
}

// remove removes through go9p, which drops the fid without closing its
// file when it is open: an open fid is first cloned and clunked (its
// file's Close runs), and the clone carries the remove.
func (c *conn) remove(m *proto.TRemove) proto.FCall {
	tag, fid := m.Tag, m.Fid
	defer c.dropFid(fid)
	c.mu.Lock()
	open := c.fids[fid]
	c.mu.Unlock()
	if open {
		c.removeMu.Lock()
		defer c.removeMu.Unlock()
		if c.hasFid(cloneFid) {
			return rerror(tag, "fid in use")
		}
		c.s.srv.Walk(c.gc, &proto.TWalk{Header: proto.Header{Type: proto.Twalk, Tag: tag}, Fid: fid, Newfid: cloneFid})
		c.s.srv.Clunk(c.gc, &proto.TClunk{Header: proto.Header{Type: proto.Tclunk, Tag: tag}, Fid: fid})
		m = &proto.TRemove{Header: m.Header, Fid: cloneFid}
	}
	resp, err := c.s.srv.Remove(c.gc, m)
	return c.result(tag, resp, err)
}

// wstat checks a wstat as it came (checkWstat) against the file's stat,
// and only then hands it to go9p, which would drop parts of it. A
// refusal is logged with its reason.
func (c *conn) wstat(m *proto.TWstat) proto.FCall {
	resp, err := c.s.srv.Stat(c.gc, &proto.TStat{Header: proto.Header{Type: proto.Tstat, Tag: m.Tag}, Fid: m.Fid})
	rs, ok := resp.(*proto.RStat)
	if !ok {
		return c.result(m.Tag, resp, err)
	}
	if err := checkWstat(rs.Stat, m.Stat); err != nil {
		c.s.log.Printf("wstat refused: %v", err)
		return rerror(m.Tag, err.Error())
	}
	resp, err = c.s.srv.Wstat(c.gc, m)
	return c.result(m.Tag, resp, err)
}

// reply sends the reply to r, then the Rflushes waiting on it.
func (c *conn) reply(r *request, resp proto.FCall) {
	c.wmu.Lock()
	c.mu.Lock()
	delete(c.inflight, r.fc.GetTag())
	flushes := r.flushes
	c.mu.Unlock()
	c.write(resp)
	for _, t := range flushes {
		c.write(&proto.RFlush{Header: proto.Header{Type: proto.Rflush, Tag: t}})
	}
	c.wmu.Unlock()
	<-c.slots
}

// send writes a reply that no request waits for.
func (c *conn) send(fc proto.FCall) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.write(fc)
}

// write writes one message; c.wmu is held. A failure ends the connection.
func (c *conn) write(fc proto.FCall) {
	c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := c.nc.Write(fc.Compose()); err != nil {
		c.close()
	}
}

// flush answers Tflush. If the old request is still being handled, the
// Rflush goes after its reply, and a read it was blocked in is told to give
// up; otherwise it goes now. Both orders are correct (flush(5)). false
// ends the connection of a client that piles up Tflushes.
func (c *conn) flush(m *proto.TFlush) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	r := c.inflight[m.Oldtag]
	if r != nil {
		if len(r.flushes) >= maxFlushes {
			c.mu.Unlock()
			return false
		}
		r.flushes = append(r.flushes, m.Tag)
		if rd, ok := r.fc.(*proto.TRead); ok {
			if p := c.reads[rd.Fid]; p != nil {
				p.interrupt()
			}
		}
	}
	c.mu.Unlock()
	if r == nil {
		c.write(&proto.RFlush{Header: proto.Header{Type: proto.Rflush, Tag: m.Tag}})
	}
	return true
}

// version answers Tversion. A Tversion after the first starts a new
// session (version(5)): the fids left are clunked as if the connection had
// died. One that comes while requests are outstanding ends the connection.
func (c *conn) version(m *proto.TRVersion) bool {
	msize := min(m.Msize, proto.MaxMsgLen)
	if msize < minMsize {
		c.send(rerror(m.Tag, "invalid msize"))
		return true
	}
	c.mu.Lock()
	busy, first := len(c.inflight) > 0, c.msize == 0
	c.mu.Unlock()
	if busy {
		c.logBad(errors.New("Tversion with requests outstanding"))
		return false
	}
	c.reset()
	ver := "unknown"
	if strings.HasPrefix(m.Version, "9P2000") {
		ver = "9P2000"
		if first {
			// go9p keeps its own msize only to cap reads, which call does.
			c.s.srv.Version(c.gc, &proto.TRVersion{Header: proto.Header{Type: proto.Tversion, Tag: m.Tag},
				Msize: proto.MaxMsgLen, Version: "9P2000"})
		}
		c.mu.Lock()
		c.msize = msize
		c.mu.Unlock()
		c.nc.SetReadDeadline(time.Time{})
	}
	c.send(&proto.TRVersion{Header: proto.Header{Type: proto.Rversion, Tag: m.Tag}, Msize: msize, Version: ver})
	return true
}

// reset clunks the fids of the session (no request is in progress).
func (c *conn) reset() {
	c.clunkAll()
}

// teardown runs when the connection ends: blocked reads give up, requests
// finish, and every fid left is clunked so that its file's Close runs.
func (c *conn) teardown() {
	c.close()
	c.mu.Lock()
	c.ending = true
	for _, p := range c.reads {
		p.interrupt()
	}
	c.mu.Unlock()
	c.wg.Wait()
	c.clunkAll()
	c.s.mu.Lock()
	delete(c.s.conns, c.id)
	c.s.mu.Unlock()
	c.s.wg.Done()
}

// clunkAll clunks every fid of the session for the client, whatever each
// Close does. No request is in progress.
func (c *conn) clunkAll() {
	c.mu.Lock()
	fids := c.fids
	c.fids = map[uint32]bool{}
	c.aborting = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.aborting = false
		c.mu.Unlock()
	}()
	for fid := range fids {
		func() {
			defer func() {
				if p := recover(); p != nil {
					c.s.log.Printf("panic closing fid %d: %v\n%s", fid, p, debug.Stack())
				}
			}()
			c.s.srv.Clunk(c.gc, &proto.TClunk{Header: proto.Header{Type: proto.Tclunk, Tag: noTag}, Fid: fid})
		}()
	}
}

// reserveFid makes room for a fid that a request (what) may make, and
// returns the function to call once the request has recorded it or
// failed; false when the connection has MaxFids already.
func (c *conn) reserveFid(what string) (done func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.fids)+c.newFids >= MaxFids {
		if !c.fidsFull {
			c.fidsFull = true
			c.s.log.Printf("connection %d: %s refused: %v (%d, the most a connection may have); said once", c.id, what, errFids, MaxFids)
		}
		return nil, false
	}
	c.newFids++
	return func() {
		c.mu.Lock()
		c.newFids--
		c.mu.Unlock()
	}, true
}

func (c *conn) hasFid(fid uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.fids[fid]
	return ok
}

func (c *conn) setFid(fid uint32, open bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fids[fid] = open
}

func (c *conn) dropFid(fid uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.fids, fid)
}

func (c *conn) isAborting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.aborting
}

// beginRead and endRead bracket a Tread, so that Tflush and teardown can
// reach a read blocked on fid through readInterrupt. c.mu is held.
func (c *conn) beginRead(fid uint32) {
	p := c.reads[fid]
	if p == nil {
		p = &pendingRead{ch: make(chan struct{})}
		c.reads[fid] = p
	}
	p.n++
	if c.ending {
		p.interrupt()
	}
}

func (c *conn) endRead(fid uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.reads[fid]; p != nil {
		if p.n--; p.n == 0 {
			delete(c.reads, fid)
		}
	}
}

// readInterrupt returns the channel closed when the reads on fid should
// give up; nil (never) when there is no read in progress.
func (c *conn) readInterrupt(fid uint32) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ending {
		return closedChan
	}
	if p := c.reads[fid]; p != nil {
		return p.ch
	}
	return nil
}

// logBad logs a protocol error, the first few of a connection.
func (c *conn) logBad(err error) {
	if c.bad++; c.bad <= maxBadLogged {
		c.s.log.Printf("connection %d: %v", c.id, err)
	}
}

func rerror(tag uint16, msg string) *proto.RError {
	return &proto.RError{Header: proto.Header{Type: proto.Rerror, Tag: tag}, Ename: msg}
}
