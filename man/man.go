// Package man holds the manual pages, in troff -man as Plan 9 writes
// them, and reads back what they define, so that tests can hold the
// pages and the code to each other: every flag and every ctl verb the
// code knows must be an item of a page, and every flag in a SYNOPSIS must
// be one the program takes.
//
// An item is a .TP paragraph; its tag is the first word of the line after
// the .TP (.B -a, .BI maxsize " size"). A page's synopsis is the plain
// text of its SYNOPSIS section.
package man

import (
	"bufio"
	"bytes"
	"embed"
	"slices"
	"strings"
)

//go:embed man4/*.4 man8/*.8
var pages embed.FS

// Pages returns the names of the pages, e.g. "man8/smtpd.8".
func Pages() []string {
	var names []string
	for _, dir := range []string{"man4", "man8"} {
		es, _ := pages.ReadDir(dir)
		for _, e := range es {
			names = append(names, dir+"/"+e.Name())
		}
	}
	return names
}

// Tags returns the tag of each item of page, in order, with troff's
// escapes and fonts taken out ("-a", "defaultdomain", "queue.d/").
func Tags(page string) ([]string, error) {
	b, err := pages.ReadFile(page)
	if err != nil {
		return nil, err
	}
	return tags(b)
}

func tags(b []byte) ([]string, error) {
	var tags []string
	inTP := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == ".TP" || strings.HasPrefix(l, ".TP "):
			inTP = true
		case !inTP:
		case strings.HasPrefix(l, `.\"`) || strings.HasPrefix(l, ".PD"):
			// a comment or paragraph distance between .TP and its tag
		default:
			inTP = false
			if w := strings.Fields(Text(l)); len(w) > 0 {
				tags = append(tags, w[0])
			}
		}
	}
	return tags, sc.Err()
}

// Options returns the letters of page's items that are options (a tag
// like -a or -c), sorted.
func Options(page string) (string, error) {
	tags, err := Tags(page)
	var letters []byte
	for _, t := range tags {
		if len(t) == 2 && t[0] == '-' {
			letters = append(letters, t[1])
		}
	}
	slices.Sort(letters)
	return string(slices.Compact(letters)), err
}

// Synopsis returns the plain text of page's SYNOPSIS section.
func Synopsis(page string) (string, error) {
	b, err := pages.ReadFile(page)
	if err != nil {
		return "", err
	}
	return synopsis(b), nil
}

func synopsis(b []byte) string {
	var words []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, ".SH") {
			in = strings.TrimSpace(strings.Trim(strings.TrimPrefix(l, ".SH"), ` "`)) == "SYNOPSIS"
			continue
		}
		if in {
			words = append(words, strings.Fields(Text(l))...)
		}
	}
	return strings.Join(words, " ")
}

// SynopsisFlags returns the letters of the flags that a synopsis names
// after the command cmd, sorted and once each: the letters of every word
// that starts with a minus sign (-adDfgprs, -c). Arguments, as in
// [ .domain ], are not flags.
func SynopsisFlags(synopsis, cmd string) string {
	var letters []byte
	in := false
	for _, w := range strings.Fields(synopsis) {
		switch {
		case w == cmd:
			in = true
		case in && len(w) > 1 && w[0] == '-':
			letters = append(letters, w[1:]...)
		}
	}
	slices.Sort(letters)
	return string(slices.Compact(letters))
}

// Text returns the words of one line of troff source as printed: the
// request name of a font macro dropped, its quotes taken off, and the
// escapes \- \e \& \| \^ \(em and \f? turned into what they print.
func Text(line string) string {
	if strings.HasPrefix(line, `.\"`) {
		return ""
	}
	if strings.HasPrefix(line, ".") {
		name, rest, _ := strings.Cut(line[1:], " ")
		switch name {
		case "B", "I", "R", "BI", "IB", "BR", "RB", "IR", "RI", "SM", "SB":
			line = strings.Join(args(rest), " ")
			if len(name) == 2 { // alternating fonts: the words join up
				line = strings.Join(args(rest), "")
			}
		default:
			return ""
		}
	}
	r := strings.NewReplacer(`\-`, "-", `\e`, `\`, `\&`, "", `\|`, "", `\^`, "", `\(em`, "-", `\(en`, "-",
		`\fB`, "", `\fI`, "", `\fR`, "", `\fP`, "", `\fL`, "", `\fC`, "", `\fS`, "", `\ `, " ", `\(bu`, "*")
	return r.Replace(line)
}

// args splits the arguments of a macro as troff does: by spaces, with
// double quotes grouping.
func args(s string) []string {
	var out []string
	for s = strings.TrimLeft(s, " "); s != ""; s = strings.TrimLeft(s, " ") {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				out = append(out, s[1:])
				break
			}
			out, s = append(out, s[1:end+1]), s[end+2:]
			continue
		}
		w, rest, _ := strings.Cut(s, " ")
		out, s = append(out, w), rest
	}
	return out
}
