package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"golang.org/x/net/idna"
)

// Message headers (RFC 5322 §2.2, §3.6), read leniently: what arrives from
// outside may be malformed, and a check must not be fooled or stopped by
// it. A line that starts with a space or tab continues the field before
// it; a line without a colon is a field without a name, kept but never
// matched.

// maxHeader bounds the header a check reads: more is a permerror.
const maxHeader = 1 << 20

var errHeaderTooLong = fmt.Errorf("header longer than %d bytes", maxHeader)

// readHeader reads the header of a message, up to and including the empty
// line that ends it (which a message without a body may lack).
func readHeader(r *bufio.Reader) ([]byte, error) {
	var h []byte
	start := true // the next read starts a line
	for {
		line, err := r.ReadSlice('\n')
		if len(h)+len(line) > maxHeader {
			return h, errHeaderTooLong
		}
		h = append(h, line...)
		blank := start && len(bytes.TrimRight(line, "\r\n")) == 0
		start = err == nil
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			return h, nil
		case err != nil:
			return h, err
		case blank:
			return h, nil
		}
	}
}

// terminated returns h ending in an empty line, as a header must for a
// parser to find the body.
func terminated(h []byte) []byte {
	if bytes.HasSuffix(h, []byte("\n\n")) || bytes.HasSuffix(h, []byte("\n\r\n")) || len(bytes.TrimSpace(h)) == 0 {
		return h
	}
	if len(h) > 0 && h[len(h)-1] != '\n' {
		h = append(h, "\r\n"...)
	}
	return append(h, "\r\n"...)
}

// A field is one header field.
type field struct {
	name string // as written, without the white space before the colon
	raw  []byte // the whole field, folded lines and line ends included
}

// value returns the field's body unfolded (RFC 5322 §2.2.3), without the
// white space around it.
func (f field) value() string {
	_, v, ok := bytes.Cut(f.raw, []byte(":"))
	if !ok {
		return ""
	}
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	v = bytes.ReplaceAll(v, []byte("\n"), nil)
	return string(bytes.TrimSpace(v))
}

// is reports whether the field is named name, in any case.
func (f field) is(name string) bool { return strings.EqualFold(f.name, name) }

// splitHeader splits a header into its fields, stopping at the empty line.
func splitHeader(h []byte) []field {
	var fields []field
	for len(h) > 0 {
		end := bytes.IndexByte(h, '\n') + 1
		if end == 0 {
			end = len(h)
		}
		line := h[:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].raw = append(fields[len(fields)-1].raw, line...)
		} else {
			fields = append(fields, field{name: fieldName(line), raw: append([]byte(nil), line...)})
		}
		h = h[end:]
	}
	return fields
}

// fieldName returns the name before the colon of a field's first line, ""
// if the line has no colon or the name is not printable ASCII (RFC 5322
// §3.6.8).
func fieldName(line []byte) string {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return ""
	}
	name := bytes.TrimRight(line[:i], " \t")
	for _, c := range name {
		if c <= ' ' || c > '~' {
			return ""
		}
	}
	return string(name)
}

// authorDomains returns the domains of the addresses of the From fields
// (RFC 5322 §3.6.2), lower case, as A-labels (RFC 7489 §6.6.1), each once,
// and how many From fields there are. A From that net/mail cannot parse
// gives the domains after every '@' in it, so that a malformed field is not
// a way around DMARC.
func authorDomains(fields []field) (domains []string, froms int) {
	seen := map[string]bool{}
	for _, f := range fields {
		if !f.is("From") {
			continue
		}
		froms++
		for _, d := range fromDomains(f.value()) {
			if !seen[d] {
				seen[d] = true
				domains = append(domains, d)
			}
		}
	}
	return domains, froms
}

// fromDomains returns the domains of one From field's addresses.
func fromDomains(v string) []string {
	var raw []string
	if addrs, err := mail.ParseAddressList(v); err == nil {
		for _, a := range addrs {
			raw = append(raw, a.Address[strings.LastIndexByte(a.Address, '@')+1:])
		}
	} else {
		for s := v; ; {
			i := strings.IndexByte(s, '@')
			if i < 0 {
				break
			}
			s = s[i+1:]
			raw = append(raw, s[:strings.IndexFunc(s+">", endOfDomain)])
		}
	}
	var domains []string
	for _, d := range raw {
		d, err := idna.Lookup.ToASCII(strings.TrimSuffix(d, "."))
		if err == nil && validName(d) {
			domains = append(domains, strings.ToLower(d))
		}
	}
	return domains
}

// endOfDomain reports whether r cannot be in a domain.
func endOfDomain(r rune) bool {
	return r == '>' || r == ',' || r == ';' || r == ')' || r == '(' || r == '"' || r == ' ' || r == '\t' || r == '<'
}
