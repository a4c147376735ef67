package smtpd

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"smtpfs/smtp"
)

// TestParseCommandUTF8: 8-bit bytes pass in MAIL and RCPT when they are
// well-formed UTF-8 without C1 controls, nowhere else.
func TestParseCommandUTF8(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
	}{
		{"MAIL FROM:<jörg@bücher.example> SMTPUTF8", true},
		{"rcpt TO:<用户@例子.example>", true},
		{"NOOP jörg", false},
		{"EHLO bücher.example", false},
		{"AUTH PLAIN jörg", false},
		{"MAIL FROM:<j\xffrg@example.org>", false},      // not UTF-8
		{"MAIL FROM:<j\xc3rg@example.org>", false},      // truncated sequence
		{"MAIL FROM:<j\xc0\xafrg@example.org>", false},  // overlong '/'
		{"RCPT TO:<a\xc2\x85b@example.org>", false},     // U+0085 NEXT LINE, a C1 control
		{"RCPT TO:<a\xed\xa0\x80b@example.org>", false}, // a surrogate
		{"RCPT TO:<a\x7fb@example.org>", false},
	} {
		_, err := parseCommand([]byte(tc.line))
		if (err == nil) != tc.ok {
			t.Errorf("parseCommand(%q) error %v, want ok %v", tc.line, err, tc.ok)
		}
	}
}

// TestParsePathUTF8: UTF-8 local parts and U-label domains (RFC 6531
// §3.3), routed by the A-label, shown as written, bounded in octets.
func TestParsePathUTF8(t *testing.T) {
	for _, tc := range []struct {
		arg, local, domain, addr string
		err                      *smtp.Reply
	}{
		{arg: "FROM:<jörg@bücher.example>", local: "jörg", domain: "xn--bcher-kva.example", addr: "jörg@bücher.example"},
		{arg: "TO:<Jörg@BÜCHER.Example.>", local: "Jörg", domain: "xn--bcher-kva.example", addr: "Jörg@bücher.example"},
		{arg: `TO:<"jörg doe"@example.org>`, local: "jörg doe", domain: "example.org", addr: `"jörg doe"@example.org`},
		{arg: "TO:<用户@example.org>", local: "用户", domain: "example.org", addr: "用户@example.org"},
		{arg: "TO:<用户>", local: "用户", addr: "用户"},
		// RFC 5321 §4.5.3.1.1 counts octets: 32 × ü is 64, 33 is 66.
		{arg: "TO:<" + strings.Repeat("ü", 32) + "@example.org>", local: strings.Repeat("ü", 32), domain: "example.org", addr: strings.Repeat("ü", 32) + "@example.org"},
		{arg: "TO:<" + strings.Repeat("ü", 33) + "@example.org>", err: errLocalLong},
		{arg: "TO:<bob@a\u2215b.example>", err: errPathSyntax},
		{arg: "TO:<bob@a\uff0fb.example>", err: errPathSyntax},
		{arg: "TO:<bob@\u202eexample.org>", err: errPathSyntax},
		{arg: "TO:<bob@" + strings.Repeat("aü", 30) + ".example>", err: errPathSyntax}, // a label over 63 octets as an A-label
		{arg: `TO:<"a\ü"@example.org>`, err: errPathSyntax},                            // quoted-pairSMTP is ASCII
	} {
		p, _, err := parsePathArg(tc.arg, strings.SplitAfter(tc.arg, ":")[0])
		if tc.err != nil {
			if err != tc.err {
				t.Errorf("parsePathArg(%q) error %v, want %v", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil || p.Local != tc.local || p.Domain != tc.domain || p.Addr() != tc.addr {
			t.Errorf("parsePathArg(%q) = %+v (%q), %v; want %q %q %q", tc.arg, p, p.Addr(), err, tc.local, tc.domain, tc.addr)
		}
	}
}

// TestBoxNameUTF8: the mapping of a UTF-8 local part to a box: NFC, lower
// case, letters, marks and digits; never a path out of box/, never a
// second box for a name that looks like another.
func TestBoxNameUTF8(t *testing.T) {
	for _, tc := range []struct{ local, box string }{
		{"jörg", "jörg"},
		{"Jörg", "jörg"},
		{"jo\u0308rg", "jörg"}, // decomposed: NFC makes it the same user
		{"JÖRG+Tëst", "jörg"},
		{"用户", "用户"},
		{"δοκιμή", "δοκιμή"},
		{"पर्रीक्षा", "पर्रीक्षा"}, // Devanagari: combining marks inside a name
		{"jörg.müller", "jörg.müller"},
		{"jörg_2-x", "jörg_2-x"},
		{"\u212Aelvin", "kelvin"}, // KELVIN SIGN is K in NFC: one user with kelvin
		// Hostile: each would leave box/, hide, or pass for someone else.
		{"a\u2215b", ""},           // DIVISION SLASH
		{"a\uff0fb", ""},           // FULLWIDTH SOLIDUS
		{"\uff42\uff4f\uff42", ""}, // fullwidth bob: NFKC is bob
		{"bob\u202e", ""},          // RIGHT-TO-LEFT OVERRIDE
		{"b\u200bob", ""},          // ZERO WIDTH SPACE
		{"b\u200dob", ""},          // ZERO WIDTH JOINER
		{"\u0308bob", ""},          // a leading combining mark
		{"bö\u00a0b", ""},          // NO-BREAK SPACE
		{"bö\u3000b", ""},          // IDEOGRAPHIC SPACE
		{"bö\x00b", ""},
		{"bö/b", ""},
		{"bö/../b", ""},
		{".jörg", ""},
		{"-jörg", ""},
		{"jö..rg", ""},
		{"jörg.", ""},
		{"..ö", ""},
		{"ö\u0085", ""},     // a C1 control
		{"ö\ue000", ""},     // private use
		{"ö\U000e0041", ""}, // a tag character
		{"ö\xff", ""},       // not UTF-8
		{"jörg+a/b", ""},
		{"jörg+\u202e", ""},
		{"jörg.+x", ""},
		{strings.Repeat("ü", 33), ""}, // 66 octets
		{"ﬁle", ""},                   // the fi ligature
	} {
		box, err := BoxName(tc.local)
		if box != tc.box || (err == nil) != (tc.box != "") {
			t.Errorf("BoxName(%q) = %q, %v; want %q", tc.local, box, err, tc.box)
		}
	}
}

// TestSMTPUTF8Session: SMTPUTF8 is offered after EHLO; a UTF-8 address
// needs it on MAIL (553 5.6.7 otherwise), for MAIL and RCPT alike; a
// local UTF-8 user gets the message in its NFC box; a relayed message
// is queued with Params.SMTPUTF8.
func TestSMTPUTF8Session(t *testing.T) {
	ts := newTestServer(t, "ournets 10.0.0.0/8\nourdomains xn--bcher-kva.example")
	q := &fakeQueue{}
	ts.Queue = q
	c := ts.greeted("10.0.0.1")
	c.send("EHLO client.example.net")
	if got := strings.Join(c.reply(), "\n"); !strings.Contains(got, "250-SMTPUTF8\n") {
		t.Errorf("EHLO reply %q does not offer SMTPUTF8", got)
	}
	c.check("MAIL FROM:<jörg@example.net>", "553 5.6.7")
	c.check("MAIL FROM:<bob@example.net> SMTPUTF8=yes", "501 5.5.4")
	c.check("MAIL FROM:<bob@example.net> SIZE=x SMTPUTF8", "501 5.5.4") // fails, says nothing for the next MAIL
	c.check("MAIL FROM:<bob@example.net>", "250 ")
	c.check("RCPT TO:<jörg@example.org>", `553 5.6.7 "j\u00f6rg@example.org" ... non-ASCII address requires SMTPUTF8 on MAIL FROM`)
	c.check("RCPT TO:<bob@bücher.example>", "553 5.6.7")
	c.check("RSET", "250 ")
	c.check("MAIL FROM:<jörg@example.net> SMTPUTF8 BODY=8BITMIME SMTPUTF8", "250 ") // smtplib's send_message(mail_options=["SMTPUTF8"])
	c.check("RCPT TO:<Jo\u0308rg@bücher.example>", "250 ")
	c.check("RCPT TO:<用户@example.org>", "250 ")
	c.check("RCPT TO:<zoë@bücher.example.net>", "250 ")
	c.send("DATA")
	c.expect("354 ")
	c.write("Subject: Grüße\r\nFrom: Jörg <jörg@example.net>\r\n\r\nHallo\r\n.\r\n")
	c.expect("250 ")
	msgs := boxFiles(t, ts.Root, "jörg")
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: Grüße\n") || !strings.Contains(msgs[0], " with UTF8SMTP id ") {
		t.Errorf("box jörg: %q", msgs)
	}
	if n := len(boxFiles(t, ts.Root, "用户")); n != 1 {
		t.Errorf("box 用户 has %d messages, want 1", n)
	}
	if len(q.msgs) != 1 || !q.msgs[0].params.SMTPUTF8 || strings.Join(q.msgs[0].rcpts, " ") != "zoë@bücher.example.net" {
		t.Fatalf("queued %+v, want zoë@bücher.example.net with SMTPUTF8", q.msgs)
	}
	// A message without SMTPUTF8 is queued without it, even with 8-bit
	// header bytes (accepted as 8-bit data, as before).
	c.check("MAIL FROM:<bob@example.net> BODY=8BITMIME", "250 ")
	c.check("RCPT TO:<carol@elsewhere.example>", "250 ")
	c.send("DATA")
	c.expect("354 ")
	c.write("Subject: caf\xe9\r\n\r\nx\r\n.\r\n")
	c.expect("250 ")
	if len(q.msgs) != 2 || q.msgs[1].params.SMTPUTF8 {
		t.Errorf("queued %+v, want the second without SMTPUTF8", q.msgs)
	}
	// SMTPUTF8 said, ASCII throughout (Go's net/smtp says it to every
	// server that offers it): not marked, so it reaches any next hop.
	c.check("MAIL FROM:<bob@example.net> SMTPUTF8", "250 ")
	c.check("RCPT TO:<carol@elsewhere.example>", "250 ")
	c.send("DATA")
	c.expect("354 ")
	c.write("Subject: plain\r\n\r\nGrüße in the body only\r\n.\r\n")
	c.expect("250 ")
	if len(q.msgs) != 3 || q.msgs[2].params.SMTPUTF8 || !strings.Contains(q.msgs[2].data, " with ESMTP id ") {
		t.Errorf("queued %+v, want the third without SMTPUTF8, received with ESMTP", q.msgs)
	}
	// UTF-8 in the header alone is enough.
	c.check("MAIL FROM:<bob@example.net> SMTPUTF8", "250 ")
	c.check("RCPT TO:<carol@elsewhere.example>", "250 ")
	c.send("DATA")
	c.expect("354 ")
	c.write("Subject: Grüße\r\n\r\nx\r\n.\r\n")
	c.expect("250 ")
	if len(q.msgs) != 4 || !q.msgs[3].params.SMTPUTF8 {
		t.Errorf("queued %+v, want the fourth with SMTPUTF8", q.msgs)
	}
	// HELO: no SMTPUTF8 (RFC 6531 §3.1).
	c.check("HELO client.example.net", "250 ")
	c.check("MAIL FROM:<bob@example.net> SMTPUTF8", "555 ")
}

// TestSMTPUTF8BadBox: a UTF-8 local part that maps to no box is refused
// at RCPT, whatever mkbox says.
func TestSMTPUTF8BadBox(t *testing.T) {
	ts := newTestServer(t, "")
	c := ts.ehloed("192.0.2.7")
	c.check("MAIL FROM:<a@example.net> SMTPUTF8", "250 ")
	for _, local := range []string{"a\u2215b", "\uff42\uff4f\uff42", "bob\u202e", "b\u200bob"} {
		c.check("RCPT TO:<"+local+"@example.org>", "550 5.1.3")
	}
}

// FuzzBoxName: whatever a local part is, its box, if it has one, is one
// path element inside box/ (no '/', NUL, control or format character, no
// leading '.' or '-', not "." or ".."), well-formed UTF-8 of at most 64
// octets, and its own box (the mapping is idempotent: a box is found again
// under its own name), but for an ASCII box ending in '.', which BoxName
// has always made of "bob.+x" and which we leave as it was.
func FuzzBoxName(f *testing.F) {
	for _, s := range []string{"bob", "Bob+tag", "jörg", "jo\u0308rg", "用户", "a\u2215b", "\uff42", "..", "a/b", "\u0308x", "ö\u202e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, local string) {
		box, err := BoxName(local)
		if err != nil {
			return
		}
		if box == "" || box == "." || box == ".." || len(box) > maxLocal || !utf8.ValidString(box) ||
			box[0] == '.' || box[0] == '-' || strings.ContainsAny(box, "/\x00\\") {
			t.Fatalf("BoxName(%q) = %q", local, box)
		}
		for _, r := range box {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
				t.Fatalf("BoxName(%q) = %q, with %U", local, box, r)
			}
		}
		if isASCII(local) && strings.HasSuffix(box, ".") {
			return // BoxName's old rule for ASCII: "bob.+x" is box "bob.", which is no local part
		}
		if again, err := BoxName(box); again != box || err != nil {
			t.Fatalf("BoxName(%q) = %q, but BoxName(%q) = %q, %v", local, box, box, again, err)
		}
	})
}
