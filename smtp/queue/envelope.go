package queue

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// An envelope is what <id>.env holds: who the message is from, who is
// still to get it and how each recipient has fared. The message itself is
// in <id>.msg, as it will be sent.
type envelope struct {
	from    string // "" for the null sender <>
	arrived time.Time
	size    int64
	held    bool
	warned  bool // a delay warning was sent
	rcpts   []*rcpt
}

// A rcpt is a recipient not yet delivered nor bounced.
type rcpt struct {
	addr  string
	tries int       // failed attempts
	next  time.Time // no attempt before this
	err   string    // the last failure, "" if none
}

// Bounds on what an envelope holds, so that a damaged or hostile file
// cannot make us allocate without end.
const (
	// MaxRcpts is the most recipients one message may have. RFC 5321
	// §4.5.3.1.8 asks servers to take at least 100 per transaction; the
	// server's own limit (maxrcpts) is normally far lower.
	MaxRcpts = 50000
	// maxPath bounds an address: RFC 5321 §4.5.3.1.3, 256 octets for a
	// path including its angle brackets.
	maxPath = 256
	// maxErr bounds the failure text kept per recipient.
	maxErr = 900
	// maxEnvSize bounds an envelope file: MaxRcpts lines of at most
	// about 1200 bytes.
	maxEnvSize = 64 << 20
)

const envHeader = "# smtpfs queue envelope; the format is in README.md, The queue\n"

// marshal renders the envelope as text, one keyword and its words per
// line, words quoted as rc quotes them when they hold spaces or quotes.
func (e *envelope) marshal() []byte {
	var b bytes.Buffer
	b.WriteString(envHeader)
	fmt.Fprintf(&b, "from %s\n", quote(e.from))
	fmt.Fprintf(&b, "arrived %s\n", e.arrived.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "size %d\n", e.size)
	if e.held {
		b.WriteString("held\n")
	}
	if e.warned {
		b.WriteString("warned\n")
	}
	for _, r := range e.rcpts {
		fmt.Fprintf(&b, "rcpt %s %d %s %s\n", quote(r.addr), r.tries, r.next.UTC().Format(time.RFC3339Nano), quote(r.err))
	}
	return b.Bytes()
}

// parseEnvelope reads an envelope written by marshal (or by a person
// following the same format). It is strict: an unknown keyword, a missing
// field or a bad value makes the whole file damaged.
func parseEnvelope(b []byte) (*envelope, error) {
	if len(b) > maxEnvSize {
		return nil, errors.New("envelope too long")
	}
	e := &envelope{}
	var seen [3]bool // from, arrived, size
	for n, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		w, err := words(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n+1, err)
		}
		if len(w) == 0 {
			continue
		}
		if err := e.field(w, &seen); err != nil {
			return nil, fmt.Errorf("line %d: %s: %v", n+1, w[0], err)
		}
	}
	switch {
	case !seen[0]:
		return nil, errors.New("no from line")
	case !seen[1]:
		return nil, errors.New("no arrived line")
	case !seen[2]:
		return nil, errors.New("no size line")
	case len(e.rcpts) == 0:
		return nil, errors.New("no rcpt line")
	}
	return e, nil
}

// nargs is the number of words after each keyword.
var nargs = map[string]int{"from": 1, "arrived": 1, "size": 1, "held": 0, "warned": 0, "rcpt": 4}

func (e *envelope) field(w []string, seen *[3]bool) error {
	n, ok := nargs[w[0]]
	if !ok {
		return errors.New("unknown keyword")
	}
	if len(w)-1 != n {
		return fmt.Errorf("%d words, want %d", len(w)-1, n)
	}
	var err error
	switch w[0] {
	case "from":
		e.from, seen[0] = w[1], true
		if e.from != "" {
			err = checkAddr(e.from)
		}
	case "arrived":
		e.arrived, err = time.Parse(time.RFC3339Nano, w[1])
		seen[1] = true
	case "size":
		e.size, err = strconv.ParseInt(w[1], 10, 64)
		if err == nil && e.size < 0 {
			err = errors.New("negative")
		}
		seen[2] = true
	case "held":
		e.held = true
	case "warned":
		e.warned = true
	case "rcpt":
		if len(e.rcpts) >= MaxRcpts {
			return errors.New("too many recipients")
		}
		r := &rcpt{addr: w[1], err: w[4]}
		if err = checkAddr(r.addr); err != nil {
			return err
		}
		if r.tries, err = strconv.Atoi(w[2]); err != nil || r.tries < 0 {
			return fmt.Errorf("bad tries %q", w[2])
		}
		if r.next, err = time.Parse(time.RFC3339Nano, w[3]); err != nil {
			return err
		}
		e.rcpts = append(e.rcpts, r)
	}
	return err
}

// clone returns a deep copy, for writing outside the lock.
func (e *envelope) clone() *envelope {
	c := *e
	c.rcpts = make([]*rcpt, len(e.rcpts))
	for i, r := range e.rcpts {
		rc := *r
		c.rcpts[i] = &rc
	}
	return &c
}

// quote quotes s as rc does when it is empty or holds a space, tab or
// quote: 'it”s'.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t'") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// words splits a line into words separated by spaces and tabs, taking
// rc quotes.
func words(line string) ([]string, error) {
	var w []string
	for {
		line = strings.TrimLeft(line, " \t")
		if line == "" {
			return w, nil
		}
		if line[0] != '\'' {
			i := strings.IndexAny(line, " \t")
			if i < 0 {
				i = len(line)
			}
			if strings.Contains(line[:i], "'") {
				return nil, errors.New("quote inside a word")
			}
			w, line = append(w, line[:i]), line[i:]
			continue
		}
		var b strings.Builder
		for i := 1; ; i++ {
			if i >= len(line) {
				return nil, errors.New("unterminated quote")
			}
			if line[i] == '\'' {
				if i+1 < len(line) && line[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				w, line = append(w, b.String()), line[i+1:]
				break
			}
			b.WriteByte(line[i])
		}
		if line != "" && line[0] != ' ' && line[0] != '\t' {
			return nil, errors.New("text after a closing quote")
		}
	}
}

// checkAddr checks an envelope address as Put takes it: at most maxPath
// bytes of UTF-8 without control characters (which would let an address
// forge a line in the envelope, the log or an SMTP command) or spaces
// outside a quoted local part.
func checkAddr(a string) error {
	if a == "" {
		return errors.New("invalid address: empty")
	}
	if len(a) > maxPath-2 {
		return fmt.Errorf("invalid address: longer than %d bytes", maxPath-2)
	}
	if !utf8.ValidString(a) {
		return fmt.Errorf("invalid address %q: not UTF-8", a)
	}
	for _, c := range a {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("invalid address %q: control character", a)
		}
	}
	if strings.ContainsAny(a, " \t") && !strings.HasPrefix(a, `"`) {
		return fmt.Errorf("invalid address %q: space outside quotes", a)
	}
	return nil
}

// clean makes an error text fit for an envelope line, a log line and a
// DSN header field: control characters become spaces, and it is cut to
// maxErr bytes on a rune boundary.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxErr {
		s = s[:maxErr]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return strings.TrimSpace(s)
}
