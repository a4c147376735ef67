package smtp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxNetrc bounds a netrc file.
const maxNetrc = 1 << 20

// A NetrcEntry is one machine (or the default) of a netrc file.
type NetrcEntry struct {
	Machine  string // "" for default
	Login    string
	Password string
}

// ParseNetrc parses a netrc file (the ftp(1) format): tokens separated by
// spaces, tabs and newlines; "machine name", "default", then "login",
// "password", "account" and their values; "macdef name" and its lines up
// to an empty line are skipped. A token may be in double quotes, with
// backslash escapes. "#" at the start of a token comments out the rest of
// the line.
func ParseNetrc(text string) ([]NetrcEntry, error) {
	toks := netrcTokens(text)
	var entries []NetrcEntry
	var cur *NetrcEntry
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		value := func() (string, error) {
			if i+1 >= len(toks) {
				return "", fmt.Errorf("invalid netrc: %s without a value", t.s)
			}
			i++
			return toks[i].s, nil
		}
		switch t.s {
		case "machine":
			m, err := value()
			if err != nil {
				return nil, err
			}
			entries = append(entries, NetrcEntry{Machine: m})
			cur = &entries[len(entries)-1]
		case "default":
			entries = append(entries, NetrcEntry{})
			cur = &entries[len(entries)-1]
		case "login", "password", "account":
			v, err := value()
			if err != nil {
				return nil, err
			}
			if cur == nil {
				return nil, fmt.Errorf("invalid netrc: %s before machine", t.s)
			}
			switch t.s {
			case "login":
				cur.Login = v
			case "password":
				cur.Password = v
			}
		case "macdef":
			// The macro runs to the first empty line after this one.
			end := strings.Index(text[t.end:], "\n\n")
			if end < 0 {
				return entries, nil
			}
			for i+1 < len(toks) && toks[i+1].start < t.end+end {
				i++
			}
		default:
			return nil, fmt.Errorf("invalid netrc: unexpected %q", t.s)
		}
	}
	return entries, nil
}

type netrcToken struct {
	s          string
	start, end int
}

func netrcTokens(text string) []netrcToken {
	var toks []netrcToken
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '#':
			for i < len(text) && text[i] != '\n' {
				i++
			}
			continue
		}
		start := i
		var b strings.Builder
		if c == '"' {
			for i++; i < len(text) && text[i] != '"'; i++ {
				if text[i] == '\\' && i+1 < len(text) {
					i++
				}
				b.WriteByte(text[i])
			}
			i++
		} else {
			for ; i < len(text) && !strings.ContainsRune(" \t\r\n", rune(text[i])); i++ {
				if text[i] == '\\' && i+1 < len(text) {
					i++
				}
				b.WriteByte(text[i])
			}
		}
		toks = append(toks, netrcToken{b.String(), start, min(i, len(text))})
	}
	return toks
}

// LookupNetrc returns the credentials for machine: the first entry for it
// whose login is user (any login when user is ""), else the default entry.
func LookupNetrc(entries []NetrcEntry, machine, user string) (NetrcEntry, bool) {
	var def *NetrcEntry
	for i, e := range entries {
		if user != "" && e.Login != user {
			continue
		}
		if e.Machine == "" && def == nil {
			def = &entries[i]
		}
		if e.Machine != "" && strings.EqualFold(e.Machine, machine) {
			return e, true
		}
	}
	if def != nil {
		return *def, true
	}
	return NetrcEntry{}, false
}

// ReadNetrc reads and parses a netrc file. Like ftp(1), it refuses a file
// that others may read when it holds a password.
func ReadNetrc(file string) ([]NetrcEntry, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxNetrc+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxNetrc {
		return nil, fmt.Errorf("%s: too long", file)
	}
	entries, err := ParseNetrc(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0077 != 0 {
		for _, e := range entries {
			if e.Password != "" {
				return nil, fmt.Errorf("%s: %w", file, errNetrcMode)
			}
		}
	}
	return entries, nil
}

var errNetrcMode = errors.New("permission denied: a netrc with passwords must not be readable by group or others")
