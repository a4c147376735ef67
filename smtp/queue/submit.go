package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"smtpfs/smtp"
)

// Submission: a whole RFC 5322 message written to the 9P queue file
// (SPEC §3), its envelope taken from its header as sendmail -t and upas
// mail do.
//
// Line ends. The header's lines may end in LF or CRLF; a CR anywhere else
// in the header is refused (RFC 5322 §2.2: CR and LF only together, as a
// line end). The reason is what happens next: the message goes out with
// every lone CR made a line end (smtp's dataWriter, the client's half of
// the defence against SMTP smuggling), so "Subject: hi\rBcc: x" would be
// one field here, where Bcc: is removed and recipients are read, and two
// at the far end. In the body, a lone CR, like a lone LF, is a line end,
// made CRLF here: the header is over, so it can start no field, and every
// line that starts with "." is dot-stuffed when sent, so "\r.\r" is a
// line holding a dot, never the end of the data.

// Bounds on a submitted header.
const (
	// MaxHeader bounds the header ParseEnvelope reads.
	MaxHeader = 1 << 20
	// maxLine is RFC 5322 §2.1.1: a line is at most 998 characters
	// without its CRLF.
	maxLine = 998
)

// A field is one header field: its name, its value unfolded, and its
// lines as they came (without line ends), to write it back.
type field struct {
	name, value string
	lines       []string
}

// ParseEnvelope reads a message's header: envelope sender from an optional
// first line "From sender ..." (upas) else the From: header; recipients from
// To:, Cc:, Bcc:. It is called as soon as the header is complete, so that a
// bad header fails the write that completes it ("invalid ..." errors).
//
// The sender of a From line may be a bang path (dom!user, taken as
// user@dom) or a bare name. A From: header with several mailboxes gives
// the Sender: header's mailbox, if any, else its first (RFC 5322 §3.6.2).
// Addresses may be bare names, wherever an address may stand ("To: rob,
// ken@example.com", "Cc: Rob <rob>"): as upas's marshal hands them to
// send, which delivers them to the local user, they are local users, and
// they are qualified with @dom, our mail domain, as upas's smtp qualifies
// them with the domain remotemail gives it (upas.md §4.5.3, §5). Groups
// and display names are understood, repeats dropped. header may run on
// into the body: it ends at its first empty line.
func ParseEnvelope(header []byte, dom string) (from string, rcpts []string, err error) {
	fromLine, fields, err := splitHeader(header)
	if err == nil {
		err = qualifyFields(fields, dom)
	}
	if err != nil {
		return "", nil, err
	}
	return envelopeOf(fromLine, fields, dom)
}

// envelopeOf is ParseEnvelope of a header already split and qualified;
// dom qualifies a bare sender of the From line.
func envelopeOf(fromLine string, fields []field, dom string) (from string, rcpts []string, err error) {
	if fromLine != "" {
		if from, err = fromLineSender(fromLine); err != nil {
			return "", nil, err
		}
		from = qualify(from, dom)
	}
	seen := map[string]bool{}
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "from":
			if fromLine == "" && from == "" {
				if from, err = originator(f, fields); err != nil {
					return "", nil, err
				}
			}
		case "to", "cc", "bcc":
			as, err := addressList(f)
			if err != nil {
				return "", nil, err
			}
			for _, a := range as {
				if k := addrKey(a); !seen[k] {
					seen[k] = true
					rcpts = append(rcpts, a)
				}
			}
		}
	}
	switch {
	case from == "":
		return "", nil, errors.New("invalid header: no sender: neither a From line nor a From: field")
	case len(rcpts) == 0:
		return "", nil, errors.New("invalid header: no recipients in To:, Cc: or Bcc:")
	case len(rcpts) > MaxRcpts:
		return "", nil, fmt.Errorf("invalid header: more than %d recipients", MaxRcpts)
	}
	return from, rcpts, nil
}

// splitHeader splits a header into its fields, after an optional upas
// From line, which it returns.
func splitHeader(h []byte) (fromLine string, fields []field, err error) {
	if len(h) > MaxHeader {
		return "", nil, errHeaderTooLong
	}
	var c LineChecker
	for l := range strings.Lines(string(h)) {
		l = strings.TrimSuffix(strings.TrimSuffix(l, "\n"), "\r")
		if l == "" {
			break
		}
		if err := c.Line([]byte(l)); err != nil {
			return "", nil, err
		}
		switch {
		case c.n == 1 && strings.HasPrefix(l, "From "):
			fromLine = l
		case l[0] == ' ' || l[0] == '\t':
			f := &fields[len(fields)-1]
			f.lines = append(f.lines, l)
		default:
			name, _, _ := strings.Cut(l, ":")
			fields = append(fields, field{name: name, lines: []string{l}})
		}
	}
	for i := range fields {
		fields[i].unfold()
	}
	return fromLine, fields, nil
}

// unfold sets the field's value from its lines. It is done once the
// lines are known: appending line by line would copy the value again for
// each of them, quadratic in the header's size.
func (f *field) unfold() {
	var b strings.Builder
	_, v, _ := strings.Cut(f.lines[0], ":")
	b.WriteString(strings.TrimSpace(v))
	for _, l := range f.lines[1:] {
		b.WriteByte(' ')
		b.WriteString(strings.TrimSpace(l))
	}
	f.value = b.String()
}

var errHeaderTooLong = fmt.Errorf("invalid header: too long: more than %d bytes", MaxHeader)

// A LineChecker checks the lines of a header one by one, as they arrive,
// with the errors ParseEnvelope gives them, so that the 9P queue file can
// refuse a write that cannot be part of a header (the first bytes of
// `echo hello > queue`, a body line before the empty line) at that write,
// not once the header is complete. Its zero value is ready for the first
// line.
type LineChecker struct {
	n     int  // lines taken
	size  int  // their bytes, line ends counted
	field bool // a field has started: a continuation line may follow
}

// Line checks the next whole line of the header, without its line end
// (the empty line that ends the header is not one): the upas From line
// first, a field "name: value" (RFC 5322 §2.2, the name printable
// US-ASCII but colon), or the continuation of one (a line that starts
// with a space or tab), at most 998 characters (§2.1.1), no CR in it (a
// CR only ends a line, with its LF: Line ends, above), the header at most
// MaxHeader bytes.
func (c *LineChecker) Line(l []byte) error {
	c.n++
	c.size += len(l) + 1
	switch {
	case c.size > MaxHeader:
		return errHeaderTooLong
	case len(l) > maxLine:
		return fmt.Errorf("invalid header line %d: longer than %d characters", c.n, maxLine)
	case bytes.IndexByte(l, '\r') >= 0:
		return loneCR(c.n, l)
	case c.n == 1 && bytes.HasPrefix(l, []byte("From ")):
		return nil
	case len(l) > 0 && (l[0] == ' ' || l[0] == '\t'):
		if !c.field {
			return fmt.Errorf("invalid header line %d: continuation without a field", c.n)
		}
		return nil
	}
	name, _, ok := bytes.Cut(l, []byte(":"))
	if !ok || !validName(string(name)) {
		return notField(c.n, l)
	}
	c.field = true
	return nil
}

// Start checks the start of the next line, whose end has not come yet: it
// fails when no end can make a line that Line takes.
func (c *LineChecker) Start(l []byte) error {
	l = bytes.TrimSuffix(l, []byte("\r")) // perhaps the CR of a CRLF
	n := c.n + 1
	switch {
	case len(l) > maxLine:
		return fmt.Errorf("invalid header line %d: longer than %d characters", n, maxLine)
	case bytes.IndexByte(l, '\r') >= 0:
		return loneCR(n, l)
	case len(l) == 0, n == 1 && (bytes.HasPrefix(l, []byte("From ")) || bytes.HasPrefix([]byte("From "), l)):
		return nil
	case l[0] == ' ' || l[0] == '\t':
		if !c.field {
			return fmt.Errorf("invalid header line %d: continuation without a field", n)
		}
		return nil
	}
	name, _, ok := bytes.Cut(l, []byte(":"))
	if ok && !validName(string(name)) || !ok && !fieldChars(name) {
		return notField(n, l)
	}
	return nil
}

// loneCR is the error of header line n, l, which holds a CR that is not
// its line end's.
func loneCR(n int, l []byte) error {
	return fmt.Errorf("invalid header line %d: a CR not followed by LF: %q", n, clip(string(l)))
}

// notField is the error of header line n, l, which is not a field.
func notField(n int, l []byte) error {
	return fmt.Errorf("invalid header line %d: not a field: %q (an empty line ends the header)", n, clip(string(l)))
}

// clip shortens s for an error message: a field may be a megabyte long.
func clip(s string) string {
	const n = 100
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "..."
}

// validName: RFC 5322 §2.2, printable US-ASCII but colon.
func validName(s string) bool { return s != "" && fieldChars([]byte(s)) }

// fieldChars reports whether b is printable US-ASCII, space excluded: the
// characters of a field name, the colon aside.
func fieldChars(b []byte) bool {
	for _, c := range b {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// fromLineSender takes the sender of a upas "From sender date..." line.
func fromLineSender(l string) (string, error) {
	f := strings.Fields(strings.TrimPrefix(l, "From "))
	if len(f) == 0 {
		return "", errors.New("invalid From line: no sender")
	}
	a := strings.TrimSuffix(strings.TrimPrefix(f[0], "<"), ">")
	if i := strings.LastIndexByte(a, '!'); i >= 0 && !strings.Contains(a, "@") {
		// A bang path: the last two elements are domain!user.
		p := strings.Split(a, "!")
		a = p[len(p)-1] + "@" + p[len(p)-2]
	}
	if err := checkSubmitted(a); err != nil {
		return "", fmt.Errorf("invalid From line: %v", err)
	}
	return a, nil
}

// originator takes the sender from the From: field f, or from Sender:
// when From: has several mailboxes.
func originator(f field, fields []field) (string, error) {
	as, err := addressList(f)
	if err != nil {
		return "", err
	}
	if len(as) == 0 {
		return "", errors.New("invalid header: From: has no mailbox")
	}
	if len(as) > 1 {
		for _, s := range fields {
			if strings.EqualFold(s.name, "sender") {
				if ss, err := addressList(s); err == nil && len(ss) == 1 {
					return ss[0], nil
				}
			}
		}
	}
	return as[0], nil
}

// addressList parses the addresses of a field, an RFC 5322 address list
// whose bare names are already qualified.
func addressList(f field) ([]string, error) {
	if strings.TrimSpace(f.value) == "" {
		return nil, nil
	}
	list, err := mail.ParseAddressList(f.value)
	if err != nil {
		return nil, fmt.Errorf("invalid address in %s: %q: %v", f.name, clip(f.value), err)
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		s := requote(a.Address)
		if err := checkSubmitted(s); err != nil {
			return nil, fmt.Errorf("invalid address in %s: %v", f.name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// qualifyFields qualifies the bare names in the address fields (From,
// To, Cc, Reply-To, their Resent- forms, ...) with @dom, in their lines
// as in their values, as upas's smtp qualifies them when the message
// leaves (upas.md §4.5.3): "To: Rob <rob>" becomes "To: Rob <rob@dom>".
// What is not a bare name stays as it is. A line that grows past 998
// characters so is an error: the message could not leave.
func qualifyFields(fields []field, dom string) error {
	for i := range fields {
		f := &fields[i]
		if !smtp.IsAddressField(f.name) {
			continue
		}
		head := len(f.name) + 1
		raw := strings.Join(f.lines, "\n")
		q := smtp.RewriteAddresses(raw[head:], func(a string) string {
			if bareName(a) {
				return a + "@" + dom
			}
			return a
		})
		if q == raw[head:] {
			continue
		}
		f.lines = strings.Split(raw[:head]+q, "\n")
		for _, l := range f.lines {
			if len(l) > maxLine {
				return fmt.Errorf("invalid header: %s: a line longer than %d characters once its names are qualified", f.name, maxLine)
			}
		}
		f.unfold()
	}
	return nil
}

// bareName reports whether w is a plain local user name.
func bareName(w string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._+-", c) >= 0) {
			return false
		}
	}
	return w != ""
}

// requote puts back the quotes that net/mail takes off a local part that
// is not a dot-atom ("john doe"@example.org).
func requote(a string) string {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a
	}
	local := a[:at]
	if dotAtom(local) {
		return a
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(local) + `"` + a[at:]
}

// dotAtom: RFC 5322 §3.2.3.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range s {
		if c < 0x80 && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", c)) {
			return false
		}
	}
	return true
}

// checkSubmitted checks an address as the envelope will hold it.
func checkSubmitted(a string) error {
	if err := checkAddr(a); err != nil {
		return err
	}
	if at := strings.LastIndexByte(a, '@'); at == 0 || at == len(a)-1 {
		return fmt.Errorf("invalid address %q: empty local part or domain", a)
	}
	return nil
}

// CheckHeader checks the header of a message written to the queue file,
// as Submit will take it (ParseEnvelope, bare names qualified with our
// mail domain), and that the queue has room for it (CheckSpace).
func (q *Queue) CheckHeader(header []byte) error {
	q.mu.Lock()
	dom := q.set.Domain
	q.mu.Unlock()
	if _, _, err := ParseEnvelope(header, dom); err != nil {
		return err
	}
	return q.CheckSpace()
}

// Submit queues a whole message written to the queue file: envelope as
// ParseEnvelope, bare names in the envelope and in the address fields
// qualified with settings.Domain (upas's remotemail gives smtp the site's
// mail domain, not the machine's name), Bcc: removed, the upas From line
// removed, line ends made CRLF, Message-ID and Date added when missing.
// A message may be all header, with no empty line and no body (RFC 5322
// §3.5: the body is optional).
func (q *Queue) Submit(ctx context.Context, msg []byte) (string, error) {
	head, body := msg, []byte(nil)
	if i := headerEnd(msg); i >= 0 {
		head, body = msg[:i], msg[i:]
	}
	q.mu.Lock()
	host, dom := q.set.Hostname, q.set.Domain
	q.mu.Unlock()
	fromLine, fields, err := splitHeader(head)
	if err == nil {
		err = qualifyFields(fields, dom)
	}
	if err != nil {
		return "", err
	}
	from, rcpts, err := envelopeOf(fromLine, fields, dom)
	if err != nil {
		return "", err
	}
	now := q.clock.Now()
	var b bytes.Buffer
	have := map[string]bool{}
	for _, f := range fields {
		name := strings.ToLower(f.name)
		have[name] = true
		if name == "bcc" {
			continue
		}
		for _, l := range f.lines {
			b.WriteString(l)
			b.WriteString("\r\n")
		}
	}
	if !have["date"] {
		fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	if !have["message-id"] {
		fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", newID(now), host)
	}
	b.WriteString("\r\n")
	b.Write(crlf(body))
	if len(body) > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	// UTF-8 in the header or the addresses (RFC 6531, 6532): the message
	// leaves only with SMTPUTF8, and bounces (5.6.7) where it cannot.
	params := smtp.Params{SMTPUTF8: smtp.NeedsSMTPUTF8(head, append([]string{from}, rcpts...)...)}
	return q.PutMail(ctx, smtp.Mail{From: from, Rcpts: rcpts, Params: params}, q.signed(b.Bytes()))
}

// headerEnd returns the index just past the empty line that ends the
// header, or -1 if there is none.
func headerEnd(msg []byte) int {
	for i := 0; i < len(msg); {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return -1
		}
		line := msg[i : i+j]
		i += j + 1
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			return i
		}
	}
	return -1
}

// qualify adds @dom to a bare name.
func qualify(a, dom string) string {
	if strings.Contains(a, "@") {
		return a
	}
	return a + "@" + dom
}

// crlf makes every line end CRLF: LF and lone CR become CRLF.
func crlf(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}
