package smtpd

import (
	"bytes"
	"net/mail"
	"strings"
)

// maxHeaderScan bounds how much of a message header we parse: the rest of
// a longer header passes on unchanged (upas parsed 16 KiB).
const maxHeaderScan = 64 << 10

// maxReceived is the most Received: lines a message may carry; more means a
// mail loop (RFC 5321 §6.3).
const maxReceived = 100

// headerInfo is what we learn from the header of a message.
type headerInfo struct {
	originator  bool     // a From: is there
	destination bool     // To:, Cc:, Bcc: or a Resent- one is there, even empty
	received    int      // Received: lines
	date        bool     // a Date: is there
	messageID   bool     // a Message-ID: is there
	from        []string // values of From:, unfolded
	sender      []string // values of Sender:, unfolded
	// end is the offset where the body starts. When blank is false the
	// header did not end with an empty line but with a line that is no
	// header field, and an empty line must go in at end.
	end   int
	blank bool
	// ended says that an empty line or a line that is no field ended the
	// header within what was scanned; else it ran to the end of it.
	ended bool
}

// Header fields that count as destination (upas.md §2.12.2; RFC 5322
// §3.6.3, §3.6.6). Only From: counts as originator: RFC 5322 §3.6 makes it
// mandatory, where upas was content with Sender: or Reply-To:.
var destinations = []string{"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"}

// scanHeader reads the header at the start of msg (CRLF line ends), at
// most maxHeaderScan bytes of it.
func scanHeader(msg []byte) headerInfo { return scanHeaderMax(msg, maxHeaderScan) }

// scanHeaderMax is scanHeader reading at most max bytes.
func scanHeaderMax(msg []byte, max int) headerInfo {
	var h headerInfo
	var name string // the field being read, for continuation lines
	var value []byte
	flush := func() {
		switch name {
		case "from":
			h.from = append(h.from, string(value))
		case "sender":
			h.sender = append(h.sender, string(value))
		}
		name, value = "", nil
	}
	off := 0
	for off < len(msg) && off < max {
		i := bytes.Index(msg[off:], []byte("\r\n"))
		if i < 0 { // the header runs on past what we have
			h.end, h.blank = len(msg), true
			flush()
			return h
		}
		line := msg[off : off+i]
		next := off + i + 2
		switch {
		case len(line) == 0:
			flush()
			h.end, h.blank, h.ended = next, true, true
			return h
		case (line[0] == ' ' || line[0] == '\t') && off > 0:
			if name != "" {
				value = append(value, line...)
			}
		default:
			flush()
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || !isFieldName(line[:colon]) {
				h.end, h.ended = off, true // the body starts here, and needs an empty line before it
				return h
			}
			n := strings.ToLower(string(line[:colon]))
			h.note(n)
			if n == "from" || n == "sender" {
				name, value = n, append([]byte(nil), line[colon+1:]...)
			}
		}
		off = next
	}
	flush()
	h.end, h.blank = off, true
	return h
}

func (h *headerInfo) note(name string) {
	switch {
	case name == "received":
		h.received++
	case name == "from":
		h.originator = true
	case name == "date":
		h.date = true
	case name == "message-id":
		h.messageID = true
	case contains(destinations, name):
		h.destination = true
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// isFieldName reports whether b is an RFC 5322 §3.6.8 field name:
// printable ASCII but colon.
func isFieldName(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// addrDomain returns the domain of the first address in a From: or
// Sender: value, as upas's masquerade check sees it (upas.md §2.11.3): the
// text after '@', or the first element of a bang path, or helo when the
// address has neither. ok is false when there is no address at all.
func addrDomain(value, helo string) (string, bool) {
	addr := ""
	if l, err := mail.ParseAddressList(value); err == nil && len(l) > 0 {
		addr = l[0].Address
	} else {
		addr = roughAddress(value)
	}
	if addr == "" {
		return "", false
	}
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:], true
	}
	if i := strings.IndexByte(addr, '!'); i >= 0 {
		return addr[:i], true
	}
	return helo, true
}

// roughAddress finds an address in a value net/mail cannot parse: the
// text in the first <>, else the first word with an '@' or '!', else the
// first word.
func roughAddress(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	f := strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
	for _, w := range f {
		if strings.ContainsAny(w, "@!") {
			return w
		}
	}
	if len(f) > 0 {
		return f[0]
	}
	return ""
}
