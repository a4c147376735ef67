package smtpd

import (
	"strings"
	"testing"
	"unicode/utf8"

	"smtpfs/smtp"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line, verb, arg string
		err             *smtp.Reply
	}{
		{line: "QUIT", verb: "QUIT"},
		{line: "quit", verb: "QUIT"},
		{line: "QUIT  ", verb: "QUIT"},
		{line: "EHLO mx.example.org", verb: "EHLO", arg: "mx.example.org"},
		{line: "ehlo   mx.example.org \t", verb: "EHLO", arg: "mx.example.org"},
		{line: "MAIL FROM:<a@b.c> SIZE=10", verb: "MAIL", arg: "FROM:<a@b.c> SIZE=10"},
		{line: "AUTH PLAIN AGJvYgBwdw==", verb: "AUTH", arg: "PLAIN AGJvYgBwdw=="},
		{line: "", err: errSyntax},
		{line: " QUIT", err: errSyntax},
		{line: "QU1T", err: errSyntax},
		{line: "X-QUIT", err: errSyntax},
		{line: "NOOP\x00", err: errSyntax},
		{line: "NO\rOP", err: errSyntax},
		{line: "NOOP \x1b[31m", err: errSyntax},
		{line: "NOOP \x7f", err: errSyntax},
		{line: "NOOP caf\xc3\xa9", err: errSyntax},
		{line: "ABCDEFGHIJKLMNOPQ", err: errSyntax},
		{line: "ABCDEFGHIJKLMNOP", verb: "ABCDEFGHIJKLMNOP"},
	} {
		c, err := parseCommand([]byte(tc.line))
		if tc.err != nil {
			if err != tc.err {
				t.Errorf("parseCommand(%q) error %v, want %v", tc.line, err, tc.err)
			}
			continue
		}
		if err != nil || c.verb != tc.verb || c.arg != tc.arg {
			t.Errorf("parseCommand(%q) = %q %q, %v; want %q %q", tc.line, c.verb, c.arg, err, tc.verb, tc.arg)
		}
	}
}

func TestParsePathArg(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	dom := strings.Repeat("abcdefghi.", 24) + "com" // 243 octets
	for _, tc := range []struct {
		arg    string
		bang   string // mailPath.Bang of the result
		addr   string // mailPath.Addr
		params string // key=value, space separated
		err    *smtp.Reply
	}{
		{arg: "FROM:<>", bang: "/dev/null"},
		{arg: "FROM:<bob@example.com>", bang: "example.com!bob", addr: "bob@example.com"},
		{arg: "from:<Bob@Example.COM>", bang: "example.com!Bob", addr: "Bob@example.com"},
		{arg: "FROM: <bob@example.com>", bang: "example.com!bob", addr: "bob@example.com"},
		{arg: "FROM:<bob@example.com.>", bang: "example.com!bob", addr: "bob@example.com"},
		{arg: "FROM:<bob>", bang: "bob", addr: "bob"},
		{arg: "FROM:<a!b!c>", bang: "a!b!c", addr: "a!b!c"},
		{arg: `FROM:<"john doe"@x.org>`, bang: `x.org!"john doe"`, addr: `"john doe"@x.org`},
		{arg: `FROM:<"a\"b\\c"@x.org>`, bang: `x.org!"a\"b\\c"`, addr: `"a\"b\\c"@x.org`},
		{arg: `FROM:<"a>b"@x.org>`, bang: `x.org!"a>b"`, addr: `"a>b"@x.org`},
		{arg: `FROM:<"bob"@x.org>`, bang: "x.org!bob", addr: "bob@x.org"},
		{arg: "FROM:<@a.org,@b.org:bob@c.org>", bang: "c.org!bob", addr: "bob@c.org"},
		{arg: "FROM:<bob@[192.0.2.1]>", bang: "[192.0.2.1]!bob", addr: "bob@[192.0.2.1]"},
		{arg: "FROM:<bob@[IPv6:2001:DB8::1]>", bang: "[IPv6:2001:db8::1]!bob", addr: "bob@[IPv6:2001:db8::1]"},
		{arg: "FROM:<bob@[ipv6:::1]>", bang: "[IPv6:::1]!bob", addr: "bob@[IPv6:::1]"},
		{arg: "FROM:<bob@[]>", bang: "[]!bob", addr: "bob@[]"},
		{arg: "FROM:<a@b.c> SIZE=100 BODY=8BITMIME", bang: "b.c!a", addr: "a@b.c", params: "SIZE=100 BODY=8BITMIME"},
		{arg: "FROM:<a@b.c> size=100   body=7bit", bang: "b.c!a", addr: "a@b.c", params: "SIZE=100 BODY=7bit"},
		{arg: "FROM:<a@b.c> SMTPUTF8", bang: "b.c!a", addr: "a@b.c", params: "SMTPUTF8="},
		{arg: "FROM:<" + long(64) + "@b.c>", bang: "b.c!" + long(64), addr: long(64) + "@b.c"},
		{arg: "FROM:<a@" + dom + ">", bang: dom + "!a", addr: "a@" + dom},
		{arg: "FROM:<" + long(65) + "@b.c>", err: errLocalLong},
		{arg: `FROM:<"` + long(63) + `"@b.c>`, err: errLocalLong},
		{arg: "FROM:<ab@" + long(64) + ".com>", err: errPathSyntax},
		{arg: "FROM:<abcdefghijkl@" + dom + ">", err: errPathLong},
		{arg: "FROM:<a@" + strings.Repeat("b.", 128) + "c>", err: errPathLong},
		{arg: "FROM:a@b.c", err: errPathSyntax},
		{arg: "FROM:<a@b.c", err: errPathSyntax},
		{arg: "TO:<a@b.c>", err: errArgs},
		{arg: "FROM", err: errArgs},
		{arg: "FROM:<a@b.c>SIZE=1", err: errArgs},
		{arg: "FROM:<a@b.c> SIZE=", err: errArgs},
		{arg: "FROM:<a@b.c> S!ZE=1", err: errArgs},
		{arg: "FROM:<a@b.c> " + strings.Repeat("X=1 ", 17), err: errArgs},
		{arg: "FROM:<a..b@c.d>", err: errPathSyntax},
		{arg: "FROM:<.a@c.d>", err: errPathSyntax},
		{arg: "FROM:<a.@c.d>", err: errPathSyntax},
		{arg: "FROM:<a b@c.d>", err: errPathSyntax},
		{arg: "FROM:<a@b@c.d>", err: errPathSyntax},
		{arg: "FROM:<a@>", err: errPathSyntax},
		{arg: "FROM:<@c.d>", err: errPathSyntax},
		{arg: "FROM:<a@-c.d>", err: errPathSyntax},
		{arg: "FROM:<a@c-.d>", err: errPathSyntax},
		{arg: "FROM:<a@c..d>", err: errPathSyntax},
		{arg: "FROM:<a@[1.2.3]>", err: errPathSyntax},
		{arg: "FROM:<a@[300.1.1.1]>", err: errPathSyntax},
		{arg: "FROM:<a@[IPv6:1.2.3.4]>", err: errPathSyntax},
		{arg: "FROM:<a@[IPv6:::ffff:1.2.3.4]>", err: errPathSyntax},
		{arg: "FROM:<a@[example.org]>", err: errPathSyntax},
		{arg: "FROM:<a@[IPv6:fe80::1%eth0]>", err: errPathSyntax}, // a zone means nothing to another host
		{arg: "FROM:<a@[IPv6:fe80::1%25]>", err: errPathSyntax},
		{arg: `FROM:<"unterminated@b.c>`, err: errPathSyntax},
		{arg: `FROM:<"a"b@c.d>`, err: errPathSyntax},
		{arg: "FROM:<\"tab\there\"@c.d>", err: errPathSyntax},
		{arg: "FROM:<@a.org:>", err: errPathSyntax},
		{arg: "FROM:<@a.org,b.org:x@c.org>", err: errPathSyntax},
		{arg: "FROM:<@[1.2.3.4]:x@c.org>", err: errPathSyntax},
		{arg: "FROM:<@:x@c.org>", err: errPathSyntax},
	} {
		p, ps, err := parsePathArg(tc.arg, "FROM:")
		if tc.err != nil {
			if err != tc.err {
				t.Errorf("parsePathArg(%q) error %v, want %v", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePathArg(%q): %v", tc.arg, err)
			continue
		}
		var got []string
		for _, p := range ps {
			got = append(got, p.key+"="+p.value)
		}
		if p.Bang() != tc.bang || p.Addr() != tc.addr || strings.Join(got, " ") != tc.params {
			t.Errorf("parsePathArg(%q) = %q %q %q, want %q %q %q", tc.arg, p.Bang(), p.Addr(), got, tc.bang, tc.addr, tc.params)
		}
	}
}

func TestBoxName(t *testing.T) {
	for _, tc := range []struct{ local, box string }{
		{"bob", "bob"},
		{"Bob.Smith", "bob.smith"},
		{"bob+lists", "bob"},
		{"bob+", "bob"},
		{"a_b-c.d", "a_b-c.d"},
		{strings.Repeat("x", 64), strings.Repeat("x", 64)},
		{"", ""},
		{".", ""},
		{"..", ""},
		{".bob", ""},
		{"-bob", ""},
		{"+bob", ""},
		{"a/b", ""},
		{"a\\b", ""},
		{"a!b", ""},
		{"a%b", ""},
		{"a@b", ""},
		{"a b", ""},
		{"caf\xc3\xa9", "caf\xc3\xa9"}, // SMTPUTF8: utf8BoxName
		{strings.Repeat("x", 65), ""},
		// The tag is made of safe characters too: the whole local part
		// goes into Delivered-To: and To:.
		{"bob+a.b-c_d=e+f", "bob"},
		{"Bob+Tag", "bob"},
		{"bob+x>, Big Boss <ceo> (x", ""},
		{"bob+x y", ""},
		{"bob+x\r\nBcc: eve", ""},
		{"bob+\"", ""},
		{"bob+x,y", ""},
		{"bob+x/../y", ""},
		{"bob.", ""},
		{"bob+x.", ""},
		{"bob..x", ""},
		{"bob+" + strings.Repeat("x", 60), "bob"},
		{"bob+" + strings.Repeat("x", 61), ""},
	} {
		box, err := BoxName(tc.local)
		if box != tc.box || (err == nil) != (tc.box != "") {
			t.Errorf("BoxName(%q) = %q, %v; want %q", tc.local, box, err, tc.box)
		}
	}
}

func TestSeqError(t *testing.T) {
	// Every command refused in a state gets a 503.
	for verb, spec := range commands {
		for _, st := range []state{stInit, stHelo, stMail, stRcpt} {
			if r := seqError(verb, st); spec.states&st == 0 && (r == nil || r.Code != 503) {
				t.Errorf("seqError(%s, %d) = %v", verb, st, r)
			}
		}
	}
	for _, tc := range []struct {
		verb string
		st   state
		ok   bool
	}{
		{"HELO", stInit, true}, {"HELO", stRcpt, true},
		{"MAIL", stInit, false}, {"MAIL", stHelo, true}, {"MAIL", stMail, false}, {"MAIL", stRcpt, false},
		{"RCPT", stInit, false}, {"RCPT", stHelo, false}, {"RCPT", stMail, true}, {"RCPT", stRcpt, true},
		{"DATA", stHelo, false}, {"DATA", stMail, false}, {"DATA", stRcpt, true},
		{"AUTH", stInit, false}, {"AUTH", stHelo, true}, {"AUTH", stMail, false},
		{"STARTTLS", stInit, true}, {"STARTTLS", stHelo, true}, {"STARTTLS", stMail, false},
		{"RSET", stInit, true}, {"QUIT", stRcpt, true}, {"NOOP", stMail, true},
	} {
		if got := commands[tc.verb].states&tc.st != 0; got != tc.ok {
			t.Errorf("%s allowed in state %d: %v, want %v", tc.verb, tc.st, got, tc.ok)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"EHLO mx.example.org", "HELO [192.0.2.1]", "MAIL FROM:<a@b.c> SIZE=100 BODY=8BITMIME",
		"RCPT TO:<@a.org,@b.org:\"john doe\"@[IPv6:::1]>", "RCPT TO:<elsewhere.com!v@example.org>",
		"DATA", "RSET", "QUIT", "NOOP x", "AUTH PLAIN AGJvYgBwdw==", "STARTTLS", "VRFY bob",
		"MAIL FROM:<\"a\\\"b\"@c.d>", "RCPT TO:<v%ext@[127.0.0.1]>", "GET / HTTP/1.1", "\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parseCommand([]byte(line))
		if err != nil {
			return
		}
		if c.verb != strings.ToUpper(c.verb) || c.verb == "" || !utf8.ValidString(c.arg) {
			t.Fatalf("parseCommand(%q) = %q %q", line, c.verb, c.arg)
		}
		for _, prefix := range []string{"FROM:", "TO:"} {
			p, _, err := parsePathArg(c.arg, prefix)
			if err != nil {
				continue
			}
			if len(p.Local) > maxLocal || len(p.Domain) > maxDomain+10 {
				t.Fatalf("parsePathArg(%q): over the limits: %+v", c.arg, p)
			}
			if p.Null {
				continue
			}
			// What we write must parse back to the same path.
			q, _, err := parsePathArg(prefix+"<"+p.Addr()+">", prefix)
			if err != nil && err != errPathLong && err != errLocalLong {
				t.Fatalf("%q: Addr %q does not parse: %v", c.arg, p.Addr(), err)
			}
			if err == nil && q != p && !(q.Local == p.Local && q.Domain == p.Domain) {
				t.Fatalf("%q: %+v round-trips to %+v", c.arg, p, q)
			}
		}
	})
}

func BenchmarkParseCommand(b *testing.B) {
	lines := [][]byte{
		[]byte("EHLO mx.example.org"),
		[]byte("MAIL FROM:<alice@example.org> SIZE=5120 BODY=8BITMIME"),
		[]byte("RCPT TO:<bob@example.com>"),
		[]byte("DATA"),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c, err := parseCommand(lines[i%len(lines)])
		if err != nil {
			b.Fatal(err)
		}
		if c.verb == "MAIL" || c.verb == "RCPT" {
			prefix := "FROM:"
			if c.verb == "RCPT" {
				prefix = "TO:"
			}
			if _, _, err := parsePathArg(c.arg, prefix); err != nil {
				b.Fatal(err)
			}
		}
	}
}
