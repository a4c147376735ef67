package smtp

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"time"
)

// maxHeader bounds the header that Convert reads and rewrites. A longer
// header is passed on as it is, untouched, with nothing added.
const maxHeader = 1 << 20

// A Conversion is what converting a message for the smtp command needs.
type Conversion struct {
	Addresser                  // how addresses are converted
	From      string           // the envelope sender, converted; "" for the null sender
	Rcpts     []string         // the envelope recipients, converted
	Now       func() time.Time // the clock, for Date:; nil means time.Now
	Rand      io.Reader        // for Message-ID; nil means crypto/rand
}

// Convert returns msg as upas smtp sends it (upas.md §4.5), with LF line
// ends: the header is read (up to maxHeader) and rewritten, the body
// follows as it is but for its line ends (CRLF and a lone CR become LF).
//
//   - An upas envelope line "From sender date..." first is dropped; its
//     date becomes the Date: field if there is none.
//   - Addresses in From, Sender, Reply-To, To, Cc, Bcc and their Resent-
//     forms are converted by the Addresser: bang paths become user@domain,
//     bare names get HostDomain, unqualified system names get Domain.
//   - Missing fields are added before the others: Message-ID
//     (<32 hex digits@HostDomain>), From (the sender, or
//     Postmaster@HostDomain for the null sender), To (the recipients, when
//     there is no To, Cc or Bcc), Date (RFC 5322 §3.6.1 requires it; upas
//     added it only from the envelope line).
//   - The header ends with an empty line; a line that is not a header
//     field starts the body, after an empty line.
//
// Converting reads the header at once; the body is read as the result is.
func Convert(msg io.Reader, cv Conversion) (io.Reader, error) {
	br := bufio.NewReader(msg)
	h, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if h.tooBig {
		out.Write(h.raw)
	} else {
		cv.writeHeader(&out, h)
	}
	return &lfReader{r: io.MultiReader(&out, br)}, nil
}

// A header is the header of a message as read.
type header struct {
	envDate time.Time // from the upas envelope line, zero if none
	fields  []field
	rest    string // a line that ended the header without being empty: the body's first
	raw     []byte // everything read, when tooBig
	tooBig  bool
}

// A field is a header field: its name and its text after the colon,
// continuation lines included, LF line ends.
type field struct {
	name  string
	value string
	cont  []string // continuation lines while reading, joined into value at the end
}

func readHeader(br *bufio.Reader) (*header, error) {
	h := &header{}
	// Appending each continuation line to the value would copy it again
	// for each line: quadratic in a 1 MB header of short lines.
	defer func() {
		for i := range h.fields {
			f := &h.fields[i]
			if len(f.cont) > 0 {
				f.value += "\n" + strings.Join(f.cont, "\n")
				f.cont = nil
			}
		}
	}()
	var raw []byte
	env := 0 // length of the envelope line
	first := true
	for {
		line, err := readHeaderLine(br, maxHeader-len(raw))
		raw = append(raw, line...)
		if errors.Is(err, errHeaderTooBig) {
			h.raw, h.tooBig = raw[env:], true
			return h, nil
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		text := strings.TrimRight(string(line), "\r\n")
		switch {
		case len(line) == 0:
			return h, nil
		case first && strings.HasPrefix(text, "From "):
			h.envDate = envelopeDate(text)
			env = len(line)
		case text == "":
			return h, nil
		case (text[0] == ' ' || text[0] == '\t') && len(h.fields) > 0:
			f := &h.fields[len(h.fields)-1]
			f.cont = append(f.cont, text)
		case fieldName(text) != "":
			name := fieldName(text)
			h.fields = append(h.fields, field{name: name, value: text[len(name)+1:]})
		default:
			h.rest = text + "\n"
			return h, nil
		}
		first = false
		if err == io.EOF {
			return h, nil
		}
	}
}

var errHeaderTooBig = errors.New("header too big")

// readHeaderLine reads a line of at most max bytes, with its line end.
func readHeaderLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > max {
			return line, errHeaderTooBig
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// fieldName returns the name of a header field line (RFC 5322 §3.6.8:
// printable ASCII but the colon), or "".
func fieldName(line string) string {
	i := strings.IndexByte(line, ':')
	if i <= 0 {
		return ""
	}
	for j := 0; j < i; j++ {
		if line[j] <= ' ' || line[j] > '~' {
			return ""
		}
	}
	return line[:i]
}

// envelopeDate parses the date of an upas envelope line, "From sender Wed
// Mar 27 23:47:45 +0000 2024 remote from sys", or of a Unix mbox one,
// "From sender Wed Mar 27 23:47:45 2024".
func envelopeDate(line string) time.Time {
	f := strings.Fields(line)
	if len(f) < 7 {
		return time.Time{}
	}
	for _, try := range []struct {
		n      int
		layout string
	}{
		{6, "Mon Jan 2 15:04:05 -0700 2006"},
		{6, "Mon Jan 2 15:04:05 MST 2006"},
		{5, "Mon Jan 2 15:04:05 2006"},
	} {
		if len(f) < 2+try.n {
			continue
		}
		if t, err := time.Parse(try.layout, strings.Join(f[2:2+try.n], " ")); err == nil {
			return t
		}
	}
	return time.Time{}
}

// Fields whose addresses are converted (RFC 5322 §3.6.2, §3.6.3, §3.6.6).
var addrFields = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true, "bcc": true,
	"resent-from": true, "resent-sender": true, "resent-to": true, "resent-cc": true, "resent-bcc": true,
}

// WriteData writes msg to w as it goes on the wire between DATA's 354 and
// the final dot (RFC 5321 §4.1.1.4, §4.5.2): every line end, a lone CR or
// LF included, as CRLF, a line that starts with "." with another in
// front, the last line ended; the final "." is not written. It is what
// upas's smtp -f writes.
func WriteData(w io.Writer, msg io.Reader) error {
	d := newDataWriter(w, nil)
	if _, err := io.Copy(d, msg); err != nil {
		return err
	}
	if d.lineLen > 0 {
		_, err := io.WriteString(w, "\r\n")
		return err
	}
	return nil
}

// IsAddressField reports whether the header field name holds addresses
// that Convert converts: From, Sender, Reply-To, To, Cc, Bcc and their
// Resent- forms.
func IsAddressField(name string) bool { return addrFields[strings.ToLower(name)] }

// RewriteAddresses returns the value of an address field (RFC 5322 §3.4)
// with each address passed through conv, as Convert rewrites them: the
// inside of each <...>, or an element between commas that is one simple
// token ("rob", "bob@example.com"). Display names, comments, groups and
// folding stay as they are; an element that is no simple token ("Rob
// Pike" without brackets) is left alone.
func RewriteAddresses(v string, conv func(string) string) string {
	return rewriteAddrList(v, conv)
}

// writeHeader writes the converted header and the empty line after it.
func (cv Conversion) writeHeader(w *bytes.Buffer, h *header) {
	has := map[string]bool{}
	for _, f := range h.fields {
		has[strings.ToLower(f.name)] = true
	}
	if !has["message-id"] {
		w.WriteString("Message-ID: <" + cv.messageID() + "@" + cv.HostDomain + ">\n")
	}
	if !has["from"] {
		from := cv.From
		if from == "" {
			from = "Postmaster@" + cv.HostDomain
		}
		w.WriteString("From: " + angle(from) + "\n")
	}
	if !has["to"] && !has["cc"] && !has["bcc"] && len(cv.Rcpts) > 0 {
		w.WriteString(foldList("To:", cv.Rcpts))
	}
	if !has["date"] {
		t := h.envDate
		if t.IsZero() {
			now := cv.Now
			if now == nil {
				now = time.Now
			}
			t = now()
		}
		w.WriteString("Date: " + t.Format(time.RFC1123Z) + "\n")
	}
	for _, f := range h.fields {
		v := f.value
		if addrFields[strings.ToLower(f.name)] {
			v = rewriteAddrList(v, func(a string) string { return cv.Convert(a, "") })
		}
		w.WriteString(f.name + ":" + v + "\n")
	}
	w.WriteString("\n" + h.rest)
}

// messageID returns 32 upper-case hex digits, as 9front's upas makes them.
func (cv Conversion) messageID() string {
	r := cv.Rand
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	io.ReadFull(r, b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// angle wraps a source route in angle brackets, as a header needs.
func angle(a string) string {
	if strings.HasPrefix(a, "@") {
		return "<" + a + ">"
	}
	return a
}

// foldList writes "name a, b, c" folded before 78 columns (RFC 5322 §2.1.1).
func foldList(name string, addrs []string) string {
	var b strings.Builder
	b.WriteString(name)
	col := len(name)
	for i, a := range addrs {
		a = angle(a)
		if i > 0 {
			b.WriteByte(',')
			col++
		}
		if i > 0 && col+1+len(a)+1 > 78 { // the address and its comma
			b.WriteString("\n\t")
			col = 1
		} else {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(a)
		col += len(a)
	}
	b.WriteByte('\n')
	return b.String()
}

// An lfReader turns CRLF and a lone CR into LF.
type lfReader struct {
	r  io.Reader
	cr bool // the last byte read was a CR
}

func (l *lfReader) Read(p []byte) (int, error) {
	for {
		n, err := l.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c == '\n' && l.cr {
				l.cr = false
				continue
			}
			l.cr = c == '\r'
			if l.cr {
				c = '\n'
			}
			p[j] = c
			j++
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
