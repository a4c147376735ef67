package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"smtpfs/internal/errquote"
)

// Bounds on a server's reply. RFC 5321 §4.5.3.1.5 allows 512 octets per
// reply line; servers exceed it in EHLO lists and long 5xx texts, so we
// allow four times that, and a hundred lines (an EHLO reply has a dozen).
const (
	maxReplyLine  = 2048
	maxReplyLines = 100
	maxReplyBytes = 64 << 10
)

// A ProtocolError is a reply we could not make sense of: garbage, a line too
// long, a connection closed in the middle. It is temporary: another try,
// perhaps at another MX, may go better.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return e.Msg }

// Temporary reports true: a broken conversation is worth another try.
func (e *ProtocolError) Temporary() bool { return true }

// errClosed is upas's text for a reply that never came.
var errClosed = &ProtocolError{"connection closed unexpectedly by remote system"}

// readReply reads one reply, single or multiline (RFC 5321 §4.2.1): lines
// "ddd-text" up to the last one "ddd text" (or a bare "ddd"), all with the
// same code. An enhanced status code (RFC 2034 §4) at the start of the
// first line is taken out of every line that repeats it.
//
// The text is for people, and it ends up before them: in the smtp
// program's standard error, a -d transcript, the logs, `cat queue`, a
// bounce. RFC 5321 §4.2.1 allows only tab and printable ASCII in it
// (RFC 6531 adds UTF-8), so a control character there is no text but a
// command for the terminal that shows it (ESC [ 2 J, a C1 CSI): each
// line is kept with its control characters escaped (errquote.Escape).
func readReply(r *bufio.Reader) (*Reply, error) {
	var rep Reply
	total := 0
	for {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		total += len(line)
		if len(rep.Lines) >= maxReplyLines || total > maxReplyBytes {
			return nil, &ProtocolError{"reply too long"}
		}
		code, last, text, ok := splitReplyLine(line)
		if !ok {
			return nil, &ProtocolError{fmt.Sprintf("malformed reply line %q", clip(line))}
		}
		if rep.Lines != nil && code != rep.Code {
			return nil, &ProtocolError{fmt.Sprintf("reply code changed from %d to %d", rep.Code, code)}
		}
		rep.Code = code
		rep.Lines = append(rep.Lines, errquote.Escape(text))
		if last {
			break
		}
	}
	rep.Enh = enhancedCode(rep.Code, rep.Lines[0])
	if rep.Enh != "" {
		for i, l := range rep.Lines {
			if t, ok := strings.CutPrefix(l, rep.Enh); ok && (t == "" || t[0] == ' ') {
				rep.Lines[i] = strings.TrimPrefix(t, " ")
			}
		}
	}
	return &rep, nil
}

// readLine reads a line of at most maxReplyLine bytes, without its CRLF (a
// bare LF is accepted from a server: it ends a reply line unambiguously).
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > maxReplyLine+2 {
			return "", &ProtocolError{"reply line too long"}
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", errClosed
		}
		return "", err
	}
	s := strings.TrimSuffix(string(b[:len(b)-1]), "\r")
	return s, nil
}

// splitReplyLine splits "250-text" into 250, false, "text". The code must be
// three digits from 200 to 599 (a client never gets a 1yz reply, RFC 5321
// §4.2.1 leaves it unused).
func splitReplyLine(l string) (code int, last bool, text string, ok bool) {
	if len(l) < 3 || l[0] < '2' || l[0] > '5' || !isDigit(l[1]) || !isDigit(l[2]) {
		return 0, false, "", false
	}
	code = int(l[0]-'0')*100 + int(l[1]-'0')*10 + int(l[2]-'0')
	switch {
	case len(l) == 3:
		return code, true, "", true
	case l[3] == ' ':
		return code, true, l[4:], true
	case l[3] == '-':
		return code, false, l[4:], true
	}
	return 0, false, "", false
}

// enhancedCode returns the enhanced status code (RFC 3463 §2: class.subject.
// detail, class matching the reply's first digit) that starts text, or "".
func enhancedCode(code int, text string) string {
	word, _, _ := strings.Cut(text, " ")
	parts := strings.Split(word, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || int(parts[0][0]-'0') != code/100 {
		return ""
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return ""
		}
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return ""
			}
		}
	}
	return word
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
