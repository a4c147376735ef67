// Testsum reads the events of `go test -json` on its standard input and
// prints what plain `go test` prints: build errors, the output of each
// test that failed (or was running when its package died: a timeout, a
// crash), and each package's closing line (ok, FAIL, ?). Tests that
// passed stay quiet. What plain go test keeps to itself, the tests that
// were skipped and why, it writes at the end, or with -skips to a file,
// one test a line:
//
//	smtpfs/test TestNinepFreshMachine: ninep_namespace_test.go:44: 127.0.0.1:2525, the default port, is busy
//
// Lines that are not JSON (a go command that failed early) are passed on
// as they are. test/run uses it; the exit status is go test's, not its.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// An event is a line of go test -json (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // of build-output
	Test       string
	Output     string
}

// A skip is a test that was skipped, and its reason.
type skip struct{ pkg, test, why string }

func main() {
	skips := flag.String("skips", "", "write the skipped tests to this file instead of standard output")
	flag.Parse()
	sk, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
		os.Exit(2)
	}
	w := io.Writer(os.Stdout)
	if *skips != "" {
		f, err := os.Create(*skips)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testsum: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
		w = f
	}
	writeSkips(w, sk)
}

// summarize copies the events of r to w as plain go test would print
// them, and returns the tests that were skipped, in the order they ended.
func summarize(r io.Reader, w io.Writer) ([]skip, error) {
	type key struct{ pkg, test string }
	held := map[key][]string{} // output of tests still running
	var order []key            // the tests in held, in the order they started
	var skips []skip
	// flush shows the output of pkg's tests that are still running when
	// the package fails: they were cut short (a timeout, a crash).
	flush := func(pkg string) {
		for _, o := range order {
			if o.pkg == pkg {
				writeLines(w, held[o])
				delete(held, o)
			}
		}
		order = slices.DeleteFunc(order, func(o key) bool { return o.pkg == pkg })
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, sc.Text())
			continue
		}
		k := key{e.Package, e.Test}
		switch {
		case e.Action == "build-output":
			io.WriteString(w, e.Output)
		case e.Test == "" && e.Action == "output":
			if strings.HasPrefix(e.Output, "FAIL") {
				flush(e.Package)
			}
			if e.Output != "PASS\n" {
				io.WriteString(w, e.Output)
			}
		case e.Test == "" && e.Action == "fail":
			flush(e.Package)
		case e.Test == "":
		case e.Action == "output":
			if _, ok := held[k]; !ok {
				order = append(order, k)
			}
			held[k] = append(held[k], e.Output)
		case e.Action == "fail" || e.Action == "pass" || e.Action == "skip":
			switch e.Action {
			case "fail":
				writeFailure(w, held[k])
			case "skip":
				skips = append(skips, skip{e.Package, e.Test, reason(held[k])})
			}
			delete(held, k)
			order = slices.DeleteFunc(order, func(o key) bool { return o == k })
		}
	}
	return skips, sc.Err()
}

// writeLines writes a test's output without the framing of -v (=== RUN
// and the like), which plain go test does not print.
func writeLines(w io.Writer, lines []string) {
	for _, l := range lines {
		if !strings.HasPrefix(l, "=== ") {
			io.WriteString(w, l)
		}
	}
}

// writeFailure writes the output of a failed test as plain go test does:
// its --- FAIL line first, then what it said.
func writeFailure(w io.Writer, lines []string) {
	isFail := func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") }
	for _, l := range lines {
		if isFail(l) {
			io.WriteString(w, l)
		}
	}
	writeLines(w, slices.DeleteFunc(slices.Clone(lines), isFail))
}

// reason is what a skipped test said, on one line: its t.Log and t.Skip
// lines, without the framing.
func reason(lines []string) string {
	var why []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
			why = append(why, l)
		}
	}
	if len(why) == 0 {
		return "(no reason given)"
	}
	return strings.Join(why, "; ")
}

func writeSkips(w io.Writer, skips []skip) {
	for _, s := range skips {
		fmt.Fprintf(w, "%s %s: %s\n", s.pkg, s.test, s.why)
	}
}
