package redisstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"smtpfs/grey"
)

// The whitelist's keys, and the channel its changes are announced on.
const (
	keyLines    = "smtpfs:wl"          // LIST: the lines, in order, comments and all
	keySet      = "smtpfs:wl:set"      // SET: the entries, as grey.FormatPrefix writes them
	keyEpoch    = "smtpfs:wl:epoch"    // counts the removals, which rewrite the list
	keyBytes    = "smtpfs:wl:bytes"    // the size of the text, bounded by grey.MaxWhitelist
	keyImported = "smtpfs:wl:imported" // SET: SHA-256 of each local whitelist imported
	channel     = "smtpfs:wl"          // "+" after an append, "-" after a removal
)

// chunk is how many lines one call reads or imports.
const chunk = 5000

// A Whitelist is the shared whitelist: the lines in a Redis list, so that
// `cat whitelist` reads the same, comments and order, on every host; the
// entries in a Redis set, which the Check script asks when the local index
// misses; and, with Options.Mirror, that local index (grey.Index), which
// answers Contains from memory.
//
// The index follows the list: every change is announced on a channel the
// store subscribes to, and the list's length and epoch (a count of
// removals) are also polled every second, in case a notice was lost.
// Appends are read alone; after a removal, or when the store comes back
// from an outage, the list is read whole, and meanwhile lookups use the
// old index. An address appended on one host passes on every other at
// once: a local miss goes to the Check script, which asks the set in the
// same round trip as the triplets. An entry removed stays in the other
// hosts' indexes until they have read the list again: a second at most,
// plus the time to read it (about two seconds for a million entries).
type Whitelist struct {
	s      *Store
	mirror bool
	idx    grey.Index
	kicks  chan bool // true: read the list whole

	mu     sync.Mutex // held while the index is brought up to date
	epoch  int64      // the list as indexed: its epoch
	n      int64      // and how many of its lines
	loaded bool
}

func newWhitelist(s *Store, mirror bool) *Whitelist {
	return &Whitelist{s: s, mirror: mirror, kicks: make(chan bool, 1)}
}

// Contains reports whether ip is covered by an entry of the local index;
// false without Options.Mirror.
func (w *Whitelist) Contains(ip netip.Addr) bool { return w.mirror && w.idx.Contains(ip) }

// Len returns the number of entries in the local index.
func (w *Whitelist) Len() int { return w.idx.Len() }

// Add checks the lines of text, as the file's Add does, and appends them
// to the list in one script, all or none, within grey.MaxWhitelist. It
// returns nil only once Redis has taken them: an append Redis did not
// confirm fails the write. The local index has them when it returns.
func (w *Whitelist) Add(text string) error {
	lines, err := grey.CheckLines(text)
	if err != nil || len(lines) == 0 {
		return err
	}
	args := []any{grey.MaxWhitelist, len(lines)}
	for _, l := range lines {
		args = append(args, l)
	}
	for _, l := range lines {
		args = append(args, entryOf(l))
	}
	err = w.s.call(AdminTimeout, func(ctx context.Context) error {
		return appendScript.Run(ctx, w.s.c, []string{keyLines, keySet, keyBytes}, args...).Err()
	})
	if err != nil {
		return scriptErr(err)
	}
	if w.mirror {
		w.refresh(false)
	}
	return nil
}

// appendScript appends lines and their entries.
// KEYS: lines, set, bytes. ARGV: the size bound, n, n lines, n entries
// ("" for a comment or blank line).
var appendScript = redis.NewScript(`
local n = tonumber(ARGV[2])
local size = 0
for i = 3, 2 + n do size = size + #ARGV[i] + 1 end
if tonumber(redis.call('GET', KEYS[3]) or '0') + size > tonumber(ARGV[1]) then
	return redis.error_reply('whitelist too long')
end
for i = 3, 2 + n do redis.call('RPUSH', KEYS[1], ARGV[i]) end
for i = 3 + n, 2 + 2 * n do
	if ARGV[i] ~= '' then redis.call('SADD', KEYS[2], ARGV[i]) end
end
redis.call('INCRBY', KEYS[3], size)
redis.call('PUBLISH', '` + channel + `', '+')
return redis.call('LLEN', KEYS[1])
`)

// AddClient appends line, whose entry is p, unless an entry of the set
// already covers all of p (asked in the same script): concurrent
// sessions on any host that all pass the greylist add the client once.
// It is called in a session, and waits Timeout at most.
func (w *Whitelist) AddClient(line string, p netip.Prefix) error {
	args := []any{grey.MaxWhitelist, line, grey.FormatPrefix(p)}
	for _, c := range covering(p) {
		args = append(args, c)
	}
	err := w.s.call(0, func(ctx context.Context) error {
		return addClientScript.Run(ctx, w.s.c, []string{keyLines, keySet, keyBytes}, args...).Err()
	})
	if err != nil {
		return scriptErr(err)
	}
	if w.mirror {
		w.kick(false)
	}
	return nil
}

// addClientScript appends a line unless one of the networks that cover
// its entry is already in the set.
// KEYS: lines, set, bytes. ARGV: the size bound, the line, its entry, the
// covering networks.
var addClientScript = redis.NewScript(`
for i = 4, #ARGV do
	if redis.call('SISMEMBER', KEYS[2], ARGV[i]) == 1 then return 0 end
end
local size = #ARGV[2] + 1
if tonumber(redis.call('GET', KEYS[3]) or '0') + size > tonumber(ARGV[1]) then
	return redis.error_reply('whitelist too long')
end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('INCRBY', KEYS[3], size)
redis.call('PUBLISH', '` + channel + `', '+')
return 1
`)

// covering returns every network that holds all of p, p included, as
// the set writes them: the candidates an address or pool is looked up
// as, 33 for an IPv4 address, 129 for IPv6.
func covering(p netip.Prefix) []string {
	out := make([]string, 0, p.Bits()+1)
	for bits := p.Bits(); bits >= 0; bits-- {
		q, _ := p.Addr().Prefix(bits)
		out = append(out, grey.FormatPrefix(q))
	}
	return out
}

// entryOf returns the entry of a checked line, as the set writes it, or
// "" for a comment, a blank or a malformed line.
func entryOf(line string) string {
	p, ok, err := grey.ParseLine(line)
	if !ok || err != nil {
		return ""
	}
	return grey.FormatPrefix(p)
}

// scriptErr turns the scripts' own refusals into grey's errors.
func scriptErr(err error) error {
	if err != nil && strings.Contains(err.Error(), grey.ErrTooLong.Error()) && !errors.Is(err, ErrDown) {
		return grey.ErrTooLong
	}
	return err
}

// Remove removes the lines whose entry is exactly one of ps (192.0.2.0/24
// removes that line, not 192.0.2.7), keeping every other line, and
// returns how many it removed. It reads the list to find their texts, then
// removes those texts and the entries from the set in one script, which
// moves the epoch on, so that every host reads the list again. The local
// index is read again before it returns.
func (w *Whitelist) Remove(ps ...netip.Prefix) (int, error) {
	drop := map[string]bool{}
	for _, p := range ps {
		if np, err := grey.ParsePrefix(grey.FormatPrefix(p)); err == nil {
			drop[grey.FormatPrefix(np)] = true
		}
	}
	texts := map[string]bool{}
	err := w.scan(func(line string) {
		if e := entryOf(line); e != "" && drop[e] {
			texts[line] = true
		}
	})
	if err != nil || len(texts) == 0 {
		return 0, err
	}
	args := []any{len(texts)}
	for t := range texts {
		args = append(args, t)
	}
	for e := range drop {
		args = append(args, e)
	}
	var removed int
	err = w.s.call(AdminTimeout, func(ctx context.Context) error {
		n, err := removeScript.Run(ctx, w.s.c, []string{keyLines, keySet, keyBytes, keyEpoch}, args...).Int()
		removed = n
		return err
	})
	if err != nil {
		return 0, err
	}
	if w.mirror {
		w.refresh(true)
	}
	return removed, nil
}

// removeScript removes lines by their text, and entries from the set.
// KEYS: lines, set, bytes, epoch. ARGV: n, n texts, the entries.
var removeScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local removed, size = 0, 0
for i = 2, 1 + n do
	local k = redis.call('LREM', KEYS[1], 0, ARGV[i])
	removed = removed + k
	size = size + k * (#ARGV[i] + 1)
end
for i = 2 + n, #ARGV do redis.call('SREM', KEYS[2], ARGV[i]) end
redis.call('DECRBY', KEYS[3], size)
redis.call('INCR', KEYS[4])
redis.call('PUBLISH', '` + channel + `', '-')
return removed
`)

// scan calls fn with every line of the list, in order, reading chunk
// lines a call.
func (w *Whitelist) scan(fn func(line string)) error {
	for start := int64(0); ; start += chunk {
		var lines []string
		err := w.s.call(AdminTimeout, func(ctx context.Context) error {
			var err error
			lines, err = w.s.c.LRange(ctx, keyLines, start, start+chunk-1).Result()
			return err
		})
		if err != nil {
			return err
		}
		for _, l := range lines {
			fn(l)
		}
		if len(lines) < chunk {
			return nil
		}
	}
}

// Bytes returns the list as text, a line each: what `cat whitelist`
// shows on every host.
func (w *Whitelist) Bytes() ([]byte, error) {
	var b bytes.Buffer
	err := w.scan(func(line string) {
		if b.Len() < grey.MaxWhitelist {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	})
	return b.Bytes(), err
}

// Reload reads the whole list into the local index again.
func (w *Whitelist) Reload() error {
	if !w.mirror {
		return nil
	}
	return w.refresh(true)
}

// kick asks the follower to bring the index up to date (whole: read the
// list whole).
func (w *Whitelist) kick(whole bool) {
	for {
		select {
		case w.kicks <- whole:
			return
		default:
		}
		select {
		case old := <-w.kicks: // merge with the one waiting
			whole = whole || old
		default:
		}
	}
}

// follow keeps the index up to date until the store closes: it imports
// the local whitelist once the store is reachable, loads the list, and
// reads what changes, on a notice, a kick or the poll.
func (w *Whitelist) follow(mirror bool, local func() ([]byte, error)) {
	var notices <-chan *redis.Message
	if mirror {
		ps := w.s.c.Subscribe(w.s.ctx, channel)
		defer ps.Close()
		notices = ps.Channel()
	}
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	whole := true
	for mirror || local != nil {
		if local != nil && !w.s.down.Load() && w.importLocal(local) {
			local, whole = nil, true
		}
		if mirror && !w.s.down.Load() {
			if err := w.refresh(whole); err == nil {
				whole = false
			}
		}
		select {
		case <-w.s.ctx.Done():
			return
		case <-notices:
		case k := <-w.kicks:
			whole = whole || k
		case <-poll.C:
		}
	}
}

// importLocal imports the local whitelist, and reports whether that is
// done (imported, or impossible: the file cannot be read).
func (w *Whitelist) importLocal(local func() ([]byte, error)) bool {
	text, err := local()
	if err != nil {
		w.s.log.Printf("greystore %s: not importing the local whitelist: %v", w.s.name, err)
		return true
	}
	added, err := w.Import(text)
	switch {
	case errors.Is(err, ErrDown):
		return false // again when the store is back
	case err != nil:
		w.s.log.Printf("greystore %s: importing the local whitelist: %v", w.s.name, err)
		return !errors.Is(err, context.DeadlineExceeded)
	case added >= 0:
		w.s.log.Printf("greystore %s: imported the local whitelist: %d lines added", w.s.name, added)
	}
	return true
}

// refresh brings the index up to date with the list: the lines appended
// since it was last read, or with whole (or after a removal) the whole
// list. It reads the list's epoch and length together, then the lines,
// then the epoch again: a removal in between makes it read again.
func (w *Whitelist) refresh(whole bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for range 3 {
		epoch, n, err := w.version()
		if err != nil {
			return err
		}
		from := w.n
		if whole || !w.loaded || epoch != w.epoch || n < w.n {
			from = 0
		} else if n == w.n {
			return nil
		}
		var b grey.IndexBuilder
		var read int64
		bad := 0
		err = w.read(from, n, func(line string) {
			read++
			if b.Add(line) != nil {
				bad++
			}
		})
		if err != nil {
			return err
		}
		if again, _, err := w.version(); err != nil || again != epoch {
			continue // removed meanwhile: the lines read may have moved
		}
		if from == 0 {
			w.idx.Replace(&b)
		} else {
			w.idx.Append(&b)
		}
		if bad > 0 {
			w.s.log.Printf("greystore %s: %d malformed whitelist lines skipped", w.s.name, bad)
		}
		w.epoch, w.n, w.loaded = epoch, from+read, true
		return nil
	}
	return errors.New("the whitelist keeps changing")
}

// version returns the list's epoch and length, read together.
func (w *Whitelist) version() (epoch, n int64, err error) {
	err = w.s.call(AdminTimeout, func(ctx context.Context) error {
		var e *redis.StringCmd
		var l *redis.IntCmd
		_, err := w.s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			e = p.Get(ctx, keyEpoch)
			l = p.LLen(ctx, keyLines)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		epoch, _ = e.Int64()
		n = l.Val()
		return l.Err()
	})
	return epoch, n, err
}

// read calls fn with the lines from..n-1 of the list.
func (w *Whitelist) read(from, n int64, fn func(string)) error {
	for start := from; start < n; start += chunk {
		var lines []string
		err := w.s.call(AdminTimeout, func(ctx context.Context) error {
			var err error
			lines, err = w.s.c.LRange(ctx, keyLines, start, min(start+chunk, n)-1).Result()
			return err
		})
		if err != nil {
			return err
		}
		for _, l := range lines {
			fn(l)
		}
		if int64(len(lines)) < min(chunk, n-start) {
			return nil // shorter than it was: the epoch check will tell
		}
	}
	return nil
}

// Import merges text, a local whitelist file, into the list, once: an
// import of the same text again does nothing (the SHA-256 of each text
// imported is kept), so that a host restarted with the same file does not
// bring back what was unwhitelisted since. A text not imported yet adds
// its entries that the set lacks, its comments that the list lacks, and
// the blank lines after lines it added: into an empty store the file goes
// as it is (but for repeated entries), and importing the files of several
// hosts adds each entry once. Lines a whitelist would refuse (malformed,
// overlong, not UTF-8) are skipped. It returns how many lines it added,
// or -1 when the text was imported before.
func (w *Whitelist) Import(text []byte) (added int, err error) {
	sum := sha256.Sum256(text)
	id := hex.EncodeToString(sum[:])
	var done bool
	err = w.s.call(AdminTimeout, func(ctx context.Context) error {
		var err error
		done, err = w.s.c.SIsMember(ctx, keyImported, id).Result()
		return err
	})
	if err != nil || done {
		return -1, err
	}
	lines := importable(text)
	pushed := true
	for len(lines) > 0 {
		part := lines[:min(chunk, len(lines))]
		lines = lines[len(part):]
		args := []any{grey.MaxWhitelist, pushed, len(part)}
		for _, l := range part {
			args = append(args, l)
		}
		for _, l := range part {
			args = append(args, entryOf(l))
		}
		err = w.s.call(AdminTimeout, func(ctx context.Context) error {
			res, err := importScript.Run(ctx, w.s.c, []string{keyLines, keySet, keyBytes}, args...).Int64Slice()
			if err == nil {
				added += int(res[0])
				pushed = res[1] == 1
			}
			return err
		})
		if err != nil {
			return added, scriptErr(err)
		}
	}
	if w.mirror {
		w.kick(false)
	}
	return added, w.s.call(AdminTimeout, func(ctx context.Context) error {
		return w.s.c.SAdd(ctx, keyImported, id).Err()
	})
}

// importable returns the lines of a whitelist file that a whitelist
// takes: not malformed, not longer than grey.MaxEntryLine, valid UTF-8
// without control characters.
func importable(text []byte) []string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimSuffix(string(text), "\n"), "\n") {
		l = strings.TrimSuffix(l, "\r")
		if _, err := grey.CheckLines(l); err == nil {
			out = append(out, l)
		}
	}
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

// importScript merges lines: an entry the set lacks, a comment the list
// lacks, a blank line after a line it took.
// KEYS: lines, set, bytes. ARGV: the size bound, whether the line before
// was taken (1 or 0), n, n lines, n entries. It returns the lines taken
// and whether the last was.
var importScript = redis.NewScript(`
local max, pushed, n = tonumber(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
local have = tonumber(redis.call('GET', KEYS[3]) or '0')
local added = 0
for i = 1, n do
	local line, e = ARGV[3 + i], ARGV[3 + n + i]
	local take
	if e ~= '' then
		take = redis.call('SISMEMBER', KEYS[2], e) == 0
	elseif string.match(line, '^%s*$') then
		take = pushed
	else
		take = not redis.call('LPOS', KEYS[1], line)
	end
	if take then
		if have + #line + 1 > max then
			if added > 0 then redis.call('PUBLISH', '` + channel + `', '+') end
			return redis.error_reply('whitelist too long')
		end
		redis.call('RPUSH', KEYS[1], line)
		if e ~= '' then redis.call('SADD', KEYS[2], e) end
		redis.call('INCRBY', KEYS[3], #line + 1)
		have = have + #line + 1
		added = added + 1
	end
	pushed = take
end
if added > 0 then redis.call('PUBLISH', '` + channel + `', '+') end
return {added, pushed and 1 or 0}
`)

// String describes the whitelist for the log.
func (w *Whitelist) String() string {
	return fmt.Sprintf("the whitelist of %s", w.s.name)
}
