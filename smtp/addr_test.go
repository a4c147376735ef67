package smtp

import (
	"net/netip"
	"strings"
	"testing"
)

func TestBangToAt(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com!bob", "bob@example.com"},
		{"a.com!b.com!bob", "@a.com:bob@b.com"},
		{"a.com!b.com!c.com!bob", "@a.com,@b.com:bob@c.com"},
		{"a.com!host!bob", "host!bob@a.com"},
		{"host!bob", "host!bob"},
		{"bob", "bob"},
		{"bob@example.com", "bob@example.com"},
	}
	for _, tt := range tests {
		if got := bangToAt(tt.in); got != tt.want {
			t.Errorf("bangToAt(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAddresserConvert(t *testing.T) {
	plain := Addresser{HostDomain: "gnot.example.com"}
	dotted := Addresser{HostDomain: "gnot.example.com", Domain: "example.com"}
	tests := []struct {
		ad       Addresser
		in, def  string
		want     string
		describe string
	}{
		{plain, "bob", "", "bob@gnot.example.com", "bare name gets hostdomain"},
		{plain, "bob", "example.org", "bob@example.org", "bare recipient gets the destination"},
		{plain, "example.org!bob", "", "bob@example.org", "bang path"},
		{plain, "bob@example.org", "", "bob@example.org", "already qualified"},
		{plain, "/dev/null", "", "", "null sender"},
		{plain, "", "", "", "empty"},
		{plain, "kremvax!bob", "", "kremvax!bob@gnot.example.com", "dotless bang path, no .domain"},
		{dotted, "kremvax!bob", "", "bob@kremvax.example.com", ".domain qualifies the system name"},
		{dotted, "bob@kremvax", "", "bob@kremvax.example.com", ".domain qualifies a dotless domain"},
		{dotted, "bob@[192.0.2.1]", "", "bob@[192.0.2.1]", "address literal left alone"},
		{dotted, "a.com!b.com!bob", "", "@a.com:bob@b.com", "source route"},
		{plain, "@a.com:bob@b.com", "", "@a.com:bob@b.com", "route left alone"},
		{plain, `"bob smith"@example.org`, "", `"bob smith"@example.org`, "quoted local part"},
		{plain, `"a!b"`, "", `"a!b"@gnot.example.com`, "quoted bang is no path"},
	}
	for _, tt := range tests {
		if got := tt.ad.Convert(tt.in, tt.def); got != tt.want {
			t.Errorf("%s: Convert(%q, %q) = %q, want %q", tt.describe, tt.in, tt.def, got, tt.want)
		}
	}
}

func TestDomainify(t *testing.T) {
	tests := []struct{ name, domain, want string }{
		{"kremvax", ".example.com", "kremvax.example.com"},
		{"kremvax", "example.com", "kremvax.example.com"},
		{"kremvax.example.org", ".example.com", "kremvax.example.org"},
		{"kremvax", "", "kremvax"},
	}
	for _, tt := range tests {
		if got := Domainify(tt.name, tt.domain); got != tt.want {
			t.Errorf("Domainify(%q, %q) = %q, want %q", tt.name, tt.domain, got, tt.want)
		}
	}
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		a      string
		sender bool
		ok     bool
	}{
		{"bob@example.org", false, true},
		{"", true, true},
		{"", false, false},
		{"postmaster", false, true},
		{"postmaster", true, false},
		{"bob", false, false},
		{"bob@", false, false},
		{"@example.org", false, false},
		{"bob@example.org>\r\nDATA", false, false},
		{"bob@exa mple.org", false, false},
		{`"bob smith"@example.org`, false, true},
		{"bob smith@example.org", false, false},
		{"bob@example.org\x00", false, false},
		{"jörg@example.org", false, true},
		{"bob\xff@example.org", false, false},
		{strings.Repeat("a", 65) + "@example.org", false, false},
		{"a@" + strings.Repeat("b", 253), false, false},
	}
	for _, tt := range tests {
		err := checkPath(tt.a, tt.sender)
		if (err == nil) != tt.ok {
			t.Errorf("checkPath(%q, %v) = %v, want ok %v", tt.a, tt.sender, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "invalid") {
			t.Errorf("checkPath(%q): error %q lacks the word invalid", tt.a, err)
		}
	}
}

func TestRewriteAddrList(t *testing.T) {
	conv := func(a string) string { return "<" + a + ">" }
	tests := []struct{ in, want string }{
		{" bob", " <bob>"},
		{" bob, alice@x", " <bob>, <alice@x>"},
		{` "Bob, Smith" <bob>`, ` "Bob, Smith" <<bob>>`},
		{" Bob Smith <bob@x> (comment)", " Bob Smith <<bob@x>> (comment)"},
		{" bob (Bob Smith)", " <bob> (Bob Smith)"},
		{" (lead) bob", " (lead) <bob>"},
		{" friends: bob, alice;", " friends: <bob>, <alice>;"},
		{" undisclosed-recipients:;", " undisclosed-recipients:;"},
		{" Bob Smith", " Bob Smith"},
		{" bob,\n\talice", " <bob>,\n\t<alice>"},
		{" <>", " <>"},
		{" <bob", " <bob"},
		{` "a b"@x`, ` <"a b"@x>`},
		{" bob@[IPv6:2001:db8::1]", " <bob@[IPv6:2001:db8::1]>"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := rewriteAddrList(tt.in, conv); got != tt.want {
			t.Errorf("rewriteAddrList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAddressLiteral(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "[192.0.2.1]"},
		{"[192.0.2.1]", "[192.0.2.1]"},
		{"2001:db8::1", "[IPv6:2001:db8::1]"},
		{"[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"},
		{"[ipv6:::ffff:192.0.2.1]", "[192.0.2.1]"},
		{"example.org", ""},
		{"[example.org]", ""},
		{"fe80::1%eth0", ""},
		{"[192.0.2.1", ""},
		{"192.0.2.1]", ""},
		{"[IPv6:2001:db8::1", ""},
	}
	for _, tt := range tests {
		if got := AddressLiteral(tt.in); got != tt.want {
			t.Errorf("AddressLiteral(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFormatLiteral(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.1": "[192.0.2.1]", "2001:db8::1": "[IPv6:2001:db8::1]", "": "[]"} {
		var a netip.Addr
		if in != "" {
			a = netip.MustParseAddr(in)
		}
		if got := FormatLiteral(a); got != want {
			t.Errorf("FormatLiteral(%q) = %q, want %q", in, got, want)
		}
	}
}
