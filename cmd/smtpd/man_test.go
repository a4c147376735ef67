package main

import (
	"testing"

	"smtpfs/cmd/internal/setup"
	"smtpfs/man"
)

// TestManPage: smtpd(8) lists every flag smtpd takes, in its SYNOPSIS and
// as an item, and no flag it does not take.
func TestManPage(t *testing.T) {
	const page = "man8/smtpd.8"
	code := argSet(new(setup.Flags), new(string)).Letters()
	syn, err := man.Synopsis(page)
	if err != nil {
		t.Fatal(err)
	}
	if got := man.SynopsisFlags(syn, "smtpd"); got != code {
		t.Errorf("%s SYNOPSIS names flags %q; smtpd takes %q", page, got, code)
	}
	opts, err := man.Options(page)
	if err != nil {
		t.Fatal(err)
	}
	if opts != code {
		t.Errorf("%s describes flags %q; smtpd takes %q", page, opts, code)
	}
}
