package main

import (
	"os"
	"strings"
	"testing"
)

// TestSummarize feeds the events of a real `go test -json` run
// (testdata/events.json: a package that passes with a skipped test and a
// skipped subtest, one with a failing test, one that does not build, one
// whose test times out) and checks that what plain go test shows is
// shown, in its order, and nothing else; and that the skips come back
// with their reasons.
func TestSummarize(t *testing.T) {
	f, err := os.Open("testdata/events.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	skips, err := summarize(f, &out)
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	// In this order, as go test prints them.
	want := []string{
		"# fx/c [fx/c.test]\nc/c_test.go:5:33: undefined: undefined\n",
		"--- FAIL: TestFail (",
		"    b_test.go:6: what went before\n    b_test.go:7: got 1, want 2\nFAIL\nFAIL\tfx/b\t0.019s\n",
		"FAIL\tfx/c [build failed]\n",
		"ok  \tfx/a\t0.032s\n",
		"panic: test timed out after 3s\n",
		"fx/d.TestHangs(",
		"FAIL\tfx/d\t3.020s\n",
	}
	rest := got
	for _, w := range want {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("output lacks %q (in order)\n%s", w, got)
		}
		rest = rest[i+len(w):]
	}
	for _, bad := range []string{"noise of a passing test", "=== RUN", "--- PASS", "--- SKIP", "\nPASS\n", "needs root"} {
		if strings.Contains(got, bad) {
			t.Errorf("output has %q, which plain go test would not print\n%s", bad, got)
		}
	}
	var sk strings.Builder
	writeSkips(&sk, skips)
	if want := "fx/a TestSkip: a_test.go:7: needs root, to run a client as another user\n" +
		"fx/a TestSub/one: a_test.go:10: port 2525 is busy\n"; sk.String() != want {
		t.Errorf("skips:\n%s\nwant:\n%s", sk.String(), want)
	}
}

// TestSummarizeNotJSON: a line that is not an event (the go command's own
// complaint) is passed on; a skip without a word gets a placeholder.
func TestSummarizeNotJSON(t *testing.T) {
	in := "go: updates to go.mod needed\n" +
		`{"Action":"output","Package":"p","Test":"TestQuiet","Output":"--- SKIP: TestQuiet (0.00s)\n"}` + "\n" +
		`{"Action":"skip","Package":"p","Test":"TestQuiet"}` + "\n"
	var out strings.Builder
	skips, err := summarize(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "go: updates to go.mod needed\n" {
		t.Errorf("output %q", out.String())
	}
	if len(skips) != 1 || skips[0] != (skip{"p", "TestQuiet", "(no reason given)"}) {
		t.Errorf("skips %+v", skips)
	}
}
