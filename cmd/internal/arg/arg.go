// Package arg parses command lines the way Plan 9's ARGBEGIN does, so that
// upas's usage works unchanged: single-letter flags that may be combined
// (-fg), values either attached (-kip) or in the next argument (-k ip),
// repeatable list flags, and "--" to end the flags.
package arg

import (
	"fmt"
	"slices"
)

type kind int

const (
	boolFlag kind = iota
	stringFlag
	listFlag
)

type flag struct {
	kind kind
	b    *bool
	s    *string
	l    *[]string
}

// A Set is a table of flags for one program.
type Set struct {
	Usage string // usage line, without "usage: "
	flags map[byte]*flag
	seen  map[byte]bool
}

// New returns an empty Set whose usage line is usage.
func New(usage string) *Set {
	return &Set{Usage: usage, flags: map[byte]*flag{}, seen: map[byte]bool{}}
}

// Bool defines a flag that takes no value and sets *p.
func (s *Set) Bool(c byte, p *bool) { s.flags[c] = &flag{kind: boolFlag, b: p} }

// String defines a flag whose value is stored in *p; the last one given wins.
func (s *Set) String(c byte, p *string) { s.flags[c] = &flag{kind: stringFlag, s: p} }

// List defines a repeatable flag whose values are appended to *p.
func (s *Set) List(c byte, p *[]string) { s.flags[c] = &flag{kind: listFlag, l: p} }

// Letters returns the letters of the flags defined, in byte order: what
// the manual's SYNOPSIS and option list must name.
func (s *Set) Letters() string {
	var b []byte
	for c := range s.flags {
		b = append(b, c)
	}
	slices.Sort(b)
	return string(b)
}

// Seen reports whether flag c appeared on the command line.
func (s *Set) Seen(c byte) bool { return s.seen[c] }

// Parse parses the flags at the start of args (without the program name)
// and returns the arguments that follow them.
func (s *Set) Parse(args []string) ([]string, error) {
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			return args[1:], nil
		}
		if len(a) < 2 || a[0] != '-' {
			return args, nil
		}
		args = args[1:]
		for i := 1; i < len(a); i++ {
			c := a[i]
			f, ok := s.flags[c]
			if !ok {
				return nil, fmt.Errorf("unknown flag -%c", c)
			}
			s.seen[c] = true
			if f.kind == boolFlag {
				*f.b = true
				continue
			}
			val := a[i+1:]
			if val == "" {
				if len(args) == 0 {
					return nil, fmt.Errorf("flag -%c needs a value", c)
				}
				val, args = args[0], args[1:]
			}
			if f.kind == stringFlag {
				*f.s = val
			} else {
				*f.l = append(*f.l, val)
			}
			break
		}
	}
	return args, nil
}
