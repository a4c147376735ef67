package main

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"

	"smtpfs/fs"
	"smtpfs/fs/fstest"
	"smtpfs/fs/mount"
)

// treeClient serves d's tree on a pipe and attaches a 9P client to it.
func treeClient(t *testing.T, d *daemon) *client.Fsys {
	t.Helper()
	a, b := net.Pipe()
	go d.tree.ServeConn(a)
	conn, err := client.NewConn(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fsys, err := conn.Attach(nil, "glenda", "")
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

// TestErrno: every kind of mistake a shell can make through the tree
// fails with an error that 9pfuse turns into the errno meant for it,
// whatever the user's text quotes of 9pfuse's table (fstest.FuseErrno is
// that table), and so does smtpfs mount (mount.Errno), and the log names
// the reason as it was written.
func TestErrno(t *testing.T) {
	d := newTestDaemon(t, "")
	fsys := treeClient(t, d)
	random := make([]byte, 2000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.UintN(256))
	}
	write := func(name string, parts ...string) error { return fstest.Write(fsys, name, plan9.OWRITE, parts...) }
	for _, tc := range []struct {
		what   string
		err    error
		want   syscall.Errno
		logged string // in the log, as it was
	}{
		{"unknown verb", write("ctl", "bogus on\n"), syscall.EINVAL, "invalid ctl line 1 'bogus on': unknown verb 'bogus'"},
		{"unknown verb of table words", write("ctl", "no such verb\n"), syscall.EINVAL, "invalid ctl line 1 'no such verb': unknown verb 'no'"},
		{"last line without newline", write("ctl", "greylist bogus"), syscall.EINVAL, "greylist takes on or off, not 'bogus'"},
		{"bad value of table words", write("ctl", "greylist 'permission denied: input/output timeout'\n"), syscall.EINVAL, ""},
		{"host bits", write("ctl", "ournets 10.0.0.0/1\n"), syscall.EINVAL, "host bits set"},
		{"missing file", write("ctl", "tlscert /nonexistent/no-such-entry.pem\n"), syscall.EINVAL, "no such file or directory"},
		{"no such message", write("ctl", "delete nosuchid\n"), syscall.ENOENT, "not found: nosuchid"},
		{"no such message of table words", write("ctl", "retry access permitted\n"), syscall.ENOENT, "not found: access"},
		{"no such entry", write("ctl", "unwhitelist 192.0.2.9\n"), syscall.ENOENT, "not found: 192.0.2.9"},
		{"export with the files the store", write("ctl", "exportwhitelist\n"), syscall.EINVAL, "greystore is file"},
		{"export to no such directory", write("ctl", "exportwhitelist /nonexistent/no-such-dir/wl\n"), syscall.ENOENT, "not found: /nonexistent/no-such-dir"},
		{"export over a directory", write("ctl", "exportwhitelist "+t.TempDir()+"\n"), syscall.EIO, "i/o error: "},
		{"line too long", write("ctl", strings.Repeat("#", 70<<10)), syscall.E2BIG, "line too long"},
		{"bad entry", write("whitelist", "bogus\n"), syscall.EINVAL, "invalid whitelist entry 'bogus'"},
		{"bad entry of table words", write("whitelist", "no such host exists\n"), syscall.EINVAL, "invalid whitelist entry 'no such host exists'"},
		{"bad entry without newline", write("whitelist", "192.0.2.300"), syscall.EINVAL, "invalid whitelist entry '192.0.2.300'"},
		{"bad blocked line", write("blocked", "blok 192.0.2.1\n"), syscall.EINVAL, "unknown verb 'blok'"},
		{"bad blocked line of table words", write("blocked", "block not-found.example i/o\n"), syscall.EINVAL, ""},
		{"not a message", write("queue", "hello\n"), syscall.EINVAL, "invalid header line 1: not a field"},
		{"random bytes", write("queue", string(random)), syscall.EINVAL, "invalid header line 1"},
		{"body without empty line", write("queue", "From: glenda@example.org\nTo: rob@example.net\nno such thing as a header\n"), syscall.EINVAL, "invalid header line 3: not a field"},
		{"no recipients", write("queue", "From: glenda@example.org\nSubject: no such recipient\n\nbody\n"), syscall.EINVAL, "no recipients"},
		{"bad address", write("queue", "From: glenda@example.org\nTo: <<no such>>\n\nbody\n"), syscall.EINVAL, "invalid address in To"},
		{"open log for writing", func() error { _, err := fsys.Open("log", plan9.OWRITE); return err }(), syscall.EACCES, ""},
		{"write stats", write("stats", "x\n"), syscall.EACCES, ""},
		{"rename ctl", func() error { d := plan9.Dir{}; d.Null(); d.Name = "ctl.old"; return fsys.Wstat("ctl", &d) }(), syscall.EACCES, ""},
		{"chmod ctl", func() error { d := plan9.Dir{}; d.Null(); d.Mode = 0777; return fsys.Wstat("ctl", &d) }(), syscall.EACCES, ""},
		{"create", func() error { _, err := fsys.Create("new", plan9.OWRITE, 0644); return err }(), syscall.EACCES, ""},
		{"remove ctl", fsys.Remove("ctl"), syscall.EACCES, ""},
		{"no such file", func() error { _, err := fsys.Open("queue.d/nosuchid", plan9.OREAD); return err }(), syscall.ENOENT, ""},
		{"write a directory", func() error { _, err := fsys.Open("queue.d", plan9.OWRITE); return err }(), syscall.EISDIR, ""},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.what)
			continue
		}
		if got := errnoOf(t, tc.err.Error()); got != tc.want {
			t.Errorf("%s: %q: 9pfuse gives %v, want %v", tc.what, tc.err, got, tc.want)
		}
		if tc.logged != "" && !strings.Contains(fstest.Read(t, fsys, "log.recent"), tc.logged) {
			t.Errorf("%s: the log does not say %q", tc.what, tc.logged)
		}
	}

	// The queue at its size limit, or with no room left.
	if err := d.Ctl("maxsize 100k"); err != nil {
		t.Fatal(err)
	}
	err := write("queue", "From: glenda@example.org\nTo: rob@example.net\n\n", strings.Repeat("too long\n", 12000))
	if got := errnoOf(t, errText(err)); got != syscall.E2BIG {
		t.Errorf("message over maxsize: %q: 9pfuse gives %v, want E2BIG", errText(err), got)
	}
	if err := d.Ctl("minfree 1000g"); err != nil {
		t.Fatal(err)
	}
	err = write("queue", "From: glenda@example.org\nTo: rob@example.net\n\nno such room\n")
	if got := errnoOf(t, errText(err)); got != syscall.EAGAIN {
		t.Errorf("no room: %q: 9pfuse gives %v, want EAGAIN", errText(err), got)
	}

	// The whitelist cannot be written: a directory stands in its place.
	wl := filepath.Join(d.root, "grey", "whitelist")
	if err := os.Remove(wl); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.Mkdir(wl, 0700); err != nil {
		t.Fatal(err)
	}
	err = write("whitelist", "192.0.2.1 no such directory\n")
	if got := errnoOf(t, errText(err)); got != syscall.EIO {
		t.Errorf("whitelist not writable: %q: 9pfuse gives %v, want EIO", errText(err), got)
	}
	// Nor read: unwhitelist and exportwhitelist cannot do their work.
	for _, line := range []string{"unwhitelist 192.0.2.1\n", "exportwhitelist " + filepath.Join(t.TempDir(), "wl") + "\n"} {
		err = write("ctl", line)
		if got := errnoOf(t, errText(err)); got != syscall.EIO {
			t.Errorf("%q with the whitelist unreadable: %q: 9pfuse gives %v, want EIO", line, errText(err), got)
		}
	}
	// dkim newkey: a bad request is EINVAL, a key that cannot be stored
	// (a file where the domain's directory goes) EIO.
	if err := os.MkdirAll(filepath.Join(d.root, "lib", "dkim"), 0700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.root, "lib", "dkim", "example.net"), nil, 0600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string
		want syscall.Errno
	}{
		{"dkim newkey example.net s1 ed25519\n", syscall.EIO},
		{"dkim newkey example.net s1 no-such-algorithm\n", syscall.EINVAL},
	} {
		err = write("ctl", tc.line)
		if got := errnoOf(t, errText(err)); got != tc.want {
			t.Errorf("%q: %q: 9pfuse gives %v, want %v", tc.line, errText(err), got, tc.want)
		}
	}
	// A queue action on a message gone since the line was checked.
	for _, verb := range []string{"retry", "delete", "hold", "release"} {
		if err := d.actions[verb].run([]string{"gone"}); !errors.Is(err, fs.ErrNotFound) {
			t.Errorf("%s of a message gone: %v, want it of kind fs.ErrNotFound", verb, err)
		}
	}
	// grey's words for a list at its limit, for storage, for a bad line.
	for _, tc := range []struct {
		err  string
		kind error
	}{
		{"whitelist too long", fs.ErrTooLong},
		{"blocked: file too long (limit 134217728 bytes)", fs.ErrTooLong},
		{"whitelist: write /x: no space left on device", fs.ErrIO},
		{"invalid whitelist entry 'x': not an address or network", nil},
		{"greystore down since 22:00:00: redis://127.0.0.1:6379: dial tcp 127.0.0.1:6379: i/o timeout", fs.ErrIO},
	} {
		err := listError(errors.New(tc.err))
		if tc.kind != nil && !errors.Is(err, tc.kind) || tc.kind == nil && (errors.Is(err, fs.ErrIO) || errors.Is(err, fs.ErrTooLong)) || err.Error() != tc.err {
			t.Errorf("listError(%q) = %q, want it of kind %v", tc.err, err, tc.kind)
		}
	}
}

// errnoOf returns the errno 9pfuse gives for an error text, and fails
// the test if smtpfs mount gives another.
func errnoOf(t *testing.T, text string) syscall.Errno {
	t.Helper()
	e := fstest.FuseErrno(text)
	if m := mount.Errno(text); m != e {
		t.Errorf("%q: 9pfuse gives %v, smtpfs mount %v", text, e, m)
	}
	return e
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
