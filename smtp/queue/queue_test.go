package queue

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"smtpfs/test/testlib"
)

func TestPutList(t *testing.T) {
	h := newHarness(t, testSettings())
	var ids []string
	for i, rc := range [][]string{{"bob@example.com"}, {"carol@example.net", "dave@example.org"}, {"eve@example.com"}} {
		from := []string{"alice@example.org", "", "alice@example.org"}[i]
		ids = append(ids, h.put(from, rc...))
		h.clock.Advance(time.Second)
	}
	items := h.q.List()
	if len(items) != 3 {
		t.Fatalf("List has %d items, want 3", len(items))
	}
	for i, it := range items {
		if it.ID != ids[i] {
			t.Errorf("item %d is %s, want %s (arrival order)", i, it.ID, ids[i])
		}
		if it.Size != int64(len(testMsg(it.From))) || it.Tries != 0 || it.Held || it.Next != it.Arrived {
			t.Errorf("item %d: %+v", i, it)
		}
	}
	if items[1].From != "" || !reflect.DeepEqual(items[1].Rcpts, []string{"carol@example.net", "dave@example.org"}) {
		t.Errorf("item 1: %+v", items[1])
	}
	// The files a person reads.
	env, err := os.ReadFile(filepath.Join(h.dir, ids[1]+".env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nfrom ''\n", "\nrcpt carol@example.net 0 ", "\nsize " + strconv.FormatInt(items[1].Size, 10) + "\n"} {
		if !strings.Contains(string(env), want) {
			t.Errorf("%s.env lacks %q:\n%s", ids[1], want, env)
		}
	}
	msg, err := os.ReadFile(filepath.Join(h.dir, ids[1]+".msg"))
	if err != nil || string(msg) != testMsg("") {
		t.Errorf("%s.msg = %q, %v; want %q", ids[1], msg, err, testMsg(""))
	}
	if s := h.q.Stats(); s.Queued != 3 || s.Length != 3 || s.Rcpts != 4 {
		t.Errorf("stats %+v", s)
	}
	if !strings.Contains(h.log.String(), "queued "+ids[1]+" from <> to carol@example.net,dave@example.org size ") {
		t.Errorf("log:\n%s", h.log)
	}

	// A fresh Open finds the same queue.
	h.q.Close()
	h.open(testSettings())
	if got := h.q.List(); !reflect.DeepEqual(got, items) {
		t.Errorf("after reopening:\n%+v\nwant\n%+v", got, items)
	}
}

func TestPutInvalid(t *testing.T) {
	h := newHarness(t, testSettings())
	tests := []struct {
		from  string
		rcpts []string
		want  string
	}{
		{"a@b.c", nil, "invalid envelope: no recipients"},
		{"a@b.c", []string{""}, "invalid address: empty"},
		{"a\r\nrcpt x@y.z@b.c", []string{"d@e.f"}, "control character"},
		{"a@b.c", []string{"d@e.f\n"}, "control character"},
		{"a@b.c", []string{"d e@f.g"}, "space outside quotes"},
		{"a@b.c", []string{strings.Repeat("x", 300) + "@e.f"}, "longer than"},
		{"a@b.c", make([]string, MaxRcpts+1), "too long"},
	}
	for _, tt := range tests {
		_, err := h.q.Put(context.Background(), tt.from, tt.rcpts, strings.NewReader("x\r\n"))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Put(%q, %q): %v, want %q", tt.from, tt.rcpts, err, tt.want)
		}
	}
	if n := len(h.q.List()); n != 0 {
		t.Errorf("%d messages queued, want none", n)
	}
	if left := files(t, filepath.Join(h.dir, "tmp")); len(left) != 0 {
		t.Errorf("tmp/ holds %q", left)
	}
}

// A Put whose context ends while it writes leaves nothing behind.
func TestPutCancelled(t *testing.T) {
	h := newHarness(t, testSettings())
	ctx, cancel := context.WithCancel(context.Background())
	r := readerFunc(func(p []byte) (int, error) { cancel(); return copy(p, "x"), os.ErrDeadlineExceeded })
	if _, err := h.q.Put(ctx, "a@b.c", []string{"d@e.f"}, r); err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	if left := slices.Concat(files(t, h.dir), files(t, filepath.Join(h.dir, "tmp"))); len(left) != 0 {
		t.Errorf("left behind: %q", left)
	}
}

type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// files lists the regular files in dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if de.Type().IsRegular() {
			out = append(out, de.Name())
		}
	}
	return out
}

func TestRecovery(t *testing.T) {
	h := newHarness(t, testSettings())
	good := h.put("alice@example.org", "bob@example.com")
	damaged := h.put("alice@example.org", "carol@example.com")
	short := h.put("alice@example.org", "dave@example.com")
	noMsg := h.put("alice@example.org", "eve@example.com")
	h.q.Close()

	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(h.dir, name), []byte(text), 0600); err != nil {
			t.Fatal(err)
		}
	}
	write("tmp/"+good+".msg.abc", "half a mess")                      // a writer died mid-message
	write("tmp/x.env.def", "from a@b")                                // or mid-envelope
	write("000000000000000.msg", "message whose envelope never came") // between the renames
	write(damaged+".env", "from alice@example.org\nrcpt oops\n")
	write(short+".msg", "cut")
	os.Remove(filepath.Join(h.dir, noMsg+".msg"))
	write("README", "not ours") // other files are left alone

	// A file some live process is writing: locked, so kept.
	live, err := os.Create(filepath.Join(h.dir, "tmp", "live.msg.ghi"))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if err := syscall.Flock(int(live.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	h.open(testSettings())
	items := h.q.List()
	if len(items) != 1 || items[0].ID != good {
		t.Errorf("after recovery the queue is %+v, want only %s", items, good)
	}
	if got, want := files(t, filepath.Join(h.dir, "tmp")), []string{"live.msg.ghi"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tmp/ holds %q, want %q", got, want)
	}
	if got, want := files(t, h.dir), []string{good + ".env", good + ".msg", "README"}; !reflect.DeepEqual(got, sorted(want)) {
		t.Errorf("queue holds %q, want %q", got, sorted(want))
	}
	bad := files(t, filepath.Join(h.dir, "bad"))
	for _, id := range []string{damaged, short, noMsg} {
		if !slices.Contains(bad, id+".env") {
			t.Errorf("bad/ lacks %s.env: %q", id, bad)
		}
	}
	if s := h.q.Stats(); s.Damaged != 3 {
		t.Errorf("Damaged = %d, want 3", s.Damaged)
	}
	for _, want := range []string{"removed tmp/x.env.def: half-written", "removed 000000000000000.msg: half-written",
		"damaged " + damaged + ": envelope: line 2", "damaged " + short + ": message is 3 bytes", "damaged " + noMsg + ": message:"} {
		if !strings.Contains(h.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, h.log)
		}
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func TestControl(t *testing.T) {
	h := newHarness(t, testSettings())
	a := h.put("alice@example.org", "bob@example.com")
	b := h.put("alice@example.org", "carol@example.com")
	for _, f := range []func(...string) error{h.q.Hold, h.q.Release, h.q.Retry, h.q.Delete} {
		if err := f(a, "nosuchid"); err == nil || err.Error() != "not found: nosuchid" {
			t.Errorf("unknown id: %v, want not found: nosuchid", err)
		}
	}
	if it, _ := h.item(a); it.Held {
		t.Errorf("%s held by a failed Hold", a)
	}

	if err := h.q.Hold(a); err != nil {
		t.Fatal(err)
	}
	if it, _ := h.item(a); !it.Held || !it.Next.IsZero() {
		t.Errorf("held item: %+v", it)
	}
	// Held survives a restart.
	h.q.Close()
	h.open(testSettings())
	if it, _ := h.item(a); !it.Held {
		t.Errorf("hold lost on reopening: %+v", it)
	}
	if err := h.q.Release(a); err != nil {
		t.Fatal(err)
	}
	if it, _ := h.item(a); it.Held || it.Next != h.clock.Now() {
		t.Errorf("released item: %+v, want due now", it)
	}

	f, err := h.q.OpenMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(f)
	f.Close()
	if !strings.Contains(string(data), "\r\n") || len(data) == 0 {
		t.Errorf("OpenMessage(%s) read %q", b, data)
	}
	for _, bad := range []string{"nosuchid", "all", "../" + b} {
		if _, err := h.q.OpenMessage(bad); err == nil || err.Error() != "not found: "+bad {
			t.Errorf("OpenMessage(%q): %v", bad, err)
		}
	}
	if err := h.q.Delete(b); err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.OpenMessage(b); err == nil {
		t.Errorf("OpenMessage of a deleted message succeeded")
	}
	if _, ok := h.item(b); ok {
		t.Errorf("%s listed after Delete", b)
	}
	for _, ext := range []string{".env", ".msg"} {
		if _, err := os.Stat(filepath.Join(h.dir, b+ext)); !os.IsNotExist(err) {
			t.Errorf("%s%s after Delete: %v", b, ext, err)
		}
	}
	if err := h.q.Delete(b); err == nil {
		t.Errorf("second Delete of %s succeeded", b)
	}
	if err := h.q.Hold("all"); err != nil {
		t.Fatal(err)
	}
	if s := h.q.Stats(); s.Held != 1 || s.Deleted != 1 || s.Length != 1 {
		t.Errorf("stats %+v", s)
	}
	for _, want := range []string{"held " + a, "released " + a, "deleted " + b} {
		if !strings.Contains(h.log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, h.log)
		}
	}
}

// Another process (cmd/smtpd) queues through OpenWriter; the runner finds
// its messages on its next rescan, or at once on Kick.
func TestWriterAndRescan(t *testing.T) {
	h := newHarness(t, testSettings())
	h.run()
	w, err := openWriter(h.dir, testSettings(), nil, h.clock)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	id, err := w.Put(context.Background(), "alice@example.org", []string{"bob@example.com"}, strings.NewReader(testMsg("alice@example.org")))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(w.List()); n != 0 {
		t.Errorf("writer lists %d messages", n)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("Run of a writer succeeded")
	}
	h.clock.Advance(h.q.rescanEvery)
	if got := h.wait(1); got[0] != id {
		t.Errorf("finished %s, want %s", got[0], id)
	}
	calls := h.d.take()
	if len(calls) != 1 || calls[0].rcpts[0] != "bob@example.com" {
		t.Errorf("calls %+v", calls)
	}
	if !strings.Contains(h.log.String(), "found "+id+" from alice@example.org to bob@example.com") {
		t.Errorf("log:\n%s", h.log)
	}

	// Kick looks at once, without waiting for the next rescan.
	id, err = w.Put(context.Background(), "alice@example.org", []string{"carol@example.com"}, strings.NewReader(testMsg("alice@example.org")))
	if err != nil {
		t.Fatal(err)
	}
	h.q.Kick() // the fake clock stands still: no rescan but this one
	if got := h.wait(1); got[0] != id {
		t.Errorf("after kick finished %s, want %s", got[0], id)
	}
	h.q.Kick() // nothing new: found once
	if n := strings.Count(h.log.String(), "found "+id); n != 1 {
		t.Errorf("found %d times; log:\n%s", n, h.log)
	}
}

// Two runners on one directory: the second waits for the first.
func TestRunnerLock(t *testing.T) {
	h := newHarness(t, testSettings())
	h.run()
	testlib.WaitFor(t, 10*time.Second, "the first runner to start", func() bool { return len(h.clock.pending()) == 1 })
	other, err := open(h.dir, testSettings(), h.d, nil, nil, h.clock)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherDone := make(chan string, 10)
	other.afterFinish = func(id string) { otherDone <- id }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- other.Run(ctx) }()
	testlib.WaitFor(t, 10*time.Second, "the second runner to wait", func() bool {
		return len(h.clock.pending()) == 2
	})
	h.put("alice@example.org", "bob@example.com")
	h.wait(1)
	h.halt()

	// The first is gone: the second takes over at its next look.
	b, err := other.Put(context.Background(), "alice@example.org", []string{"carol@example.com"}, strings.NewReader("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(other.rescanEvery)
	select {
	case id := <-otherDone:
		if id != b {
			t.Errorf("second runner finished %s, want %s", id, b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second runner never ran")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(h.d.take()); n != 2 {
		t.Errorf("%d deliveries, want 2", n)
	}
}

// "all" stands for every message in hold, release, retry and delete, also
// next to an id that it covers already; delete all sends no bounce.
func TestControlAll(t *testing.T) {
	h := newHarness(t, testSettings())
	var ids []string
	for range 3 {
		ids = append(ids, h.put("alice@example.org", "bob@example.com"))
	}
	if err := h.q.Hold("all", ids[0]); err != nil {
		t.Fatal(err)
	}
	if s := h.q.Stats(); s.Held != 3 {
		t.Errorf("after hold all: %d held, want 3", s.Held)
	}
	for _, id := range ids {
		env, err := os.ReadFile(filepath.Join(h.dir, id+".env"))
		if err != nil || !strings.Contains(string(env), "\nheld\n") {
			t.Errorf("envelope of %s after hold all: %q, %v", id, env, err)
		}
	}
	if err := h.q.Release("all"); err != nil {
		t.Fatal(err)
	}
	if s := h.q.Stats(); s.Held != 0 {
		t.Errorf("after release all: %d held", s.Held)
	}
	if err := h.q.Retry("all"); err != nil {
		t.Fatal(err)
	}
	if err := h.q.Delete(ids[1], "all"); err != nil {
		t.Fatal(err)
	}
	if s := h.q.Stats(); s.Length != 0 || s.Deleted != 3 || s.DSNs != 0 {
		t.Errorf("after delete all: %+v", s)
	}
	left, _ := filepath.Glob(filepath.Join(h.dir, "*.*"))
	if len(left) != 0 {
		t.Errorf("files left after delete all: %v", left)
	}
	if err := h.q.Delete("all"); err != nil {
		t.Errorf("delete all of an empty queue: %v", err)
	}
}

// Generation moves when a message joins or leaves the queue, and only
// then.
func TestGeneration(t *testing.T) {
	h := newHarness(t, testSettings())
	g0 := h.q.Generation()
	id := h.put("alice@example.org", "bob@example.com")
	g1 := h.q.Generation()
	if g1 == g0 {
		t.Errorf("Put left the generation at %d", g0)
	}
	if err := h.q.Hold(id); err != nil {
		t.Fatal(err)
	}
	if g := h.q.Generation(); g != g1 {
		t.Errorf("Hold moved the generation from %d to %d", g1, g)
	}
	if err := h.q.Delete(id); err != nil {
		t.Fatal(err)
	}
	if g := h.q.Generation(); g == g1 {
		t.Errorf("Delete left the generation at %d", g1)
	}
}
