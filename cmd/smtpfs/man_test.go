package main

import (
	"slices"
	"strings"
	"testing"

	"smtpfs/cmd/internal/arg"
	"smtpfs/cmd/internal/setup"
	"smtpfs/man"
	"smtpfs/smtpd/conf"
)

// TestManPage: smtpfs(8) names every flag smtpfs takes in its SYNOPSIS;
// the flags it shares with smtpd are items of smtpd(8) or of smtpfs(8),
// its own are items of smtpfs(8); and smtpfs(8) describes no flag that
// smtpfs does not take.
func TestManPage(t *testing.T) {
	const page, smtpdPage = "man8/smtpfs.8", "man8/smtpd.8"
	code := argSet(new(setup.Flags), new(listeners)).Letters()
	shared := arg.New("")
	new(setup.Flags).Register(shared)
	syn, err := man.Synopsis(page)
	if err != nil {
		t.Fatal(err)
	}
	if got := man.SynopsisFlags(syn, "smtpfs"); got != code {
		t.Errorf("%s SYNOPSIS names flags %q; smtpfs takes %q", page, got, code)
	}
	own, err1 := man.Options(page)
	smtpd, err2 := man.Options(smtpdPage)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	for _, c := range code {
		inShared := strings.ContainsRune(shared.Letters(), c)
		if !strings.ContainsRune(own, c) && !(inShared && strings.ContainsRune(smtpd, c)) {
			t.Errorf("flag -%c of smtpfs is not an item of %s (nor, shared with smtpd, of %s)", c, page, smtpdPage)
		}
	}
	for _, c := range own {
		if !strings.ContainsRune(code, c) {
			t.Errorf("%s describes -%c, which smtpfs does not take", page, c)
		}
	}
}

// TestManVerbs: every verb of the configuration and ctl grammar is an item
// of a page: the settings in smtpd(8), the runtime verbs in smtpfs(4).
func TestManVerbs(t *testing.T) {
	var all []string
	for _, p := range man.Pages() {
		tags, err := man.Tags(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, tags...)
	}
	for _, v := range conf.Verbs() {
		if !slices.Contains(all, v) {
			t.Errorf("verb %s is not an item of any page of man/ (settings go in man8/smtpd.8, runtime verbs in man4/smtpfs.4)", v)
		}
	}
}
