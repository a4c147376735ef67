package arg

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	var f, g bool
	var h string
	var k []string
	s := New("test [-fg] [-h dom] [-k ip]...")
	s.Bool('f', &f)
	s.Bool('g', &g)
	s.String('h', &h)
	s.List('k', &k)
	rest, err := s.Parse([]string{"-fg", "-hexample.org", "-k", "10.0.0.1", "-k10.0.0.0/8", "-f", "a", "-b"})
	if err != nil {
		t.Fatal(err)
	}
	if !f || !g || h != "example.org" || !reflect.DeepEqual(k, []string{"10.0.0.1", "10.0.0.0/8"}) {
		t.Errorf("got f=%v g=%v h=%q k=%q", f, g, h, k)
	}
	if !reflect.DeepEqual(rest, []string{"a", "-b"}) {
		t.Errorf("rest = %q", rest)
	}
	if got := s.Letters(); got != "fghk" {
		t.Errorf("Letters() = %q, want fghk", got)
	}
	if !s.Seen('h') || s.Seen('x') {
		t.Errorf("Seen wrong")
	}
	for _, bad := range [][]string{{"-x"}, {"-k"}, {"-fk"}} {
		if _, err := New("").Parse(bad); err == nil {
			t.Errorf("Parse(%q) on empty set: no error", bad)
		}
		if _, err := s.Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
	rest, _ = s.Parse([]string{"--", "-f"})
	if !reflect.DeepEqual(rest, []string{"-f"}) {
		t.Errorf("-- not honoured: %q", rest)
	}
	rest, _ = s.Parse([]string{"-", "x"})
	if !reflect.DeepEqual(rest, []string{"-", "x"}) {
		t.Errorf("lone - not an argument: %q", rest)
	}
}
