package smtp

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	long := strings.Repeat("x", maxReplyLine+1)
	many := strings.Repeat("250-x\r\n", maxReplyLines) + "250 x\r\n"
	tests := []struct {
		in    string
		code  int
		enh   string
		lines []string
		err   string // substring of the error, "" for none
	}{
		{"220 mx.example.org ESMTP\r\n", 220, "", []string{"mx.example.org ESMTP"}, ""},
		{"250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 250, "", []string{"mx.example.org", "PIPELINING", "SIZE 1000"}, ""},
		{"550 5.1.1 no such user\r\n", 550, "5.1.1", []string{"no such user"}, ""},
		{"554-5.7.1 no\r\n554 5.7.1 never\r\n", 554, "5.7.1", []string{"no", "never"}, ""},
		{"554-5.7.1 first\r\n554 second\r\n", 554, "5.7.1", []string{"first", "second"}, ""},
		{"250 2.0.0\r\n", 250, "2.0.0", []string{""}, ""},
		{"451 5.7.1 class differs\r\n", 451, "", []string{"5.7.1 class differs"}, ""},
		{"250\r\n", 250, "", []string{""}, ""},
		{"250 bare lf\n", 250, "", []string{"bare lf"}, ""},
		{"334 VXNlcm5hbWU6\r\n", 334, "", []string{"VXNlcm5hbWU6"}, ""},
		// RFC 5321 §4.2.1: text is tab and printable; controls are escaped.
		{"550-5.7.1 \x1b[2Jgone\tnow\r\n550 5.7.1 \u009b31m\x9b\x07 gr\u00fc\u00dfe\r\n", 550, "5.7.1",
			[]string{`\x1b[2Jgone` + "\t" + `now`, `\u009b31m\x9b\x07 gr` + "\u00fc\u00df" + `e`}, ""},
		{"", 0, "", nil, "closed unexpectedly"},
		{"250-more\r\n", 0, "", nil, "closed unexpectedly"},
		{"hello\r\n", 0, "", nil, "malformed"},
		{"25\r\n", 0, "", nil, "malformed"},
		{"150 one\r\n", 0, "", nil, "malformed"},
		{"2500 x\r\n", 0, "", nil, "malformed"},
		{"250-a\r\n251 b\r\n", 0, "", nil, "code changed"},
		{"250 " + long + "\r\n", 0, "", nil, "line too long"},
		{many, 0, "", nil, "too long"},
	}
	for _, tt := range tests {
		r, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("readReply(%q) = %v, %v; want error %q", clip(tt.in), r, err, tt.err)
			}
			if err != nil && !IsTemporary(err) {
				t.Errorf("readReply(%q): error %v is not temporary", clip(tt.in), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("readReply(%q): %v", tt.in, err)
			continue
		}
		if r.Code != tt.code || r.Enh != tt.enh || strings.Join(r.Lines, "|") != strings.Join(tt.lines, "|") {
			t.Errorf("readReply(%q) = %d %q %q, want %d %q %q", tt.in, r.Code, r.Enh, r.Lines, tt.code, tt.enh, tt.lines)
		}
	}
}

// TestReadReplySequence reads replies one after the other from one stream,
// as a pipelined session does.
func TestReadReplySequence(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("250 2.1.0 ok\r\n550 5.1.1 no\r\n250-a\r\n250 b\r\n"))
	var got []int
	for {
		r, err := readReply(br)
		if err != nil {
			break
		}
		got = append(got, r.Code)
	}
	if want := []int{250, 550, 250}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("codes %v, want %v", got, want)
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"220 mx ESMTP\r\n", "250-a\r\n250-PIPELINING\r\n250 SIZE 10\r\n", "550 5.1.1 x\r\n",
		"554-5.7.1 a\r\n554 b\r\n", "250\r\n", "garbage", "250-a\r\n", "451 4.7.0 \r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := readReply(bufio.NewReaderSize(strings.NewReader(in), 16))
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 || len(r.Lines) > maxReplyLines {
			t.Fatalf("readReply(%q) = %+v", in, r)
		}
		// What Wire writes, readReply reads back the same, as long as
		// each line still fits: a reply's control bytes are escaped as
		// they are read (\xNN, four bytes for one), so a line near
		// maxReplyLine may come out longer than a reply line may be.
		for _, l := range strings.Split(string(r.Wire()), "\r\n") {
			if len(l) > maxReplyLine {
				return
			}
		}
		again, err := readReply(bufio.NewReader(strings.NewReader(string(r.Wire()))))
		if err != nil {
			t.Fatalf("reading back %q: %v", r.Wire(), err)
		}
		if again.Code != r.Code || again.Enh != r.Enh || strings.Join(again.Lines, "\n") != strings.Join(r.Lines, "\n") {
			t.Fatalf("round trip of %q: %+v, then %+v", in, r, again)
		}
	})
}
