// Package smtp is the SMTP client engine of smtpfs, upas smtp rebuilt, and the
// vocabulary it shares with the server engine: the Reply type, dial strings.
//
// RFCs: 5321 (SMTP), 3207 (STARTTLS), 4954 (AUTH), 2034 and 3463 (enhanced
// status codes), 7505 (null MX), 2920 (PIPELINING), 1870 (SIZE), 6152
// (8BITMIME), 6531 (SMTPUTF8, refused when not offered), 4616 (PLAIN),
// 2195 (CRAM-MD5), 8314 (implicit TLS), 1035 and 7766 (DNS over UDP and
// TCP), 5322 (the header conversion).
//
// Policy. A Client delivers one message to the recipients of one
// destination over one session: MX hosts by preference, each address in
// turn, until one of them gets as far as MAIL FROM; from there its answers
// are final. Every recipient gets its own result, so that one refusal
// never costs the others their copy; DATA goes out as soon as one is
// accepted. Every failure says whether it is temporary (4xx, network, DNS
// trouble) or permanent (5xx, no such domain, null MX, a certificate we
// cannot trust). Nothing we send can end a line early: addresses and the
// EHLO name are checked, and the message goes with CRLF line ends and
// dot-stuffing whatever it came with. TLS is used as the Client's policy
// says, and once STARTTLS is asked for there is no plaintext fallback.
// Passwords go over TLS only, unless the caller says otherwise.
package smtp

import (
	"errors"
	"fmt"
	"strings"
)

// A Reply is an SMTP reply: a three-digit code, an optional enhanced status
// code (RFC 3463, e.g. "5.7.1") and one or more lines of text. Both engines
// use it: the server writes it, the client parses it from the wire and
// returns it as an error. A *Reply is an error whose Temporary method says
// whether the failure should be retried (4xx) or not (5xx).
type Reply struct {
	Code  int
	Enh   string   // enhanced status code, "" if none
	Lines []string // at least one line; may be ""
}

// Replyf returns a one-line Reply.
func Replyf(code int, enh, format string, args ...any) *Reply {
	return &Reply{Code: code, Enh: enh, Lines: []string{fmt.Sprintf(format, args...)}}
}

// Error returns the reply as one line, lines joined by "; ".
func (r *Reply) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%03d", r.Code)
	for i, l := range r.Lines {
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteByte(' ')
		if r.Enh != "" {
			b.WriteString(r.Enh)
			b.WriteByte(' ')
		}
		b.WriteString(l)
	}
	return b.String()
}

// Temporary reports whether the reply is a transient failure (4xx), so that
// the message should be tried again later.
func (r *Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports whether the reply is a permanent failure (5xx).
func (r *Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Positive reports whether the reply is a success (2xx) or an intermediate
// success (3xx).
func (r *Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Wire returns the reply as it is sent: one "code-text" line per line but
// the last, which is "code text", each ending in CRLF (RFC 5321 §4.2.1).
func (r *Reply) Wire() []byte {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	var b []byte
	for i, l := range lines {
		sep := byte(' ')
		if i < len(lines)-1 {
			sep = '-'
		}
		b = fmt.Appendf(b, "%03d", r.Code)
		b = append(b, sep)
		if r.Enh != "" {
			b = append(b, r.Enh...)
			if l != "" {
				b = append(b, ' ')
			}
		}
		b = append(b, l...)
		b = append(b, '\r', '\n')
	}
	return b
}

// IsTemporary reports whether err, or an error it wraps, says it is
// temporary. Errors that say nothing are taken as temporary: a failure we
// cannot classify must not lose mail.
func IsTemporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return true
}
