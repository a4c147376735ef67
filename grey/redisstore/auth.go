package redisstore

import (
	"context"
	"net/netip"
	"time"

	"github.com/redis/go-redis/v9"

	"smtpfs/grey"
)

// keyAuthPrefix names a client's count of failed AUTH: a hash of n (the
// failures since), since and until (Unix milliseconds), which expires by
// itself once its window and its lockout are over.
const keyAuthPrefix = "smtpfs:auth:"

// An AuthLimiter counts failed AUTH per client in the store, for the SMTP
// server's lockout, on every host at once: a client that fails Max times
// within Window may not try again for Lockout, wherever it tries. It has
// the policy of smtpd/authfail's stores (a success does not clear the
// count; the window starts at the first failure and again with the
// Max-th), which the caller hands it, and answers the server's
// AuthLimiter interface. Each call waits Timeout at most; an error
// (the store is down) leaves the server to go on without the count.
type AuthLimiter struct {
	s       *Store
	max     int
	window  time.Duration
	lockout time.Duration
}

// AuthLimiter returns the store's limiter with the given policy.
func (s *Store) AuthLimiter(max int, window, lockout time.Duration) *AuthLimiter {
	return &AuthLimiter{s: s, max: max, window: window, lockout: lockout}
}

func authKey(client netip.Prefix) string { return keyAuthPrefix + grey.FormatPrefix(client) }

// Locked reports whether client may not try AUTH at now.
func (l *AuthLimiter) Locked(client netip.Prefix, now time.Time) (bool, error) {
	var locked bool
	err := l.s.call(0, func(ctx context.Context) error {
		until, err := l.s.c.HGet(ctx, authKey(client), "until").Int64()
		if err == redis.Nil {
			return nil
		}
		locked = now.UnixMilli() < until
		return err
	})
	return locked, err
}

// Failed counts a failure of client at now, and reports whether it
// locked the client out.
func (l *AuthLimiter) Failed(client netip.Prefix, now time.Time) (bool, error) {
	var locked bool
	err := l.s.call(0, func(ctx context.Context) error {
		n, err := failScript.Run(ctx, l.s.c, []string{authKey(client)}, now.UnixMilli(), l.window.Milliseconds(),
			l.lockout.Milliseconds(), l.max).Int()
		locked = n == 1
		return err
	})
	return locked, err
}

// failScript counts a failure: the window starts again once over, and
// the Max-th failure within it starts a lockout and a new window.
// KEYS: the client's count. ARGV: now, window, lockout (ms), max.
var failScript = redis.NewScript(`
local now, window, lockout, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'n', 'since', 'until')
local n, since, untl = tonumber(h[1]) or 0, tonumber(h[2]) or now, tonumber(h[3]) or 0
if now - since > window then n, since = 0, now end
n = n + 1
local locked = 0
if n >= max then n, since, untl, locked = 0, now, now + lockout, 1 end
redis.call('HSET', KEYS[1], 'n', n, 'since', since, 'until', untl)
redis.call('PEXPIRE', KEYS[1], math.max(since + window, untl) - now + 1000)
return locked
`)
