package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"smtpfs/smtp"
)

// maxMailerOutput bounds what we keep of a mailer's stdout and stderr;
// the rest is read and thrown away, so the mailer never blocks on a full
// pipe (upas.md §9.16).
const maxMailerOutput = 64 << 10

// maxMailerLines bounds the 450- lines made from a mailer's stderr.
const maxMailerLines = 10

// runMailer hands the message to the mailer (mailer, -m) as upas does
// (upas.md §2.12): "mailer... -r -- rcpt..." run directly, no shell, the
// recipients in bang form; on its standard input a "From sender date
// remote from" line, then the message with LF line ends. It is killed
// after datatimeout. Its exit maps to the reply: 0 is success (nil); a
// stderr that says "mail refused" is 554 5.7.1 with its first line; any
// other failure is 450 with a line per stderr line.
//
// "--" ends the options, so that no recipient is taken for one: upas
// send reads its options with Plan 9's ARGBEGIN, which stops at "--", as
// getopt(3) does. No recipient begins with '-' anyway: MAIL and RCPT
// refuse such addresses (dashed).
func (s *session) runMailer(msg io.Reader) error {
	argv := append(append([]string(nil), s.cfg.Mailer...), "-r", "--")
	for _, r := range s.rcpts {
		argv = append(argv, r.bang)
	}
	ctx, cancel := context.WithTimeout(s.srv.killCtx, s.cfg.DataTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	from := fmt.Sprintf("From %s %s remote from \n", s.from.Bang(), s.srv.Now().Format("Mon Jan _2 15:04:05 -0700 2006"))
	cmd.Stdin = io.MultiReader(strings.NewReader(from), &lfReader{r: msg})
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Dir = s.srv.Root
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	lines := outputLines(stderr.b.Bytes())
	var ee *exec.ExitError
	switch {
	case err == nil:
		if len(lines) > 0 {
			s.logf("%s returned good status, but said: %s", argv[0], lines[0])
		}
		return nil
	case !errors.As(err, &ee):
		s.logf("++[%s/%s] %s: running %s: %v", s.helo, s.remote, s.from.Bang(), argv[0], err)
		return smtp.Replyf(450, "4.3.2", "We're busy right now, try later")
	}
	first := ""
	if len(lines) > 0 {
		first = lines[0]
	}
	s.logf("++[%s/%s] %s %s returned '%v' %s", s.helo, s.remote, s.from.Bang(), argv[0], ee.ProcessState, first)
	if bytes.Contains(stderr.b.Bytes(), []byte("mail refused")) {
		return smtp.Replyf(554, "5.7.1", "%s", first)
	}
	return &smtp.Reply{Code: 450, Enh: "4.0.0", Lines: append(lines, "mail process terminated abnormally")}
}

// outputLines returns the non-empty lines of a mailer's output, made safe
// for a reply: printable ASCII, at most 200 octets, at most maxMailerLines.
func outputLines(b []byte) []string {
	var l []string
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.Map(func(r rune) rune {
			if r < ' ' || r > '~' {
				return -1
			}
			return r
		}, line)
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if len(line) > 200 {
			line = line[:200]
		}
		if l = append(l, line); len(l) == maxMailerLines {
			break
		}
	}
	return l
}

// capped keeps the first maxMailerOutput bytes written to it.
type capped struct{ b bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxMailerOutput - c.b.Len(); room > 0 {
		c.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// dump saves a blocked message as <Root>/queue.dump/<Mon><day>/<n> and
// returns its name.
func (s *Server) dump(msg io.Reader) (string, error) {
	dir := filepath.Join(s.Root, "queue.dump", s.Now().Format("Jan2"))
	if err := os.MkdirAll(dir, 0700); err != nil {
		return "", err
	}
	n := s.Now().UnixNano()
	for range 100 {
		name := filepath.Join(dir, strconv.FormatInt(n, 10))
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0600)
		if os.IsExist(err) {
			n++
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = io.Copy(f, msg)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return name, err
	}
	return "", errors.New("no free name in " + dir)
}
