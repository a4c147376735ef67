package redisstore

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/redis/go-redis/v9"

	"smtpfs/grey"
)

// The triplets' keys. A client (grey.Query.Client: its pool, at least an
// IPv6 /64) has a sorted set of its triplets, "<pool>/<rcpt key>" scored
// by the first attempt in Unix milliseconds; the set expires by
// itself (PEXPIRE) a grace period after its newest triplet leaves the
// window. The clients are kept in a sorted set scored by when their last
// triplet leaves the window, with their counts in a hash and the sum of
// the counts in one number, so that greyperclient and greytriplets hold
// across hosts as they do in one.
const (
	keyClientPrefix = "smtpfs:t:"     // ZSET per client
	keySenderPrefix = "smtpfs:d:"     // ZSET per sender domain: rcpt key → first attempt (senders, below)
	keyClients      = "smtpfs:tc"     // ZSET: client → when its triplets are all past the window
	keyCounts       = "smtpfs:tcount" // HASH: client → its triplets
	keyTotal        = "smtpfs:tn"     // the sum of the counts
)

// grace keeps a client's triplets a while after they leave the window,
// so that a sweep (any Check's, or Expire's) counts them off the total
// before Redis drops them; should Redis drop them first, the count in the
// hash still says how many went.
const grace = 2 * time.Hour

// Triplets of a sender domain (grey.Query.Sender: its SPF passed), the
// pair (domain, recipient) whoever the client: the domain has a sorted set
// of its recipients' keys scored by the first attempt, which any client of
// the domain looks up, at any host; it expires by itself a grace period
// after its newest leaves the window, and a Check of the domain takes the
// ones past the window out. Each also goes into the set of the client that
// registered it, as "@<domain>/<rcpt key>", so that it counts for that
// client under greyperclient and in the total, and leaves the counts as
// the client's own triplets do. A domain's set is an index: it is in
// neither the clients nor the counts.

// sweepPerCheck bounds the clients whose triplets are all past the
// window that one Check forgets, besides its own.
const sweepPerCheck = 8

// Triplets answers a Check in one round trip, by one script. A triplet
// here is the client's pool and the recipient, without our address
// (q.Local), which upas's files keep: the hosts that share the store are
// the MX hosts of the same domains, and a sender that retries at another
// of them (RFC 5321 §5.1 has it try them in turn) is the same sender
// retrying. The script looks the
// client up in the whitelist's set, under every network that holds it (a
// host's local index may not have the newest entries yet); forgets a few
// clients whose triplets are all past the window; takes the client's own
// triplets past the window out, remembering them, so that a retry after
// the window is Late as it is with files; then looks up the keys in
// order, as the file store does, registering new ones within greypermsg,
// greytriplets and greyperclient, until one is Recent; for a sender
// domain, in the domain's set, each new one also counted in the client's.
// It waits Timeout at most.
func (s *Store) Triplets(q *grey.Query) (grey.Answer, error) {
	cands := covering(hostOf(q.Remote))
	st := q.Settings
	prefix, sender := q.Pool.Addr().String()+"/", ""
	if q.Sender != "" {
		prefix, sender = grey.SenderDir(q.Sender)+"/", keySenderPrefix+q.Sender
	}
	args := make([]any, 0, 10+len(cands)+len(q.Keys))
	args = append(args, q.Now.UnixMilli(), st.Min.Milliseconds(), st.Max.Milliseconds(), st.PerClient,
		st.PerMessage, st.MaxTriplets, grey.FormatPrefix(q.Client), grace.Milliseconds(), len(prefix)+1, len(cands))
	for _, c := range cands {
		args = append(args, c)
	}
	for _, k := range q.Keys {
		args = append(args, prefix+k)
	}
	keys := []string{keySet, keyClients, keyCounts, keyTotal, keyClientPrefix + grey.FormatPrefix(q.Client)}
	if sender != "" {
		keys = append(keys, sender)
	}
	var res []any
	err := s.call(0, func(ctx context.Context) error {
		var err error
		res, err = checkScript.Run(ctx, s.c, keys, args...).Slice()
		return err
	})
	if err != nil {
		return grey.Answer{}, err
	}
	return parseAnswer(res)
}

// hostOf is an address as a one-host network.
func hostOf(a netip.Addr) netip.Prefix {
	p, _ := a.Prefix(a.BitLen())
	return p
}

// outcomes maps the script's letters to grey's outcomes.
var outcomes = map[string]grey.Outcome{"n": grey.Registered, "e": grey.Early, "l": grey.Late, "r": grey.Recent,
	"f": grey.Full, "c": grey.ClientFull, "m": grey.Enough}

// parseAnswer reads the script's reply: {"w"}, or a letter and an age in
// milliseconds for each key looked at.
func parseAnswer(res []any) (grey.Answer, error) {
	if len(res) == 1 && res[0] == "w" {
		return grey.Answer{Whitelisted: true}, nil
	}
	var ans grey.Answer
	for i := 0; i+1 < len(res); i += 2 {
		letter, _ := res[i].(string)
		ms, ok := res[i+1].(int64)
		o, known := outcomes[letter]
		if !ok || !known {
			return grey.Answer{}, fmt.Errorf("greystore: the check script answered %v", res)
		}
		ans.Results = append(ans.Results, grey.Result{Outcome: o, Age: time.Duration(ms) * time.Millisecond})
	}
	return ans, nil
}

// checkScript is the Check.
// KEYS: the whitelist's set, the clients, the counts, the total, this
// client's triplets, and for a sender domain the domain's. ARGV: now,
// min, max (ms), greyperclient, greypermsg, greytriplets, the client, the
// grace (ms), where a member's recipient key starts (after "<pool>/",
// or "@<domain>/" for a sender domain), the number of whitelist candidates,
// the candidates, the triplets' members in order (as in the client's set).
var checkScript = redis.NewScript(`
local now, min, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local perclient, permsg, maxt = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local client, grace, rcptat, ncand = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
for i = 11, 10 + ncand do
	if redis.call('SISMEMBER', KEYS[1], ARGV[i]) == 1 then return {'w'} end
end
local total0 = tonumber(redis.call('GET', KEYS[4]) or '0')
local total = total0
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ` + fmt.Sprint(sweepPerCheck) + `)) do
	if c ~= client then
		total = total - tonumber(redis.call('HGET', KEYS[3], c) or '0')
		redis.call('DEL', '` + keyClientPrefix + `' .. c)
		redis.call('ZREM', KEYS[2], c)
		redis.call('HDEL', KEYS[3], c)
	end
end
local key = KEYS[5]
local cutoff = '(' .. tostring(now - max)
local function pastWindow(k)
	local stale = {}
	local old = redis.call('ZRANGEBYSCORE', k, '-inf', cutoff, 'WITHSCORES')
	for i = 1, #old, 2 do stale[old[i]] = tonumber(old[i + 1]) end
	if #old > 0 then redis.call('ZREMRANGEBYSCORE', k, '-inf', cutoff) end
	return stale, #old > 0
end
local stale, changed = pastWindow(key)
-- A sender domain's triplets are looked up in its set (dom), by the
-- recipient's key; the client's set counts those the client registers.
local dom = KEYS[6]
local dstale, dchanged = {}, false
if dom then dstale, dchanged = pastWindow(dom) else dom, dstale = key, stale end
local had = tonumber(redis.call('HGET', KEYS[3], client) or '0')
local n = redis.call('ZCARD', key)
total = total - had + n
local out, made = {}, 0
local function say(letter, age) out[#out + 1] = letter; out[#out + 1] = age end
local function mine(m) -- the triplet m is the client's now: counted once
	if dom ~= key then
		if not redis.call('ZSCORE', key, m) then n, total = n + 1, total + 1 end
		redis.call('ZADD', key, now, m)
	end
	changed = true
end
for i = 11 + ncand, #ARGV do
	local m = ARGV[i]
	local dm = string.sub(m, rcptat)
	if dom == key then dm = m end
	local s = redis.call('ZSCORE', dom, dm)
	if s then
		local age = now - tonumber(s)
		if age < 0 then
			redis.call('ZADD', dom, now, dm)
			dchanged = true
			if dom == key then changed = true end
			say('l', age)
		elseif age < min then
			say('e', age)
		else
			say('r', age)
			break
		end
	elseif dstale[dm] then
		redis.call('ZADD', dom, now, dm)
		dchanged = true
		if dom == key then n, total = n + 1, total + 1 end
		mine(m)
		say('l', now - dstale[dm])
	elseif made >= permsg then
		say('m', 0)
	elseif total >= maxt then
		say('f', 0)
	elseif n >= perclient then
		say('c', 0)
	else
		redis.call('ZADD', dom, now, dm)
		dchanged = true
		if dom == key then n, total = n + 1, total + 1 end
		mine(m)
		made = made + 1
		say('n', 0)
	end
end
if dom ~= key and dchanged then
	local newest = redis.call('ZRANGE', dom, -1, -1, 'WITHSCORES')[2]
	if newest then redis.call('PEXPIRE', dom, tonumber(newest) + max - now + grace) end
end
if changed or had ~= n then
	if n > 0 then
		local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
		redis.call('PEXPIRE', key, newest + max - now + grace)
		redis.call('ZADD', KEYS[2], newest + max, client)
		redis.call('HSET', KEYS[3], client, n)
	else
		redis.call('DEL', key)
		redis.call('ZREM', KEYS[2], client)
		redis.call('HDEL', KEYS[3], client)
	end
end
if total < 0 then total = 0 end
if total ~= total0 then redis.call('SET', KEYS[4], total) end
return out
`)

// Expire takes every client's triplets past the window out, forgets the
// clients left with none, and brings the counts and the total up to
// date, a few hundred clients a call; it returns how many triplets it
// removed and kept. Redis drops them by itself too (each client's set
// expires after its newest triplet): Expire keeps the counts exact
// between Checks, for the bounds. It stops early when ctx is done.
func (s *Store) Expire(ctx context.Context, st grey.Settings, now time.Time) (removed, kept int, err error) {
	var cursor uint64
	for {
		if err := ctx.Err(); err != nil {
			return removed, kept, err
		}
		var clients []string
		err := s.call(AdminTimeout, func(c context.Context) error {
			var err error
			clients, cursor, err = s.c.ZScan(c, keyClients, cursor, "", 256).Result()
			return err
		})
		if err != nil {
			return removed, kept, err
		}
		var names []any
		for i := 0; i < len(clients); i += 2 { // member, score
			names = append(names, clients[i])
		}
		if len(names) > 0 {
			args := append([]any{now.UnixMilli(), st.Max.Milliseconds(), grace.Milliseconds()}, names...)
			err = s.call(AdminTimeout, func(c context.Context) error {
				res, err := expireScript.Run(c, s.c, []string{keyClients, keyCounts, keyTotal}, args...).Int64Slice()
				if err == nil {
					removed += int(res[0])
					kept += int(res[1])
				}
				return err
			})
			if err != nil {
				return removed, kept, err
			}
		}
		if cursor == 0 {
			return removed, kept, nil
		}
	}
}

// expireScript expires the triplets of some clients.
// KEYS: the clients, the counts, the total. ARGV: now, max, grace (ms),
// the clients.
var expireScript = redis.NewScript(`
local now, max, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cutoff = '(' .. tostring(now - max)
local removed, kept, delta = 0, 0, 0
for i = 4, #ARGV do
	local c = ARGV[i]
	local key = '` + keyClientPrefix + `' .. c
	redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
	local n = redis.call('ZCARD', key)
	local had = tonumber(redis.call('HGET', KEYS[2], c) or '0')
	if had > n then removed = removed + had - n end
	kept = kept + n
	delta = delta + n - had
	if n > 0 then
		local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
		redis.call('PEXPIRE', key, newest + max - now + grace)
		redis.call('ZADD', KEYS[1], newest + max, c)
		redis.call('HSET', KEYS[2], c, n)
	else
		redis.call('DEL', key)
		redis.call('ZREM', KEYS[1], c)
		redis.call('HDEL', KEYS[2], c)
	end
end
local total = tonumber(redis.call('GET', KEYS[3]) or '0') + delta
if total < 0 then total = 0 end
redis.call('SET', KEYS[3], total)
return {removed, kept}
`)
