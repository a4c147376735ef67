package queue

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"smtpfs/smtp"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	at := time.Date(2025, 6, 1, 10, 0, 0, 123456789, time.UTC)
	tests := []*envelope{
		{from: "alice@example.org", arrived: at, size: 5120,
			rcpts: []*rcpt{{addr: "bob@example.com", next: at}}},
		{from: "", arrived: at, size: 0, held: true, warned: true,
			rcpts: []*rcpt{
				{addr: "bob@example.com", tries: 3, next: at.Add(time.Hour), err: "451 4.7.1 it's greylisted; try later"},
				{addr: `"john doe"@example.net`, tries: 1, next: at, err: ""},
				{addr: "carol@[192.0.2.1]", tries: 0, next: at, err: "''"},
			}},
		{from: "alice@example.org", arrived: at, size: 9,
			params: smtp.Params{Ret: "HDRS", EnvID: "QQ 314159", RequireTLS: true, SMTPUTF8: true},
			rcpts: []*rcpt{
				{addr: "bob@example.com", next: at, dsn: smtp.RcptParams{Notify: "SUCCESS,DELAY", ORcpt: "rfc822;Bob@Example.COM"}},
				{addr: "carol@example.com", next: at, dsn: smtp.RcptParams{Notify: "NEVER"}},
				{addr: "dave@example.com", next: at},
			}},
	}
	for _, e := range tests {
		b := e.marshal()
		got, err := parseEnvelope(b)
		if err != nil {
			t.Fatalf("parseEnvelope(%q): %v", b, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip of\n%s\ngot %+v, want %+v", b, got, e)
		}
	}
}

func TestEnvelopeReadable(t *testing.T) {
	at := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	e := &envelope{from: "", arrived: at, size: 12, held: true,
		rcpts: []*rcpt{{addr: "bob@example.com", tries: 2, next: at, err: "451 try again"}}}
	want := envHeader + "from ''\narrived 2025-06-01T10:00:00Z\nsize 12\nheld\n" +
		"rcpt bob@example.com 2 2025-06-01T10:00:00Z '451 try again'\n"
	if got := string(e.marshal()); got != want {
		t.Errorf("marshal:\n%s\nwant\n%s", got, want)
	}
}

func TestEnvelopeDamaged(t *testing.T) {
	good := "from a@b.c\narrived 2025-06-01T10:00:00Z\nsize 1\n"
	rcpt := "rcpt b@c.d 0 2025-06-01T10:00:00Z ''\n"
	tests := []struct{ text, want string }{
		{"", "no from line"},
		{good, "no rcpt line"},
		{"arrived 2025-06-01T10:00:00Z\nsize 1\n" + rcpt, "no from line"},
		{"from a@b.c\nsize 1\n" + rcpt, "no arrived line"},
		{"from a@b.c\narrived 2025-06-01T10:00:00Z\n" + rcpt, "no size line"},
		{good + rcpt + "bogus\n", "unknown keyword"},
		{good + "rcpt b@c.d 0 yesterday ''\n", "cannot parse"},
		{good + "rcpt b@c.d -1 2025-06-01T10:00:00Z ''\n", "bad tries"},
		{good + "rcpt b@c.d 0 2025-06-01T10:00:00Z\n", "3 words, want 4"},
		{good + "rcpt b@c.d 0 2025-06-01T10:00:00Z 'open\n", "unterminated quote"},
		{good + "rcpt 'b\x01@c.d' 0 2025-06-01T10:00:00Z ''\n", "control character"},
		{"from a@b.c\narrived 2025-06-01T10:00:00Z\nsize -5\n" + rcpt, "negative"},
		{good + "held now\n" + rcpt, "1 words, want 0"},
		{good + "ret NONE\n" + rcpt, "bad RET"},
		{good + "envid '" + strings.Repeat("x", 101) + "'\n" + rcpt, "ENVID longer"},
		{good + "rcpt b@c.d 0 2025-06-01T10:00:00Z '' NEVER,SUCCESS ''\n", "NEVER stands alone"},
		{good + "rcpt b@c.d 0 2025-06-01T10:00:00Z '' SOMETIMES ''\n", "bad NOTIFY"},
		{good + "rcpt b@c.d 0 2025-06-01T10:00:00Z '' '' b@c.d\n", "want addr-type;address"},
		{good + "rcpt b@c.d 0 2025-06-01T10:00:00Z '' ''\n", "5 words, want 4"},
	}
	for _, tt := range tests {
		_, err := parseEnvelope([]byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseEnvelope(%q) = %v, want an error with %q", tt.text, err, tt.want)
		}
	}
}

func TestWords(t *testing.T) {
	tests := []struct {
		line string
		want []string
		bad  bool
	}{
		{"a b\tc", []string{"a", "b", "c"}, false},
		{"  a   ''  'x y' 'it''s'", []string{"a", "", "x y", "it's"}, false},
		{"'''' '''x'''", []string{"'", "'x'"}, false},
		{"a'b", nil, true},
		{"'ab'c", nil, true},
		{"'ab", nil, true},
	}
	for _, tt := range tests {
		got, err := words(tt.line)
		if (err != nil) != tt.bad || !tt.bad && !reflect.DeepEqual(got, tt.want) {
			t.Errorf("words(%q) = %q, %v; want %q (error %v)", tt.line, got, err, tt.want, tt.bad)
		}
	}
}

func TestClean(t *testing.T) {
	long := strings.Repeat("é", maxErr)
	tests := []struct{ in, want string }{
		{"550 5.1.1 no\r\nsuch user", "550 5.1.1 no  such user"},
		{"bad \xff byte", "bad   byte"},
		{long, long[:maxErr]},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestIDs(t *testing.T) {
	at := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		id := newID(at.Add(time.Duration(i) * time.Millisecond))
		if !validID(id) {
			t.Fatalf("newID gave %q, not a valid id", id)
		}
		if seen[id] || id[:idTime] < prev {
			t.Fatalf("id %q repeats or sorts before %q", id, prev)
		}
		seen[id], prev = true, id[:idTime]
	}
	for _, bad := range []string{"", "../../etc/pass", "ABCDEFGHIJKLMNO", "abc"} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}

// FuzzEnvelope checks that whatever parses marshals back to the same
// envelope.
func FuzzEnvelope(f *testing.F) {
	at := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	f.Add(string((&envelope{from: "a@b.c", arrived: at, size: 3, held: true,
		rcpts: []*rcpt{{addr: "d@e.f", tries: 2, next: at, err: "it's 451"}}}).marshal()))
	f.Add("from ''\narrived 2025-06-01T10:00:00Z\nsize 1\nrcpt 'x y'@z 0 2025-06-01T10:00:00Z ''\n")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseEnvelope([]byte(s))
		if err != nil {
			return
		}
		b := e.marshal()
		e2, err := parseEnvelope(b)
		if err != nil {
			t.Fatalf("reparse of %q: %v", b, err)
		}
		if !reflect.DeepEqual(e.marshal(), e2.marshal()) {
			t.Fatalf("round trip changed %q to %q", b, e2.marshal())
		}
	})
}
