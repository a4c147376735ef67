package smtp

import (
	"bytes"
	"io"
	"strconv"
)

// A dataWriter writes a message as DATA content (RFC 5321 §4.1.1.4,
// §4.5.2): every line end, whether CRLF, a lone LF or a lone CR, goes out as
// CRLF, so that no bare LF or CR ever reaches the wire (the client's half of
// the defence against SMTP smuggling); a line that starts with "." gets a
// second one; Close ends the last line if needed and writes the final
// ".". It counts the bytes it was given, and copies the header lines, not
// the body, to a transcript.
type dataWriter struct {
	w       io.Writer
	buf     []byte
	lineLen int  // bytes in the current line so far
	cr      bool // the last byte was a CR, whose line end is already written
	n       int64

	tr     func(line string) // transcript, nil when off
	line   []byte            // the header line being transcribed
	body   bool              // the header has ended
	header int64             // bytes of header, empty line included
}

func newDataWriter(w io.Writer, tr func(string)) *dataWriter {
	return &dataWriter{w: w, tr: tr}
}

// Write converts p and passes it on.
func (d *dataWriter) Write(p []byte) (int, error) {
	d.buf = d.buf[:0]
	for rest := p; len(rest) > 0; {
		c := rest[0]
		if c != '\r' && c != '\n' {
			// A run of text up to the next line end.
			i := bytes.IndexAny(rest, "\r\n")
			if i < 0 {
				i = len(rest)
			}
			if d.lineLen == 0 && c == '.' {
				d.buf = append(d.buf, '.')
			}
			d.buf = append(d.buf, rest[:i]...)
			if d.tr != nil && !d.body && len(d.line) < maxReplyLine {
				d.line = append(d.line, rest[:min(i, maxReplyLine-len(d.line))]...)
			}
			d.lineLen += i
			d.n += int64(i)
			d.cr = false
			rest = rest[i:]
			continue
		}
		d.n++
		rest = rest[1:]
		if c == '\n' && d.cr {
			// The LF of a CRLF whose line end went out with the CR.
			d.cr = false
			if d.header == d.n-1 {
				d.header = d.n // the LF of the line that ended the header
			}
			continue
		}
		d.cr = c == '\r'
		d.buf = append(d.buf, '\r', '\n')
		d.endLine()
	}
	if _, err := d.w.Write(d.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// endLine notes the end of a line: header lines go to the transcript, and
// the first empty line ends the header.
func (d *dataWriter) endLine() {
	empty := d.lineLen == 0
	d.lineLen = 0
	if d.body {
		return
	}
	d.header = d.n
	if d.tr != nil {
		d.tr(string(d.line))
		d.line = d.line[:0]
	}
	d.body = empty
}

// Close ends the message: a CRLF if the last line was not ended (RFC 5321
// §4.1.1.4: the final dot must follow a CRLF), then ".\r\n".
func (d *dataWriter) Close() error {
	end := ".\r\n"
	if d.lineLen > 0 {
		end = "\r\n.\r\n"
		d.endLine()
	}
	if d.tr != nil {
		d.tr("[" + strconv.FormatInt(d.n-d.header, 10) + " bytes of body]")
	}
	_, err := io.WriteString(d.w, end)
	return err
}
