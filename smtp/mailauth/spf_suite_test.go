package mailauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"testing"

	"gopkg.in/yaml.v3"
)

// The openspf RFC 7208 test suite (testdata/rfc7208-tests.yml, with its
// licence beside it), each document's zone served from memory as its
// driver (pyspf's testspf.py) serves it, every case run directly and
// through a Cache.

type suiteDoc struct {
	Description string
	Tests       map[string]suiteCase
	Zonedata    map[string][]any
}

type suiteCase struct {
	Spec        any
	Helo        string
	Host        string
	Mailfrom    string
	Result      any     // a result, or a list of acceptable ones
	Explanation *string // "DEFAULT": no exp= text
}

func loadSuite(t testing.TB) []suiteDoc {
	f, err := os.Open("testdata/rfc7208-tests.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []suiteDoc
	dec := yaml.NewDecoder(f)
	for {
		var d suiteDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
}

// suiteZone builds a document's zone the way the suite's driver does: an
// SPF record is also a TXT record unless the name has TXT records of its
// own, which come at the end; "TXT: NONE" means no TXT record.
func suiteZone(t testing.TB, zd map[string][]any) *memDNS {
	m := newMemDNS()
	for name, entries := range zd {
		var gen []memRR
		txt := false
		for _, e := range entries {
			if e == "TIMEOUT" {
				m.add(name, "TIMEOUT", nil)
				continue
			}
			for typ, v := range e.(map[string]any) {
				if v == "NONE" {
					txt = txt || typ == "TXT"
					continue
				}
				switch typ {
				case "TXT", "SPF":
					s := strs(v)
					if typ == "SPF" {
						gen = append(gen, memRR{"TXT", s})
						continue
					}
					txt = true
					m.add(name, "TXT", s)
				case "MX":
					l := v.([]any)
					host := l[1].(string)
					if host == "" {
						host = "."
					}
					m.add(name, "MX", MX{Host: normName(host), Pref: uint16(l[0].(int))})
				case "A", "AAAA", "PTR", "CNAME":
					m.add(name, typ, v.(string))
				default:
					t.Fatalf("zone %s: unknown type %s", name, typ)
				}
			}
		}
		if !txt {
			for _, rr := range gen {
				m.add(name, rr.typ, rr.val)
			}
		}
	}
	return m
}

// strs is a TXT value: a string, or a list of strings.
func strs(v any) []string {
	if s, ok := v.(string); ok {
		return []string{s}
	}
	var l []string
	for _, s := range v.([]any) {
		l = append(l, s.(string))
	}
	return l
}

// results lists the acceptable results of a case.
func (c suiteCase) results() []Result {
	if s, ok := c.Result.(string); ok {
		return []Result{Result(s)}
	}
	var l []Result
	for _, s := range c.Result.([]any) {
		l = append(l, Result(s.(string)))
	}
	return l
}

func TestSPFSuite(t *testing.T) {
	n := 0
	for _, d := range loadSuite(t) {
		zone := suiteZone(t, d.Zonedata)
		names := make([]string, 0, len(d.Tests))
		for name := range d.Tests {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			tc := d.Tests[name]
			n++
			t.Run(name, func(t *testing.T) {
				for _, r := range []Resolver{zone, NewCache(zone, 100)} {
					c := &Checker{Resolver: r, Hostname: "mx.example.org"}
					got := c.CheckSPF(context.Background(), netip.MustParseAddr(tc.Host), tc.Helo, tc.Mailfrom)
					if err := tc.check(got); err != nil {
						t.Errorf("%s (%s, spec %v): %v\n%s", d.Description, fmt.Sprintf("%T", r), tc.Spec, err, got)
					}
				}
			})
		}
	}
	if n != 203 {
		t.Errorf("ran %d cases, the suite has 203", n)
	}
}

// check compares a result with what the case wants.
func (c suiteCase) check(got SPFResult) error {
	if want := c.results(); !slices.Contains(want, got.Result) {
		return fmt.Errorf("result %s, want %v", got.Result, want)
	}
	if c.Explanation == nil {
		return nil
	}
	want := *c.Explanation
	if want == "DEFAULT" {
		want = ""
	}
	if got.Explanation != want {
		return fmt.Errorf("explanation %q, want %q", got.Explanation, want)
	}
	return nil
}
