// Package mlog writes the mail logs: syslog-style lines
//
//	Nov 24 15:23:01 smtpd: ehlo from 192.0.2.7 as mx.example.net
//
// appended to one file per facility (smtpd, smtp, smtp.fail, runq) in the
// mail root's log directory, and copied to a tee, which for the daemon is
// the 9P log file. Engines are handed a *log.Logger and know nothing more.
package mlog

import (
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"smtpfs/internal/errquote"
)

// MaxLine bounds one log line: longer messages are cut to MaxLine bytes
// (escapes may make them up to four times longer). Text that comes from
// the network is in many lines, and must not fill the disk.
const MaxLine = 2048

// A Log is a set of log files in one directory. It is safe for concurrent use.
type Log struct {
	dir   string
	tee   io.Writer
	Now   func() time.Time // the clock, for tests
	mu    sync.Mutex
	files map[string]*os.File
	warn  sync.Once
}

// New returns a Log writing into dir (created if missing) and copying every
// line to tee. Either may be empty or nil.
func New(dir string, tee io.Writer) *Log {
	return &Log{dir: dir, tee: tee, Now: time.Now, files: map[string]*os.File{}}
}

// Logger returns a logger whose lines go to the facility name.
func (l *Log) Logger(name string) *log.Logger {
	return log.New(&facility{l, name}, "", 0)
}

type facility struct {
	l    *Log
	name string
}

func (f *facility) Write(p []byte) (int, error) {
	f.l.write(f.name, p)
	return len(p), nil
}

func (l *Log) write(name string, msg []byte) {
	line := l.format(name, msg)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dir != "" {
		if f, err := l.file(name); err == nil {
			f.Write(line)
		} else {
			l.warn.Do(func() { fmt.Fprintf(os.Stderr, "mlog: %v\n", err) })
		}
	}
	if l.tee != nil {
		l.tee.Write(line)
	}
}

// format builds "Mmm dd hh:mm:ss name: msg\n". Control characters in msg
// (a client's HELO name, a server's reply) are shown escaped, C1 controls
// and bytes that are not UTF-8 among them (errquote.Escape), so that
// nobody can forge lines or send a terminal that shows the log its
// commands; tabs stay. One trailing newline is dropped, and msg is cut
// to MaxLine bytes, on a character's boundary.
func (l *Log) format(name string, msg []byte) []byte {
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	cut := len(msg) > MaxLine
	if cut {
		n := MaxLine
		for n > MaxLine-utf8.UTFMax && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n]
	}
	b := make([]byte, 0, 32+len(name)+len(msg))
	b = l.Now().AppendFormat(b, "Jan _2 15:04:05 ")
	b = append(b, name...)
	b = append(b, ": "...)
	b = errquote.AppendEscaped(b, string(msg))
	if cut {
		b = append(b, "..."...)
	}
	return append(b, '\n')
}

func (l *Log) file(name string) (*os.File, error) {
	if f := l.files[name]; f != nil {
		return f, nil
	}
	if err := os.MkdirAll(l.dir, 0750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(l.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0640)
	if err != nil {
		return nil, err
	}
	l.files[name] = f
	return f, nil
}

// Reopen closes the files so that the next line opens them again, for log
// rotation (the daemon calls it on SIGHUP).
func (l *Log) Reopen() error { return l.Close() }

// Close closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for name, f := range l.files {
		if e := f.Close(); e != nil && err == nil {
			err = e
		}
		delete(l.files, name)
	}
	return err
}
