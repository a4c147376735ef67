package man

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestPagesRender: every page formats with groff's man macros without a
// warning, as `man -l` would show it.
func TestPagesRender(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("no groff (Debian's groff-base) to format the pages")
	}
	if len(Pages()) != 4 {
		t.Errorf("pages %q, want the four of smtpfs(4), smtpfs(8), smtpd(8), smtp(8)", Pages())
	}
	for _, p := range Pages() {
		var out, errs bytes.Buffer
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", filepath.FromSlash(p))
		cmd.Stdout, cmd.Stderr = &out, &errs
		if err := cmd.Run(); err != nil || errs.Len() > 0 || out.Len() > 0 {
			t.Errorf("groff -man -ww %s: %v\n%s%s", p, err, errs.Bytes(), out.Bytes())
		}
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`.B \-a`, "-a"},
		{`.BI \-c " certfile"`, "-c certfile"},
		{`.BI maxsize " size"`, "maxsize size"},
		{`.BR smtpd (8),`, "smtpd(8),"},
		{`.B "mkbox off"`, "mkbox off"},
		{`.IB root /lib/smtpd.conf\fR.`, "root/lib/smtpd.conf."},
		{`plain \fBbold\fP \e and \&.dot`, `plain bold \ and .dot`},
		{`.SH DESCRIPTION`, ""},
		{`.\" a comment`, ""},
	} {
		if got := Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSynopsisFlags(t *testing.T) {
	syn := "smtp [ -aAdf ] [ -b busted-mx ] ... [ -h host ] [ .domain ] destaddr sender rcpt-list"
	if got := SynopsisFlags(syn, "smtp"); got != "Aabdfh" {
		t.Errorf("SynopsisFlags = %q, want Aabdfh", got)
	}
	if got := SynopsisFlags(syn, "smtpd"); got != "" {
		t.Errorf("SynopsisFlags of a command not there = %q", got)
	}
}

// TestTags reads the items of a page: options and verbs, fonts and
// escapes taken out, with .PD and comments between .TP and its tag; and
// the synopsis, up to the next section.
func TestTags(t *testing.T) {
	page := `.TH X 8
.SH NAME
x \- a page
.SH SYNOPSIS
.B x
[
.B \-ab
]
[
.BI \-c " file"
]
.SH DESCRIPTION
Text with
.B \-z
in it is not an item.
.TP
.B \-a
first.
.TP 8
.PD 0
.\" a comment
.BI \-c " file"
.TP
.BR maxsize " size"
.PD
.TP
\fBqueue.d/\fP
a file.
`
	got, err := tags([]byte(page))
	if want := []string{"-a", "-c", "maxsize", "queue.d/"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("tags = %q, %v; want %q", got, err, want)
	}
	if syn := synopsis([]byte(page)); syn != "x [ -ab ] [ -c file ]" {
		t.Errorf("synopsis = %q", syn)
	}
	if _, err := Tags("man8/nosuch.8"); err == nil {
		t.Error("Tags of a page that is not there: no error")
	}
}
