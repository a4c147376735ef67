package smtp

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseNetrc(t *testing.T) {
	text := `# mail relays
machine smtp.example.org login alice password "s3cret word"
machine smtp.example.org
	login bob
	password hunter2
macdef init
cd /pub
machine ignored.example.org login x password y

machine mx.example.net login carol password p\#x # trailing comment
default login anon password guest
`
	entries, err := ParseNetrc(text)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		machine, user string
		login, pass   string
		ok            bool
	}{
		{"smtp.example.org", "", "alice", "s3cret word", true},
		{"SMTP.example.org", "bob", "bob", "hunter2", true},
		{"mx.example.net", "", "carol", "p#x", true},
		{"ignored.example.org", "x", "", "", false},
		{"elsewhere.example.org", "", "anon", "guest", true},
		{"smtp.example.org", "dave", "", "", false},
	}
	for _, tt := range tests {
		e, ok := LookupNetrc(entries, tt.machine, tt.user)
		if ok != tt.ok || e.Login != tt.login || e.Password != tt.pass {
			t.Errorf("LookupNetrc(%q, %q) = %+v, %v; want %q %q %v", tt.machine, tt.user, e, ok, tt.login, tt.pass, tt.ok)
		}
	}
	for _, bad := range []string{"login x", "machine", "machine m login", "machine m frobnicate x"} {
		if _, err := ParseNetrc(bad); err == nil {
			t.Errorf("ParseNetrc(%q) succeeded, want an error", bad)
		}
	}
}

func TestReadNetrcMode(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "netrc")
	if err := os.WriteFile(file, []byte("machine m login u password p\n"), 0644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadNetrc(file); !errors.Is(err, errNetrcMode) {
		t.Errorf("world-readable netrc: err %v, want %v", err, errNetrcMode)
	}
	os.Chmod(file, 0600)
	entries, err := ReadNetrc(file)
	if err != nil || len(entries) != 1 || entries[0].Password != "p" {
		t.Errorf("ReadNetrc = %+v, %v", entries, err)
	}
}
