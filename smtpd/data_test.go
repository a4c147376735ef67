package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadData(t *testing.T) {
	long := strings.Repeat("x", 998)
	for _, tc := range []struct {
		name string
		in   string // what the client sends after 354
		out  string // the message read
		err  error
		rest string // what is left for the command reader
	}{
		{"empty", ".\r\n", "", nil, ""},
		{"simple", "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", "Subject: x\r\n\r\nhello\r\n", nil, "QUIT\r\n"},
		{"no final newline in text", "a\r\n.\r\n", "a\r\n", nil, ""},
		{"dot stuffing", "..a\r\n...\r\n.\r\n", ".a\r\n..\r\n", nil, ""},
		{"dot inside a line", "a.\r\n.b\r\n.\r\n", "a.\r\nb\r\n", nil, ""},
		{"dot space is text", ". \r\n.\r\n", " \r\n", nil, ""},
		{"pipelined after", "x\r\n.\r\nRSET\r\nQUIT\r\n", "x\r\n", nil, "RSET\r\nQUIT\r\n"},
		{"8bit", "caf\xc3\xa9\r\n.\r\n", "caf\xc3\xa9\r\n", nil, ""},
		{"998 octets", long + "\r\n.\r\n", long + "\r\n", nil, ""},
		{"998 octets stuffed", "." + long + "\r\n.\r\n", long + "\r\n", nil, ""},
		{"999 octets", long + "x\r\n.\r\nQUIT\r\n", "", errLongLine, "QUIT\r\n"},
		{"1500 octets", strings.Repeat("y", 1500) + "\r\n.\r\nQUIT\r\n", "", errLongLine, "QUIT\r\n"},
		// SMTP smuggling (anchors.md §2.1): none of these end the message,
		// each makes it fail, and the reader goes on to the real end.
		{"smuggle LF.LF", "a\n.\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n", "", errBareEOL, "QUIT\r\n"},
		{"smuggle LF.CRLF", "a\n.\r\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n", "", errBareEOL, "QUIT\r\n"},
		{"smuggle CR.CRLF", "a\r.\r\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n", "", errBareEOL, "QUIT\r\n"},
		{"smuggle CRLF.LF", "a\r\n.\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n", "", errBareEOL, "QUIT\r\n"},
		{"smuggle CR.CR", "a\r.\rMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n", "", errBareEOL, "QUIT\r\n"},
		{"smuggle CRLF.CR", "a\r\n.\rMAIL\r\n.\r\nQUIT\r\n", "", errBareEOL, "QUIT\r\n"},
		{"smuggle first line .LF", ".\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n", "", errBareEOL, "QUIT\r\n"},
		{"bare LF in header", "Subject: x\nTo: y\r\n\r\nbody\r\n.\r\n", "", errBareEOL, ""},
		{"bare LF in body", "Subject: x\r\n\r\nbo\ndy\r\n.\r\n", "", errBareEOL, ""},
		{"bare CR in header", "Subject: x\rTo: y\r\n\r\n.\r\n", "", errBareEOL, ""},
		{"bare CR in body", "Subject: x\r\n\r\nbo\rdy\r\n.\r\n", "", errBareEOL, ""},
		{"CR CR LF", "a\r\r\n.\r\n", "", errBareEOL, ""},
		{"LF LF", "a\n\n.\r\n.\r\n", "", errBareEOL, ""},
		{"no end after bare LF", "a\n.\r\n", "", io.ErrUnexpectedEOF, ""},
		{"too big", strings.Repeat("zzz\r\n", 410) + ".\r\nQUIT\r\n", "", errTooBig, "QUIT\r\n"},
		{"just fits", strings.Repeat("zzz\r\n", 409) + ".\r\n", strings.Repeat("zzz\r\n", 409), nil, ""},
	} {
		r := bufio.NewReaderSize(strings.NewReader(tc.in), 16)
		var out bytes.Buffer
		n, err := readData(r, &out, 2048, 1<<20)
		rest, _ := io.ReadAll(r)
		if !errors.Is(err, tc.err) || (tc.err == nil && out.String() != tc.out) || string(rest) != tc.rest {
			t.Errorf("%s: got %q, %v, rest %q; want %q, %v, rest %q", tc.name, out.String(), err, rest, tc.out, tc.err, tc.rest)
		}
		if n != int64(out.Len()) {
			t.Errorf("%s: n = %d, wrote %d", tc.name, n, out.Len())
		}
	}
}

// TestReadDataBuffers reads a message through buffers of every size, so
// that CR LF and the final dot fall across fragment boundaries.
func TestReadDataBuffers(t *testing.T) {
	msg := "Subject: buffers\r\n\r\n" + strings.Repeat("line of text\r\n..dot\r\n", 20)
	want := strings.ReplaceAll(msg, "\n..", "\n.")
	bad := "Subject: x\r\n\r\nab\rcd\r\n" + strings.Repeat("e", 40) + "\r\n"
	for size := 16; size < 64; size++ {
		r := bufio.NewReaderSize(strings.NewReader(msg+".\r\nNOOP\r\n"), size)
		var out bytes.Buffer
		if _, err := readData(r, &out, 1<<20, 1<<20); err != nil || out.String() != want {
			t.Errorf("buffer %d: got %q, %v", size, out.String(), err)
		}
		r = bufio.NewReaderSize(strings.NewReader(bad+".\r\nNOOP\r\n"), size)
		if _, err := readData(r, io.Discard, 1<<20, 1<<20); err != errBareEOL {
			t.Errorf("buffer %d: bare CR: %v", size, err)
		}
		if rest, _ := io.ReadAll(r); string(rest) != "NOOP\r\n" {
			t.Errorf("buffer %d: left %q", size, rest)
		}
	}
}

func TestReadDataLimits(t *testing.T) {
	// Far beyond the limit, the reader gives up at once.
	r := bufio.NewReader(strings.NewReader(strings.Repeat("0123456789\r\n", 1000)))
	if _, err := readData(r, io.Discard, 100, 1000); err != errWayTooBig {
		t.Errorf("got %v, want errWayTooBig", err)
	}
	// The connection ends before the dot.
	r = bufio.NewReader(strings.NewReader("no end\r\n"))
	if _, err := readData(r, io.Discard, 100, 1000); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %v, want unexpected EOF", err)
	}
}

// failingWriter takes n bytes, then fails every write.
type failingWriter struct{ n int }

var errDiskFull = errors.New("no space left on device")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= w.n {
		w.n -= len(p)
		return len(p), nil
	}
	k := w.n
	w.n = 0
	return k, errDiskFull
}

// TestReadDataWriteError: a spool that fails (ENOSPC, EMFILE) fails the
// message, but only once the real CRLF.CRLF has been read, so that the
// rest of the message never runs as commands.
func TestReadDataWriteError(t *testing.T) {
	line := strings.Repeat("x", 98) + "\r\n"
	msg := strings.Repeat(line, 20) + "NOOP smuggled\r\nRSET\r\n" + strings.Repeat(line, 3) + ".\r\nQUIT\r\n"
	for _, room := range []int{0, 1, 150, 1000} {
		r := bufio.NewReaderSize(strings.NewReader(msg), 16)
		n, err := readData(r, &failingWriter{n: room}, 1<<20, 1<<20)
		rest, _ := io.ReadAll(r)
		if !errors.Is(err, errDiskFull) || string(rest) != "QUIT\r\n" {
			t.Errorf("room %d: got %v, rest %.40q; want %v, rest %q", room, err, rest, errDiskFull, "QUIT\r\n")
		}
		if n > int64(room) {
			t.Errorf("room %d: n = %d", room, n)
		}
	}
}

func TestSpool(t *testing.T) {
	sp := newSpool(t.TempDir(), &memBudget{max: spoolBudget})
	defer sp.Close()
	var want bytes.Buffer
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for i := range 20 {
		chunk[0] = byte('A' + i)
		sp.Write(chunk)
		want.Write(chunk)
	}
	if err := sp.finish(); err != nil {
		t.Fatal(err)
	}
	if sp.f == nil {
		t.Errorf("a %d-byte message is all in memory", sp.Size())
	}
	got, err := io.ReadAll(sp.Reader(0))
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read back %d bytes, %v; want %d", len(got), err, want.Len())
	}
	got, _ = io.ReadAll(sp.Reader(spoolMem - 3))
	if !bytes.Equal(got, want.Bytes()[spoolMem-3:]) {
		t.Errorf("reading across the memory/file boundary differs")
	}
}

// TestSpoolBudget: spools share one memory budget; what does not fit
// goes to the file, and the message reads back whole all the same.
func TestSpoolBudget(t *testing.T) {
	b := &memBudget{max: 256 << 10}
	dir := t.TempDir()
	header := "From: a@sender.net\r\nSubject: budget\r\n\r\n"
	var spools []*spool
	var msgs [][]byte
	for i := range 4 {
		sp := newSpool(dir, b)
		var want bytes.Buffer
		want.WriteString(header)
		sp.Write([]byte(header))
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 1000)
		for range 200 {
			sp.Write(chunk)
			want.Write(chunk)
			if used := b.used.Load(); used > b.max {
				t.Fatalf("spool %d: %d bytes of memory in use, budget %d", i, used, b.max)
			}
		}
		if err := sp.finish(); err != nil {
			t.Fatal(err)
		}
		spools = append(spools, sp)
		msgs = append(msgs, want.Bytes())
	}
	if sp := spools[3]; sp.f == nil || len(sp.mem) > 16<<10 {
		t.Errorf("the last spool holds %d bytes in memory (file %v) with the budget spent", len(sp.mem), sp.f != nil)
	}
	for i, sp := range spools {
		got, err := io.ReadAll(sp.Reader(0))
		if err != nil || !bytes.Equal(got, msgs[i]) {
			t.Errorf("spool %d: read back %d bytes, %v; want %d", i, len(got), err, len(msgs[i]))
		}
		if h := sp.head(100); string(h) != string(msgs[i][:100]) {
			t.Errorf("spool %d: head %q", i, h)
		}
		if h := scanHeader(sp.head(maxHeaderScan)); !h.originator || h.end != len(header) {
			t.Errorf("spool %d: header %+v", i, h)
		}
	}
	for _, sp := range spools {
		sp.Close()
	}
	if used := b.used.Load(); used != 0 {
		t.Errorf("%d bytes still taken from the budget after Close", used)
	}
}

func FuzzReadData(f *testing.F) {
	for _, s := range []string{
		".\r\n", "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", "..a\r\n.\r\n", "a\n.\nMAIL\r\n.\r\n",
		"a\r.\r\n.\r\n", "a\r\n.\n.\r\n", strings.Repeat("x", 1001) + "\r\n.\r\n", "\r\r\n\n.\r\n",
	} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, in string, size int) {
		size = 16 + size&255
		r := bufio.NewReaderSize(strings.NewReader(in), size)
		var out bytes.Buffer
		n, err := readData(r, &out, 4096, 1<<20)
		if n != int64(out.Len()) || out.Len() > 4096 {
			t.Fatalf("n %d, wrote %d", n, out.Len())
		}
		rest, _ := io.ReadAll(r)
		consumed := in[:len(in)-len(rest)]
		switch err {
		case nil, errBareEOL, errLongLine, errTooBig:
			// The reader stopped just after a real CRLF.CRLF.
			if consumed != ".\r\n" && !strings.HasSuffix(consumed, "\r\n.\r\n") {
				t.Fatalf("%v after %q", err, consumed)
			}
		}
		if err != nil {
			return
		}
		// A good message has only CRLF line ends, and is what the client
		// sent, without the final dot and with one leading dot taken
		// from each line that has one.
		o := out.String()
		if strings.Count(o, "\n") != strings.Count(o, "\r\n") || strings.Count(o, "\r") != strings.Count(o, "\r\n") {
			t.Fatalf("bare CR or LF in %q", o)
		}
		if want := unstuff(strings.TrimSuffix(consumed, ".\r\n")); o != want {
			t.Fatalf("read %q from %q, want %q", o, consumed, want)
		}
	})
}

// unstuff undoes dot-stuffing (RFC 5321 §4.5.2) the simple way.
func unstuff(m string) string {
	var b strings.Builder
	for l := range strings.SplitAfterSeq(m, "\r\n") {
		b.WriteString(strings.TrimPrefix(l, "."))
	}
	return b.String()
}

func BenchmarkReadData(b *testing.B) {
	var msg bytes.Buffer
	msg.WriteString("From: alice@example.org\r\nTo: bob@example.com\r\nSubject: benchmark\r\n\r\n")
	for msg.Len() < 5000 {
		msg.WriteString("The quick brown fox jumps over the lazy dog, and then some more words.\r\n")
	}
	msg.WriteString(".\r\n")
	in := msg.Bytes()
	src := bytes.NewReader(in)
	r := bufio.NewReaderSize(src, readBuf)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(in)
		r.Reset(src)
		if _, err := readData(r, io.Discard, 1<<20, 1<<21); err != nil {
			b.Fatal(err)
		}
	}
}
