package queue

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"smtpfs/smtp"
)

func TestParseEnvelope(t *testing.T) {
	tests := []struct {
		name, header string
		from         string
		rcpts        []string
	}{
		{"from line", "From alice@example.org Mon Jun  2 10:00:00 UTC 2025\nFrom: Other <other@example.org>\nTo: bob@example.com\n",
			"alice@example.org", []string{"bob@example.com"}},
		{"bang path", "From example.org!alice Mon Jun  2 10:00:00 UTC 2025 remote from \nTo: bob@example.com\n",
			"alice@example.org", []string{"bob@example.com"}},
		{"bare from line", "From glenda Mon Jun  2 10:00:00 UTC 2025\nTo: rob\n", "glenda@here.test", []string{"rob@here.test"}},
		// upas: an unqualified name is a local user, wherever an address
		// may stand.
		{"bare and qualified", "From: glenda\nTo: rob, ken@example.com\n", "glenda@here.test", []string{"rob@here.test", "ken@example.com"}},
		{"bare in brackets", "From: Glenda <glenda>\nTo: Rob <rob>\nCc: rob, Ken Thompson <ken>\n",
			"glenda@here.test", []string{"rob@here.test", "ken@here.test"}},
		{"bare in a group", "From: glenda\nTo: unix: ken, dmr;, rob.pike\nBcc: sape (the hidden one)\n",
			"glenda@here.test", []string{"ken@here.test", "dmr@here.test", "rob.pike@here.test", "sape@here.test"}},
		{"from header", "From: \"Alice A.\" <alice@example.org>\r\nTo: Bob <bob@example.com>, carol@example.net\r\nCc: dave@example.com\r\nBcc: eve@example.com\r\n",
			"alice@example.org", []string{"bob@example.com", "carol@example.net", "dave@example.com", "eve@example.com"}},
		{"folded", "From: alice@example.org\nTo: bob@example.com,\n  carol@example.net\nSubject: x\n",
			"alice@example.org", []string{"bob@example.com", "carol@example.net"}},
		{"groups", "From: alice@example.org\nTo: undisclosed-recipients:;\nCc: Team: bob@example.com, Carol <carol@example.net>;\n",
			"alice@example.org", []string{"bob@example.com", "carol@example.net"}},
		{"encoded name", "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>\nTo: =?utf-8?q?Zo=C3=AB?= <zoe@example.de>\n",
			"joerg@example.de", []string{"zoe@example.de"}},
		{"repeats", "From: a@example.org\nTo: b@example.com, B@Example.COM\nCc: b@EXAMPLE.com\nBcc: c@example.com\nTo: c@example.com\n",
			"a@example.org", []string{"b@example.com", "B@Example.COM", "c@example.com"}},
		{"quoted local", "From: a@example.org\nTo: \"john doe\"@example.com\n", "a@example.org", []string{`"john doe"@example.com`}},
		{"literal", "From: a@example.org\nTo: b@[192.0.2.1]\n", "a@example.org", []string{"b@[192.0.2.1]"}},
		{"sender", "From: a@example.org, b@example.org\nSender: c@example.org\nTo: d@example.com\n", "c@example.org", []string{"d@example.com"}},
		{"body ignored", "From: a@example.org\nTo: b@example.com\n\nTo: c@example.com\n", "a@example.org", []string{"b@example.com"}},
	}
	for _, tt := range tests {
		from, rcpts, err := ParseEnvelope([]byte(tt.header), "here.test")
		if err != nil {
			t.Errorf("%s: ParseEnvelope: %v", tt.name, err)
			continue
		}
		if from != tt.from || !reflect.DeepEqual(rcpts, tt.rcpts) {
			t.Errorf("%s: ParseEnvelope = %q, %q; want %q, %q", tt.name, from, rcpts, tt.from, tt.rcpts)
		}
	}
}

func TestParseEnvelopeErrors(t *testing.T) {
	tests := []struct{ name, header, want string }{
		{"no sender", "To: bob@example.com\n", "no sender"},
		{"no recipients", "From: alice@example.org\nSubject: hi\n", "no recipients"},
		{"empty group", "From: alice@example.org\nTo: nobody:;\n", "no recipients"},
		{"bad to", "From: alice@example.org\nTo: bob@@example.com\n", "invalid address in To"},
		{"bad from", "From: <alice\nTo: bob@example.com\n", "invalid address in From"},
		{"bad from line", "From \nTo: bob@example.com\n", "invalid From line"},
		{"not a field", "From: alice@example.org\nthis is not a header\n", "invalid header line 2"},
		{"bad name", "From: alice@example.org\nTo : bob@example.com\n", "invalid header line 2"},
		{"lone continuation", " x\nFrom: alice@example.org\n", "invalid header line 1: continuation"},
		{"long line", "From: alice@example.org\nSubject: " + strings.Repeat("x", 1000) + "\n", "longer than 998"},
		{"too long", "From: alice@example.org\n" + strings.Repeat("X: y\n", MaxHeader/5+1), "too long"},
		{"control", "From: alice@example.org\nTo: \"b\x01\"@example.com\n", "invalid address"},
		{"display name alone", "From: alice@example.org\nTo: Rob Pike\n", "invalid address in To"},
		{"bare quoted", "From: alice@example.org\nTo: \"rob pike\"\n", "invalid address in To"},
		{"body without empty line", "From: alice@example.org\nTo: bob@example.com\nHello Bob.\n", "invalid header line 3: not a field"},
		{"qualified too long", "From: alice@example.org\nTo: " + strings.Repeat("r,", 490) + "r\n", "once its names are qualified"},
		// A lone CR would end the line when sent: refused in the header.
		{"bare CR in a field", "From: alice@example.org\nSubject: hi\rBcc: eve@example.net\nTo: bob@example.com\n",
			"invalid header line 2: a CR not followed by LF"},
		{"CR CR LF", "From: alice@example.org\r\nTo: bob@example.com\r\r\n", "invalid header line 2: a CR not followed by LF"},
		{"bare CR in a continuation", "From: alice@example.org\nTo: bob@example.com,\n carol@example.net\r\rBcc: eve@example.net\r\n", "invalid header line 3"},
		{"bare CR in the From line", "From alice@example.org\rTo: eve@example.net\nTo: bob@example.com\n", "invalid header line 1"},
	}
	for _, tt := range tests {
		_, _, err := ParseEnvelope([]byte(tt.header), "here.test")
		if err == nil || !strings.HasPrefix(err.Error(), "invalid") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseEnvelope error %v, want one starting with invalid and holding %q", tt.name, err, tt.want)
		}
	}
}

func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte("From alice@example.org Mon Jun  2 10:00:00 UTC 2025\nTo: bob@example.com\n"))
	f.Add([]byte("From: \"A\" <a@b.c>\r\nTo: g: x@y.z;, w@v.u\r\nCc: glenda\r\nBcc: <q@r.s>\r\n\r\nbody"))
	f.Add([]byte("From: a@b.c\nTo: b@[192.0.2.1],\n \"x y\"@z.w\n"))
	f.Fuzz(func(t *testing.T, h []byte) {
		from, rcpts, err := ParseEnvelope(h, "here.test")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid") {
				t.Fatalf("error %q does not start with invalid", err)
			}
			return
		}
		// What it returns, Put takes.
		if _, _, err := checkEnvelope(smtp.Mail{From: from, Rcpts: rcpts}); err != nil {
			t.Fatalf("ParseEnvelope(%q) = %q, %q, which Put refuses: %v", h, from, rcpts, err)
		}
	})
}

func TestCRLF(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\nb\r\nc\rd", "a\r\nb\r\nc\r\nd"},
		{"\r\r\n\n", "\r\n\r\n\r\n"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(crlf([]byte(tt.in))); got != tt.want {
			t.Errorf("crlf(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSubmit(t *testing.T) {
	h := newHarness(t, testSettings())
	msg := "From glenda Mon Jun  2 10:00:00 UTC 2025\n" +
		"From: Glenda <glenda>\n" +
		"To: bob@example.com\n" +
		"Bcc: secret@example.net,\n" +
		"  other@example.net\n" +
		"Subject: hi\n" +
		"\n" +
		"line one\n" +
		"line two"
	id, err := h.q.Submit(context.Background(), []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	it, ok := h.item(id)
	if !ok {
		t.Fatalf("submitted %s, not listed", id)
	}
	wantRcpts := []string{"bob@example.com", "secret@example.net", "other@example.net"}
	if it.From != "glenda@mx.test" || !reflect.DeepEqual(it.Rcpts, wantRcpts) {
		t.Errorf("envelope %q %q, want %q %q", it.From, it.Rcpts, "glenda@mx.test", wantRcpts)
	}
	b, err := os.ReadFile(h.q.st.path(id, ".msg"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if it.Size != int64(len(b)) {
		t.Errorf("size %d, file has %d", it.Size, len(b))
	}
	head, body, _ := strings.Cut(got, "\r\n\r\n")
	if body != "line one\r\nline two\r\n" {
		t.Errorf("body %q", body)
	}
	if strings.Contains(got, "secret") || strings.Contains(got, "From glenda") || strings.Contains(strings.ReplaceAll(got, "\r\n", ""), "\n") {
		t.Errorf("Bcc, From line or bare LF left in\n%s", got)
	}
	for _, want := range []string{"From: Glenda <glenda@mx.test>\r\n", "To: bob@example.com\r\n", "Subject: hi\r\n",
		"Date: " + h.clock.Now().Format("Mon, 02 Jan 2006 15:04:05 -0700") + "\r\n", "Message-ID: <"} {
		if !strings.Contains(head+"\r\n", want) {
			t.Errorf("header lacks %q:\n%s", want, head)
		}
	}

	// A message that has them keeps its Date and Message-ID.
	kept := "From: a@example.org\r\nTo: b@example.com\r\nDate: Mon, 2 Jun 2025 10:00:00 +0000\r\nMessage-ID: <m@x>\r\n\r\nx\r\n"
	id, err = h.q.Submit(context.Background(), []byte(kept))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(h.q.st.path(id, ".msg")); string(b) != kept {
		t.Errorf("message changed:\n%q\nwant\n%q", b, kept)
	}

	if _, err := h.q.Submit(context.Background(), []byte("Subject: no envelope\n\nx\n")); err == nil || !strings.HasPrefix(err.Error(), "invalid") {
		t.Errorf("Submit without envelope: %v, want an invalid error", err)
	}
}

// TestSubmitLineEnds: header lines may end in LF or CRLF, mixed; a lone
// CR in the body ends a line, as a lone LF does, so that it can start no
// header field and no end of data: the stored message has CRLF line ends
// only, and the runner's writer dot-stuffs its lines that start with ".".
func TestSubmitLineEnds(t *testing.T) {
	h := newHarness(t, testSettings())
	msg := "From: a@example.org\r\nTo: b@example.com\nSubject: mixed\r\n\r\none\r.\rTo: eve@example.net\r\n.\r\nQUIT\rtwo\n"
	id, err := h.q.Submit(context.Background(), []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if it, _ := h.item(id); !reflect.DeepEqual(it.Rcpts, []string{"b@example.com"}) {
		t.Errorf("recipients %q, want b@example.com alone", it.Rcpts)
	}
	b, err := os.ReadFile(h.q.st.path(id, ".msg"))
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(b), "\r\n\r\n")
	if !strings.HasPrefix(head, "From: a@example.org\r\nTo: b@example.com\r\nSubject: mixed\r\n") || strings.Contains(head, "eve") {
		t.Errorf("header %q", head)
	}
	if want := "one\r\n.\r\nTo: eve@example.net\r\n.\r\nQUIT\r\ntwo\r\n"; body != want {
		t.Errorf("body %q, want %q", body, want)
	}
	if _, err := h.q.Submit(context.Background(), []byte("From: a@example.org\nTo: b@example.com\nSubject: x\rBcc: eve@example.net\n\nx\n")); err == nil ||
		!strings.Contains(err.Error(), "a CR not followed by LF") {
		t.Errorf("Submit of a header with a lone CR: %v", err)
	}
}

// A header of MaxHeader bytes folded into many short lines is unfolded in
// one pass (appending line by line copied the value again for each line:
// 30 s of CPU and 100 GB allocated for one 1 MB write to the queue file),
// and an error quotes only the start of a long field.
func TestParseEnvelopeLongFolded(t *testing.T) {
	n := (MaxHeader - 100) / 10
	var b strings.Builder
	b.WriteString("From: a@example.org\nTo: r0@example.org")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, ",\n r%d@x.y", i%100000)
	}
	b.WriteString("\n\n")
	good := b.String()
	bad := "From: a@example.org\nTo: b@example.org\n" + strings.Repeat(" x\n", (MaxHeader-100)/3) + "\n"

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, rcpts, err := ParseEnvelope([]byte(good), "here.test")
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("%d folded recipients: %d, %v; want too many", n, len(rcpts), err)
	}
	_, _, err = ParseEnvelope([]byte(bad), "here.test")
	runtime.ReadMemStats(&after)
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("a 1 MB To: of junk: error of %d bytes: %.300v", len(err.Error()), err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("parsing two 1 MB headers allocated %d MB", alloc>>20)
	}
}

// TestLineChecker: a header is checked line by line as it arrives, and the
// start of a line is refused as soon as no end can make it a header line.
func TestLineChecker(t *testing.T) {
	for _, tc := range []struct {
		lines []string // whole lines taken before
		start string
		err   string // "" for none
	}{
		{nil, "", ""},
		{nil, "Fro", ""},
		{nil, "From glenda Mon Jun  2", ""},
		{nil, "X-Long-Field-Name", ""},
		{nil, "To: bob@example.com", ""},
		{nil, "hello", ""}, // "hello: x" is a field
		{nil, "hello world", "invalid header line 1: not a field: \"hello world\""},
		{nil, "hello\x00", "invalid header line 1: not a field"},
		{nil, ": x", "invalid header line 1: not a field"},
		{nil, " folded", "invalid header line 1: continuation without a field"},
		{nil, "\r", ""},
		{nil, "Subject: hi\rBcc", "invalid header line 1: a CR not followed by LF"},
		{[]string{"To: bob@example.com"}, " carol@example.net\r\r", "invalid header line 2: a CR not followed by LF"},
		{[]string{"From glenda Mon Jun  2"}, " folded", "invalid header line 2: continuation without a field"},
		{[]string{"From glenda Mon Jun  2"}, "From ", "invalid header line 2: not a field"},
		{[]string{"To: bob@example.com"}, "\tand carol@example.net", ""},
		{[]string{"To: bob@example.com"}, "Hello Bob, here is", "invalid header line 2: not a field"},
		{[]string{"To: bob@example.com"}, strings.Repeat("x", 999), "invalid header line 2: longer than 998 characters"},
	} {
		var c LineChecker
		for _, l := range tc.lines {
			if err := c.Line([]byte(l)); err != nil {
				t.Fatalf("Line(%q): %v", l, err)
			}
		}
		err := c.Start([]byte(tc.start))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err)) {
			t.Errorf("after %q, Start(%q) = %v, want %q", tc.lines, tc.start, err, tc.err)
		}
	}
}

// FuzzLineChecker: Start refuses the start of a line only if Line refuses
// every line that starts so, and line by line the checker says what
// ParseEnvelope says of the syntax of the whole header.
func FuzzLineChecker(f *testing.F) {
	f.Add([]byte("From glenda Mon Jun  2 10:00:00 UTC 2025\nTo: rob\n folded\n"))
	f.Add([]byte("hello world\n"))
	f.Add([]byte("Subject: x\r\n\tmore\r\nX: y"))
	f.Fuzz(func(t *testing.T, h []byte) {
		if len(h) > 8<<10 { // every start of every line is tried: keep it quick
			return
		}
		var c LineChecker
		var failed error
		for l := range bytes.Lines(h) {
			l = bytes.TrimSuffix(bytes.TrimSuffix(l, []byte("\n")), []byte("\r"))
			if len(l) == 0 {
				return // the header's end: nothing more to compare
			}
			whole := c
			lineErr := whole.Line(l)
			for k := 0; k <= len(l) && k <= maxLine+2; k++ {
				part := c
				if part.Start(l[:k]) != nil && lineErr == nil {
					t.Fatalf("Start(%q) refused the start of %q, which Line takes", l[:k], l)
				}
			}
			if failed = c.Line(l); failed != nil {
				break
			}
		}
		_, _, err := splitHeader(h)
		if (err == nil) != (failed == nil) {
			t.Fatalf("line by line: %v; whole header: %v", failed, err)
		}
	})
}

// TestSubmitBareNames: a message written as a Plan 9 user writes one, with
// bare names for local users, is queued with them qualified with our mail
// domain, in the envelope and in the header; the Message-ID has our host
// name.
func TestSubmitBareNames(t *testing.T) {
	s := testSettings()
	s.Domain = "example.test"
	h := newHarness(t, s)
	msg := "From: glenda\nTo: rob, ken@example.com\nCc: Dennis Ritchie <dmr>,\n  unix: sape, howard;\nSubject: names\n\nHello.\n"
	if err := h.q.CheckHeader([]byte(msg)); err != nil {
		t.Fatalf("CheckHeader: %v", err)
	}
	id, err := h.q.Submit(context.Background(), []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	it, _ := h.item(id)
	want := []string{"rob@example.test", "ken@example.com", "dmr@example.test", "sape@example.test", "howard@example.test"}
	if it.From != "glenda@example.test" || !reflect.DeepEqual(it.Rcpts, want) {
		t.Errorf("envelope %q %q, want %q %q", it.From, it.Rcpts, "glenda@example.test", want)
	}
	b, err := os.ReadFile(h.q.st.path(id, ".msg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"From: glenda@example.test\r\nTo: rob@example.test, ken@example.com\r\n" +
		"Cc: Dennis Ritchie <dmr@example.test>,\r\n  unix: sape@example.test, howard@example.test;\r\nSubject: names\r\n", "@mx.test>\r\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the message lacks %q:\n%s", want, b)
		}
	}
}

// TestSubmitSMTPUTF8: a submitted message with UTF-8 in its header or
// addresses is queued needing SMTPUTF8; an ASCII one, or one whose 8-bit
// header bytes are not UTF-8, is not.
func TestSubmitSMTPUTF8(t *testing.T) {
	h := newHarness(t, testSettings())
	for _, tt := range []struct {
		msg  string
		want bool
	}{
		{"From: a@example.org\nTo: b@example.com\nSubject: hi\n\nGrüße\n", false},
		{"From: a@example.org\nTo: b@example.com\nSubject: Grüße\n\nx\n", true},
		{"From: a@example.org\nTo: jörg@bücher.example\n\nx\n", true},
		{"From: a@example.org\nTo: b@example.com\nSubject: caf\xe9\n\nx\n", false},
	} {
		id, err := h.q.Submit(context.Background(), []byte(tt.msg))
		if err != nil {
			t.Fatalf("Submit(%q): %v", tt.msg, err)
		}
		h.q.mu.Lock()
		got := h.q.msgs[id].params.SMTPUTF8
		h.q.mu.Unlock()
		if got != tt.want {
			t.Errorf("Submit(%q): SMTPUTF8 %v, want %v", tt.msg, got, tt.want)
		}
	}
}
