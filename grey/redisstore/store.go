package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"smtpfs/grey"
)

// Timeouts. Every call a session makes waits at most Timeout; a store
// found down is not asked again until a probe finds it back, so a session
// that comes while Redis is unreachable waits for nothing.
const (
	// Timeout bounds each call a session makes (a greylist Check, an
	// AUTH count, the greylist's own whitelisting).
	Timeout = 250 * time.Millisecond
	// AdminTimeout bounds a call made for an operator (a write to the
	// whitelist file, unwhitelist, a chunk of an import or a load).
	AdminTimeout = 5 * time.Second
	// The probes of a store found down come after minBackoff, doubling to
	// maxBackoff.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	// pollEvery is how often a mirrored index asks whether the whitelist
	// changed, besides the notices it subscribes to.
	pollEvery = time.Second
)

// Options are how Open opens a store.
type Options struct {
	// Log receives the store's news: down, back, imports, loads. Nil:
	// none.
	Log *log.Logger
	// Mirror keeps an index of the whitelist in memory, loaded at open
	// and followed (a subscription to the whitelist's channel, and a
	// poll every second), so that Contains answers in a few hundred
	// nanoseconds. The daemon mirrors; the smtpd program, one process a
	// session, does not: its Contains is false, and the Check script asks
	// Redis's set of entries instead, in the same round trip.
	Mirror bool
	// Import, if not nil, gives the local whitelist (grey/whitelist) to
	// import once the store is reachable: see Whitelist.Import.
	Import func() ([]byte, error)
	// Timeout overrides Timeout (tests); 0 is Timeout.
	Timeout time.Duration
}

// A Store is the greylist's state in Redis, shared by every host that
// opens the same database: it implements grey.Store, and its AuthLimiter
// keeps the AUTH failure counts on the same connections.
type Store struct {
	c       *redis.Client
	name    string // the URL, password masked
	log     *log.Logger
	timeout time.Duration
	white   *Whitelist
	ctx     context.Context // ends at Close
	stop    context.CancelFunc
	wg      sync.WaitGroup

	down    atomic.Bool
	mu      sync.Mutex // guards what follows
	since   time.Time  // down since
	lastErr error
	outages int64
	back    chan struct{} // closed when the store is next up
	closed  bool
}

// Open returns the store at rawurl, redis://[user:password@]host[:port][/db]
// or rediss:// (TLS, verified against the system's roots). It does not
// wait for Redis: a store that cannot be reached is down, its calls fail
// at once, and it is probed with backoff until it answers. The error is
// for a URL that is not one.
func Open(rawurl string, o Options) (*Store, error) {
	opt, err := ParseURL(rawurl)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = log.New(io.Discard, "", 0)
	}
	if o.Timeout <= 0 {
		o.Timeout = Timeout
	}
	quietLibrary()
	ctx, stop := context.WithCancel(context.Background())
	s := &Store{c: redis.NewClient(opt), name: Redact(rawurl), log: o.Log, timeout: o.Timeout, ctx: ctx, stop: stop,
		back: make(chan struct{})}
	close(s.back) // up until found otherwise
	s.white = newWhitelist(s, o.Mirror)
	if o.Mirror || o.Import != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.white.follow(o.Mirror, o.Import)
		}()
	}
	return s, nil
}

// ParseURL checks a greystore URL and returns go-redis's options for it,
// with this package's timeouts: redis:// or rediss://, a host, an
// optional port (6379), user and password, and database number; nothing
// else (no query, no fragment).
func ParseURL(rawurl string) (*redis.Options, error) {
	u, err := url.Parse(rawurl)
	switch {
	case err != nil:
		return nil, fmt.Errorf("invalid greystore URL %s", Redact(rawurl))
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return nil, fmt.Errorf("invalid greystore URL %s: the scheme must be redis or rediss", Redact(rawurl))
	case u.Hostname() == "" || u.Opaque != "":
		return nil, fmt.Errorf("invalid greystore URL %s: no host", Redact(rawurl))
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("invalid greystore URL %s: no query or fragment is taken", Redact(rawurl))
	}
	opt, err := redis.ParseURL(rawurl)
	if err != nil {
		return nil, fmt.Errorf("invalid greystore URL %s: %v", Redact(rawurl), strings.TrimPrefix(err.Error(), "redis: "))
	}
	opt.Protocol = 2 // RESP2: any Redis since 2.8 speaks it, and Sentinel-managed ones too
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	opt.DialTimeout = Timeout
	opt.DialerRetries = 1
	opt.ReadTimeout = AdminTimeout // calls bound themselves by their context
	opt.WriteTimeout = AdminTimeout
	opt.ContextTimeoutEnabled = true
	opt.PoolTimeout = Timeout
	opt.MaxRetries = -1 // a retry would double a session's wait; the probe retries
	return opt, nil
}

// Redact returns rawurl with its password, if any, as xxxxx, for logs.
func Redact(rawurl string) string {
	u, err := url.Parse(rawurl)
	if err != nil {
		if i, j := strings.Index(rawurl, "://"), strings.LastIndex(rawurl, "@"); i >= 0 && j > i {
			return rawurl[:i+3] + "xxxxx" + rawurl[j:]
		}
		return rawurl
	}
	return u.Redacted()
}

var quiet sync.Once

// quietLibrary stops go-redis from printing to the daemon's standard
// error: the store logs what matters, once, to the mail log.
func quietLibrary() {
	quiet.Do(func() { redis.SetLogger(nopLogger{}) })
}

type nopLogger struct{}

func (nopLogger) Printf(context.Context, string, ...any) {}

// Name returns the store's URL with its password masked.
func (s *Store) Name() string { return s.name }

// Whitelist returns the store's whitelist.
func (s *Store) Whitelist() grey.WhitelistStore { return s.white }

// Shared returns the store's whitelist as its own type, for Import and
// Export.
func (s *Store) Shared() *Whitelist { return s.white }

// Close stops the store's goroutines and closes its connections. Calls
// under way fail.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	err := s.c.Close()
	s.wg.Wait()
	return err
}

// State is the store's health, for the stats file.
type State struct {
	Up      bool
	Since   time.Time // down since, when not Up
	Outages int64     // times it went down
	Err     error     // why, when not Up
}

// State returns the store's health.
func (s *Store) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{Up: !s.down.Load(), Since: s.since, Outages: s.outages, Err: s.lastErr}
}

// ErrDown is the error of a call to a store that is down.
var ErrDown = errors.New("greystore down")

// call runs fn with a context bounded by d (0: the store's timeout), if
// the store is up. An error that says Redis could not be reached, or
// could not serve (a timeout, a refused connection, LOADING, READONLY
// after a failover), takes the store down: it is probed until it is back,
// and meanwhile calls fail at once with ErrDown.
func (s *Store) call(d time.Duration, fn func(ctx context.Context) error) error {
	if s.down.Load() {
		return s.downErr()
	}
	if d == 0 {
		d = s.timeout
	}
	ctx, cancel := context.WithTimeout(s.ctx, d)
	defer cancel()
	err := fn(ctx)
	if err != nil && unreachable(err) && s.ctx.Err() == nil {
		s.fail(err)
		return fmt.Errorf("%w: %s: %v", ErrDown, s.name, err)
	}
	return err
}

func (s *Store) downErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Errorf("%w since %s: %s: %v", ErrDown, s.since.Format(time.TimeOnly), s.name, s.lastErr)
}

// unreachable reports whether err means that Redis did not serve the
// call, rather than refused it (a script's own error, a wrong type).
func unreachable(err error) bool {
	if errors.Is(err, redis.Nil) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		for _, busy := range []string{"LOADING", "READONLY", "MASTERDOWN", "BUSY", "NOREPLICAS", "CLUSTERDOWN", "TRYAGAIN"} {
			if strings.HasPrefix(re.Error(), busy) {
				return true
			}
		}
		return false
	}
	return true
}

// fail takes the store down, if it was up: it logs why, once, and starts
// the probe.
func (s *Store) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.down.CompareAndSwap(false, true) {
		return
	}
	s.since, s.lastErr = time.Now(), err
	s.outages++
	s.back = make(chan struct{})
	s.log.Printf("greystore %s: down: %v", s.name, err)
	s.wg.Add(1)
	go s.probe()
}

// probe pings the store with backoff until it answers, then brings it
// back up.
func (s *Store) probe() {
	defer s.wg.Done()
	wait := minBackoff
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
		err := s.c.Ping(ctx).Err()
		cancel()
		if err == nil {
			s.up()
			return
		}
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		wait = min(2*wait, maxBackoff)
		t.Reset(wait)
	}
}

// up brings the store back up after a probe answered.
func (s *Store) up() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Printf("greystore %s: back after %v", s.name, time.Since(s.since).Round(time.Millisecond))
	s.down.Store(false)
	s.lastErr = nil
	close(s.back)
	s.white.kick(true) // notices may have been missed: read it all
}

// Back returns a channel closed once the store is up: at once if it is.
func (s *Store) Back() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.back
}
