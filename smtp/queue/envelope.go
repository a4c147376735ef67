package queue

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"smtpfs/smtp"
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
	// What the message asks of the next hop and of our DSNs: RET,
	// ENVID, REQUIRETLS, SMTPUTF8 (Rcpt unused: each rcpt has its own).
	params smtp.Params
}

// A rcpt is a recipient not yet delivered nor bounced.
type rcpt struct {
	addr  string
	tries int       // failed attempts
	next  time.Time // no attempt before this
	err   string    // the last failure, "" if none
	dsn   smtp.RcptParams
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
	// about 1800 bytes.
	maxEnvSize = 96 << 20
	// MaxEnvID bounds ENVID: RFC 3461 §4.4, 100 characters.
	MaxEnvID = 100
	// MaxORcpt bounds ORCPT: RFC 3461 §4.2, 500 characters.
	MaxORcpt = 500
)

const envHeader = "# smtpfs queue envelope; the format is in smtpfs(8), The queue\n"

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
	if p := e.params; p.Ret != "" {
		fmt.Fprintf(&b, "ret %s\n", p.Ret)
	}
	if p := e.params; p.EnvID != "" {
		fmt.Fprintf(&b, "envid %s\n", quote(p.EnvID))
	}
	if e.params.RequireTLS {
		b.WriteString("requiretls\n")
	}
	if e.params.SMTPUTF8 {
		b.WriteString("smtputf8\n")
	}
	for _, r := range e.rcpts {
		fmt.Fprintf(&b, "rcpt %s %d %s %s", quote(r.addr), r.tries, r.next.UTC().Format(time.RFC3339Nano), quote(r.err))
		if r.dsn != (smtp.RcptParams{}) {
			fmt.Fprintf(&b, " %s %s", quote(r.dsn.Notify), quote(r.dsn.ORcpt))
		}
		b.WriteByte('\n')
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

// nargs is the number of words after each keyword. A rcpt line has two
// more when the recipient has DSN parameters: NOTIFY and ORCPT.
var nargs = map[string]int{"from": 1, "arrived": 1, "size": 1, "held": 0, "warned": 0, "rcpt": 4,
	"ret": 1, "envid": 1, "requiretls": 0, "smtputf8": 0}

func (e *envelope) field(w []string, seen *[3]bool) error {
	n, ok := nargs[w[0]]
	if !ok {
		return errors.New("unknown keyword")
	}
	if len(w)-1 != n && !(w[0] == "rcpt" && len(w)-1 == n+2) {
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
	case "ret":
		e.params.Ret, err = w[1], CheckRet(w[1])
	case "envid":
		e.params.EnvID, err = w[1], CheckEnvID(w[1])
	case "requiretls":
		e.params.RequireTLS = true
	case "smtputf8":
		e.params.SMTPUTF8 = true
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
		if len(w) == 7 {
			r.dsn = smtp.RcptParams{Notify: w[5], ORcpt: w[6]}
			if err := CheckRcptParams(r.dsn); err != nil {
				return err
			}
		}
		e.rcpts = append(e.rcpts, r)
	}
	return err
}

// CheckRet checks a RET value as the queue keeps it (RFC 3461 §4.3):
// FULL, HDRS, or "" for none given.
func CheckRet(v string) error {
	switch v {
	case "", "FULL", "HDRS":
		return nil
	}
	return fmt.Errorf("bad RET %q: want FULL or HDRS", v)
}

// CheckEnvID checks an ENVID as the queue keeps it, decoded from xtext:
// at most MaxEnvID characters (RFC 3461 §4.4) of printable ASCII.
func CheckEnvID(v string) error {
	if len(v) > MaxEnvID {
		return fmt.Errorf("ENVID longer than %d characters", MaxEnvID)
	}
	return printable("ENVID", v)
}

// CheckRcptParams checks a recipient's DSN parameters as the queue keeps
// them: NOTIFY is NEVER alone or a list of SUCCESS, FAILURE and DELAY
// (RFC 3461 §4.1); ORCPT is addr-type;address, decoded, at most MaxORcpt
// characters (§4.2).
func CheckRcptParams(p smtp.RcptParams) error {
	if p.Notify != "" {
		seen := map[string]bool{}
		for _, v := range strings.Split(p.Notify, ",") {
			switch {
			case v != "NEVER" && v != "SUCCESS" && v != "FAILURE" && v != "DELAY":
				return fmt.Errorf("bad NOTIFY %q", p.Notify)
			case seen[v], v == "NEVER" && p.Notify != "NEVER":
				return fmt.Errorf("bad NOTIFY %q: NEVER stands alone, and nothing twice", p.Notify)
			}
			seen[v] = true
		}
	}
	if p.ORcpt != "" {
		if len(p.ORcpt) > MaxORcpt {
			return fmt.Errorf("ORCPT longer than %d characters", MaxORcpt)
		}
		if t, a, ok := strings.Cut(p.ORcpt, ";"); !ok || t == "" || a == "" {
			return fmt.Errorf("bad ORCPT %q: want addr-type;address", p.ORcpt)
		}
		if !utf8.ValidString(p.ORcpt) {
			return errors.New("ORCPT is not UTF-8")
		}
		for _, c := range p.ORcpt {
			if c < ' ' || c == 0x7f {
				return errors.New("ORCPT holds a control character")
			}
		}
	}
	return nil
}

// printable refuses anything but printable ASCII.
func printable(what, v string) error {
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] >= 0x7f {
			return fmt.Errorf("%s holds a byte that is not printable ASCII", what)
		}
	}
	return nil
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
