package main

import (
	"testing"

	"smtpfs/man"
)

// TestManPage: smtp(8) lists every flag smtp takes, in its SYNOPSIS and as
// an item, and no flag it does not take.
func TestManPage(t *testing.T) {
	const page = "man8/smtp.8"
	code := argSet(&flags{}).Letters()
	syn, err := man.Synopsis(page)
	if err != nil {
		t.Fatal(err)
	}
	if got := man.SynopsisFlags(syn, "smtp"); got != code {
		t.Errorf("%s SYNOPSIS names flags %q; smtp takes %q", page, got, code)
	}
	opts, err := man.Options(page)
	if err != nil {
		t.Fatal(err)
	}
	if opts != code {
		t.Errorf("%s describes flags %q; smtp takes %q", page, opts, code)
	}
}
