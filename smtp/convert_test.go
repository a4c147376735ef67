package smtp

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testConversion is a conversion with a fixed clock and fixed random bytes.
func testConversion() Conversion {
	return Conversion{
		Addresser: Addresser{HostDomain: "gnot.example.com", Domain: "example.com"},
		From:      "glenda@gnot.example.com",
		Rcpts:     []string{"bob@example.org", "@a.com:carol@b.com"},
		Now:       func() time.Time { return time.Date(2024, 3, 27, 23, 47, 45, 0, time.UTC) },
		Rand:      bytes.NewReader(bytes.Repeat([]byte{0xab}, 16)),
	}
}

const (
	testID   = "Message-ID: <ABABABABABABABABABABABABABABABAB@gnot.example.com>\n"
	testFrom = "From: glenda@gnot.example.com\n"
	testTo   = "To: bob@example.org, <@a.com:carol@b.com>\n"
	testDate = "Date: Wed, 27 Mar 2024 23:47:45 +0000\n"
)

func TestConvert(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"nothing there", "hello\n",
			testID + testFrom + testTo + testDate + "\nhello\n"},
		{"empty message", "",
			testID + testFrom + testTo + testDate + "\n"},
		{"header only", "Subject: hi\n",
			testID + testFrom + testTo + testDate + "Subject: hi\n\n"},
		{"all there", "Message-ID: <x@y>\nFrom: a@b.c\nTo: d@e.f\nDate: whenever\n\nbody\n",
			"Message-ID: <x@y>\nFrom: a@b.c\nTo: d@e.f\nDate: whenever\n\nbody\n"},
		{"cc counts as destination", "Message-ID: <x@y>\nFrom: a@b.c\nCc: d@e.f\nDate: d\n\nbody\n",
			"Message-ID: <x@y>\nFrom: a@b.c\nCc: d@e.f\nDate: d\n\nbody\n"},
		{"upas envelope line", "From glenda Wed Mar 20 10:00:00 +0100 2024 remote from gnot\nSubject: x\n\nbody\n",
			testID + testFrom + testTo + "Date: Wed, 20 Mar 2024 10:00:00 +0100\nSubject: x\n\nbody\n"},
		{"mbox envelope line", "From glenda Wed Mar 20 10:00:00 2024\nSubject: x\n\nbody\n",
			testID + testFrom + testTo + "Date: Wed, 20 Mar 2024 10:00:00 +0000\nSubject: x\n\nbody\n"},
		{"bad envelope date", "From glenda yesterday\nSubject: x\n\nbody\n",
			testID + testFrom + testTo + testDate + "Subject: x\n\nbody\n"},
		{"bang paths and bare names", "Message-ID: <x@y>\nDate: d\nFrom: glenda\nTo: example.org!bob, kremvax!ken\nCc: Rob <rob>, (c) x.org!y.org!z\nSubject: bob\n\nbody\n",
			"Message-ID: <x@y>\nDate: d\nFrom: glenda@gnot.example.com\nTo: bob@example.org, ken@kremvax.example.com\nCc: Rob <rob@gnot.example.com>, (c) @x.org:z@y.org\nSubject: bob\n\nbody\n"},
		{"folded field", "Message-ID: <x@y>\nDate: d\nFrom: a@b.c\nTo: bob,\n\tken\n\nbody\n",
			"Message-ID: <x@y>\nDate: d\nFrom: a@b.c\nTo: bob@gnot.example.com,\n\tken@gnot.example.com\n\nbody\n"},
		{"crlf and lone cr", "Message-ID: <x@y>\r\nDate: d\r\nFrom: a@b.c\r\nTo: d@e.f\r\n\r\nline\r\nother\rlast",
			"Message-ID: <x@y>\nDate: d\nFrom: a@b.c\nTo: d@e.f\n\nline\nother\nlast"},
		{"not a field ends the header", "Message-ID: <x@y>\nDate: d\nFrom: a@b.c\nTo: d@e.f\nthis is body\nmore\n",
			"Message-ID: <x@y>\nDate: d\nFrom: a@b.c\nTo: d@e.f\n\nthis is body\nmore\n"},
		{"dots untouched", "Message-ID: <x@y>\nDate: d\nFrom: a@b.c\nTo: d@e.f\n\n.\n..x\n",
			"Message-ID: <x@y>\nDate: d\nFrom: a@b.c\nTo: d@e.f\n\n.\n..x\n"},
	}
	for _, tt := range tests {
		r, err := Convert(strings.NewReader(tt.in), testConversion())
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		got, _ := io.ReadAll(r)
		if string(got) != tt.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tt.name, got, tt.want)
		}
	}
}

func TestConvertNullSender(t *testing.T) {
	cv := testConversion()
	cv.From = ""
	r, _ := Convert(strings.NewReader("\nbody\n"), cv)
	got, _ := io.ReadAll(r)
	if !strings.Contains(string(got), "\nFrom: Postmaster@gnot.example.com\n") {
		t.Errorf("null sender: got %q, want From: Postmaster@gnot.example.com", got)
	}
}

func TestConvertToFolds(t *testing.T) {
	cv := testConversion()
	cv.Rcpts = nil
	for i := 0; i < 20; i++ {
		cv.Rcpts = append(cv.Rcpts, "someone.with.a.long.name@example.org")
	}
	r, _ := Convert(strings.NewReader("\n"), cv)
	got, _ := io.ReadAll(r)
	for _, l := range strings.Split(string(got), "\n") {
		if len(l) > 78 {
			t.Errorf("line of %d bytes: %q", len(l), l)
		}
	}
	if n := strings.Count(string(got), "someone"); n != 20 {
		t.Errorf("%d recipients in To:, want 20", n)
	}
}

// TestConvertHugeHeader: a header beyond maxHeader goes out untouched,
// but for the envelope line and line ends.
func TestConvertHugeHeader(t *testing.T) {
	big := "From glenda Wed Mar 20 10:00:00 2024\nX-Big: " + strings.Repeat("x", maxHeader) + "\nTo: bob\n\nbody\n"
	r, err := Convert(strings.NewReader(big), testConversion())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	want := big[strings.IndexByte(big, '\n')+1:]
	if string(got) != want {
		t.Errorf("huge header changed: %d bytes, want %d; starts %q", len(got), len(want), clip(string(got)))
	}
}

// TestConvertReadsHeaderOnly: the body is read only as the result is.
func TestConvertReadsHeaderOnly(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("Subject: x\n\n"))
		// The body never comes, and Convert must not wait for it.
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Convert(pr, testConversion())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Convert waited for the body")
	}
	pw.Close()
}

// FuzzConvert checks what matters on the wire for any input: after
// conversion and DATA encoding there is no bare CR or LF, the only
// CRLF.CRLF is the end, and the header is a header.
func FuzzConvert(f *testing.F) {
	for _, s := range []string{
		"", "hello\n", "Subject: x\n\nbody\n", "From glenda Wed Mar 20 10:00:00 2024\nTo: a!b\n\n.\n",
		"To: \"x, y\" <a>, (c) b\r\n\r\nx\ry\n.\r\n", "From: <>\nCc: g: a, b;\n\n", "X:\n \n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := Convert(strings.NewReader(in), testConversion())
		if err != nil {
			t.Fatal(err)
		}
		conv, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(conv, '\r') >= 0 {
			t.Fatalf("CR left in %q", conv)
		}
		if !bytes.Contains(conv, []byte("\n\n")) {
			t.Fatalf("no empty line after the header in %q", conv)
		}
		var wire bytes.Buffer
		d := newDataWriter(&wire, nil)
		d.Write(conv)
		d.Close()
		w := wire.Bytes()
		if !bytes.HasSuffix(w, []byte("\r\n.\r\n")) && !bytes.Equal(w, []byte(".\r\n")) {
			t.Fatalf("no final dot: %q", w)
		}
		body := w[:len(w)-3]
		if bytes.Contains(body, []byte("\r\n.\r\n")) || bytes.HasPrefix(body, []byte(".\r\n")) {
			t.Fatalf("early end of data in %q", w)
		}
		for i, c := range w {
			if c == '\n' && (i == 0 || w[i-1] != '\r') || c == '\r' && (i+1 == len(w) || w[i+1] != '\n') {
				t.Fatalf("bare CR or LF at %d in %q", i, w)
			}
		}
	})
}

// TestConvertLongFolded: a header of almost maxHeader bytes folded into
// short lines is converted in one pass, its continuation lines kept (line
// by line appending copied the field again for each: 30-50 s of CPU for
// one message).
func TestConvertLongFolded(t *testing.T) {
	n := (maxHeader - 100) / 3
	msg := "From: glenda@gnot.example.com\nSubject: s\n" + strings.Repeat(" x\n", n) + "\nbody\n"
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := Convert(strings.NewReader(msg), testConversion())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "\nSubject: s\n"+strings.Repeat(" x\n", n)+"\nbody\n") {
		t.Errorf("the folded Subject did not come through whole")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("converting a 1 MB header allocated %d MB", alloc>>20)
	}
}
