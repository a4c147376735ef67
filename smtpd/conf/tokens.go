package conf

import (
	"errors"
	"strings"

	"smtpfs/internal/errquote"
)

// maxLine bounds one configuration or ctl line. Nothing legitimate comes
// near it; a longer line is refused rather than parsed.
const maxLine = 64 << 10

// Tokenize splits one line into words, following upas's smtpd.conf rules
// with rc's quoting added so that any value can be written back:
//   - '#' outside quotes starts a comment that runs to the end of the line;
//   - spaces, tabs and commas separate words, and runs of them count as one;
//   - a backslash takes the next character literally (\# \, \\);
//   - 'single quotes' group a word, and ” inside them is one quote.
//
// Unlike upas, words keep their case; each verb lowercases what it should.
func Tokenize(line string) ([]string, error) {
	if len(line) > maxLine {
		return nil, errors.New("line too long")
	}
	var words []string
	var w strings.Builder
	inword := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '#':
			i = len(line)
		case c == ' ' || c == '\t' || c == ',' || c == '\r' || c == '\n':
			if inword {
				words = append(words, w.String())
				w.Reset()
				inword = false
			}
		case c == '\\':
			if i+1 == len(line) {
				return nil, errors.New("backslash at end of line")
			}
			i++
			w.WriteByte(line[i])
			inword = true
		case c == '\'':
			inword = true
			for i++; ; i++ {
				if i == len(line) {
					return nil, errors.New("unterminated quote")
				}
				if line[i] == '\'' {
					if i+1 < len(line) && line[i+1] == '\'' {
						w.WriteByte('\'')
						i++
						continue
					}
					break
				}
				if line[i] < ' ' && line[i] != '\t' || line[i] == 0x7f {
					return nil, errors.New("control character in line")
				}
				w.WriteByte(line[i])
			}
		case c < ' ' || c == 0x7f:
			return nil, errors.New("control character in line")
		default:
			w.WriteByte(c)
			inword = true
		}
	}
	if inword {
		words = append(words, w.String())
	}
	return words, nil
}

// Quote returns w in a form Tokenize reads back as the single word w: as it
// is when it needs no quoting, else in rc quotes.
func Quote(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t,#\\'\r\n") {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", "''") + "'"
}

// quote quotes s for an error message (errquote.Quote).
func quote(s string) string { return errquote.Quote(s) }
