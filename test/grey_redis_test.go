package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"9fans.net/go/plan9"
	"github.com/redis/go-redis/v9"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// The Redis tests run several daemons, each on a mail root of its own,
// on one private redis-server: the MX hosts of a domain, on one machine.
// "Time passes" as in the file tests, by moving the first attempt of a
// triplet back, here in Redis: a triplet is a member of the client's
// sorted set, smtpfs:t:<client>, scored by its first attempt in Unix
// milliseconds (see grey/redisstore).

// startRedisHost starts smtpfs with greystore on r and the extra
// configuration conf, with the arguments args.
func startRedisHost(t *testing.T, r *testlib.Redis, conf string, args ...string) *Daemon {
	t.Helper()
	return startMail(t, "greystore "+r.URL(0)+"\n"+conf, args...)
}

// redisClient is a plain client on r, to look at what the hosts share.
func redisClient(t *testing.T, r *testlib.Redis) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// backdateRedis moves the first attempt of the triplet of a client
// (an address: greyprefix 32) to rcpt back by ago.
func backdateRedis(t *testing.T, c *redis.Client, client, rcpt string, ago time.Duration) {
	t.Helper()
	ctx := context.Background()
	key, member := "smtpfs:t:"+client, client+"/"+rcpt
	score, err := c.ZScore(ctx, key, member).Result()
	if err != nil {
		t.Fatalf("the triplet %s %s: %v", key, member, err)
	}
	if err := c.ZAdd(ctx, key, redis.Z{Score: score - float64(ago.Milliseconds()), Member: member}).Err(); err != nil {
		t.Fatal(err)
	}
}

// ninepRead reads a file of the daemon's tree.
func ninepRead(t *testing.T, d *Daemon, name string) string {
	t.Helper()
	return fstest.Read(t, fstest.Dial(t, d.NineP[0]), name)
}

// TestRedisThreeHosts: three daemons on one Redis, on three addresses. A
// first try at host A is refused (451); the retry at host B after the
// window passes and is
// delivered there; host C then has the client in `cat whitelist` (9P)
// and lets it through at once. An address written to A's whitelist
// passes at C at once; one unwhitelisted at B is refused at C soon
// after. The whitelist reads the same at every host.
func TestRedisThreeHosts(t *testing.T) {
	r := testlib.NewRedis(t)
	rc := redisClient(t, r)
	// Each host on an address of its own, as MX hosts are.
	a := startRedisHost(t, r, "", "-g")
	b := startRedisHost(t, r, "", "-g", "-l", "tcp!127.0.0.2!0")
	c := startRedisHost(t, r, "", "-g", "-l", "tcp!127.0.0.3!0")

	if got := greyTry(t, a, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Fatalf("first try at A: %q, want %q", got, greyRefusal)
	}
	if got := greyTry(t, b, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("retry at once at B: %q, want %q", got, greyRefusal)
	}
	backdateRedis(t, rc, "127.0.0.5", "bob@localhost", 6*time.Minute)
	if got := greyTry(t, b, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Fatalf("retry at B after 6 minutes: %q", got)
	}
	if m := boxMessages(t, b.Root, "bob"); len(m) != 1 {
		t.Errorf("bob has %d messages at B", len(m))
	}
	if w := ninepRead(t, c, "whitelist"); w != "127.0.0.5\n" {
		t.Errorf("cat whitelist at C: %q, want %q", w, "127.0.0.5\n")
	}
	if got := greyTry(t, c, "127.0.0.5", "alice@sender.example", "carol@localhost"); got != greySent {
		t.Errorf("the whitelisted client at C: %q", got)
	}

	// echo 127.0.0.30 partner >> whitelist at A: C lets it through at
	// once, without waiting for its index.
	if err := fstest.Write(fstest.Dial(t, a.NineP[0]), "whitelist", plan9.OWRITE, "# partners\n127.0.0.30 partner.example\n"); err != nil {
		t.Fatal(err)
	}
	if got := greyTry(t, c, "127.0.0.30", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("127.0.0.30 at C right after A's append: %q", got)
	}
	want := "127.0.0.5\n# partners\n127.0.0.30 partner.example\n"
	for i, d := range []*Daemon{a, b, c} {
		if w := ninepRead(t, d, "whitelist"); w != want {
			t.Errorf("cat whitelist at host %d: %q, want %q", i, w, want)
		}
	}
	if w := whitelistText(t, a); w != "" {
		t.Errorf("grey/whitelist at A: %q; the shared list is in Redis", w)
	}

	if err := ctl(t, b, "unwhitelist 127.0.0.30\n"); err != nil {
		t.Fatal(err)
	}
	testlib.WaitFor(t, 10*time.Second, "C to refuse 127.0.0.30", func() bool {
		return greyTry(t, c, "127.0.0.30", "alice@sender.example", "dave@localhost") == greyRefusal
	})
	for i, d := range []*Daemon{a, b, c} {
		if got := statValue(t, d, "greystore.up"); got != "1" {
			t.Errorf("greystore.up at host %d: %s", i, got)
		}
	}
	logHas(t, logText(t, a), "no call registered for 127.0.0.5/bob@localhost; registering")
	logHas(t, logText(t, b), "127.0.0.5/bob@localhost was grey; adding IP to white")
	logHas(t, logText(t, c), "127.0.0.5 whitelisted")
	if !strings.Contains(ninepRead(t, a, "ctl"), "greystore "+r.URL(0)+"\n") {
		t.Errorf("cat ctl does not show greystore")
	}
}

// TestRedisImport: a host that switches to Redis through ctl brings its
// grey/whitelist along, once; another host's file merges into it; the
// shared list exported back to a host's file survives a switch back to
// greystore file.
func TestRedisImport(t *testing.T) {
	r := testlib.NewRedis(t)
	withList := func(list string) *Daemon {
		root := filepath.Join(t.TempDir(), "mail")
		os.MkdirAll(filepath.Join(root, "grey"), 0700)
		os.WriteFile(filepath.Join(root, "grey", "whitelist"), []byte(list), 0600)
		return startDaemon(t, root, "-g")
	}
	a := withList("# partners\n127.0.0.20 partner.example\n")
	b := withList("127.0.0.21\n127.0.0.20 same\n")
	for _, d := range []*Daemon{a, b} {
		if err := ctl(t, d, "greystore "+r.URL(0)+"\n"); err != nil {
			t.Fatal(err)
		}
		waitLog(t, d, "imported the local whitelist")
	}
	want := "# partners\n127.0.0.20 partner.example\n127.0.0.21\n"
	if w := ninepRead(t, a, "whitelist"); w != want {
		t.Errorf("the shared whitelist: %q, want %q", w, want)
	}
	if got := greyTry(t, a, "127.0.0.21", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("B's entry at A: %q", got)
	}
	// Two writes: the actions of a write run after its settings, and
	// exportwhitelist must read Redis before greystore file leaves it.
	if err := ctl(t, a, "exportwhitelist\n"); err != nil {
		t.Fatal(err)
	}
	if err := ctl(t, a, "greystore file\n"); err != nil {
		t.Fatal(err)
	}
	if w := whitelistText(t, a); w != want {
		t.Errorf("grey/whitelist at A after the export: %q, want %q", w, want)
	}
	if got := greyTry(t, a, "127.0.0.21", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("B's entry at A, back on the files: %q", got)
	}
}

// TestRedisOutage: Redis dies in the middle of a stream of sessions, one
// of them between its RCPT and its DATA. Every session is answered,
// promptly: by the greylist while Redis is there, by greyfail open (the
// message passes) while it is not. The log and stats say when the store
// went down and when it came back; then the greylist works again.
func TestRedisOutage(t *testing.T) {
	r := testlib.NewRedis(t)
	d := startRedisHost(t, r, "", "-g")
	ip := func(i int) string { return fmt.Sprintf("127.0.1.%d", i) }
	for i := range 5 {
		if got := greyTry(t, d, ip(i), "alice@sender.example", "bob@localhost"); got != greyRefusal {
			t.Errorf("session %d, Redis up: %q, want %q", i, got, greyRefusal)
		}
	}
	// A session waits at DATA while Redis dies.
	s := ehlo(t, d, ip(5))
	s.Send("MAIL FROM:<alice@sender.example>")
	s.Expect("250 ")
	s.Send("RCPT TO:<bob@localhost>")
	s.Expect("250 ")
	r.Kill()
	start := time.Now()
	s.Send("DATA")
	s.Expect("354 ")
	s.Write(greyMsg + ".\r\n")
	s.Expect("250 ")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the session at DATA waited %v for a dead Redis", took)
	}
	for i := 6; i < 16; i++ {
		start := time.Now()
		if got := greyTry(t, d, ip(i), "alice@sender.example", "bob@localhost"); got != greySent {
			t.Errorf("session %d, Redis down: %q, want %q (greyfail open)", i, got, greySent)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("session %d took %v", i, took)
		}
	}
	if got := statValue(t, d, "greystore.up"); got != "0" {
		t.Errorf("greystore.up while down: %s", got)
	}
	if got := statValue(t, d, "greylist.unchecked"); got != "11" {
		t.Errorf("greylist.unchecked: %s, want 11", got)
	}
	waitLog(t, d, "greystore "+r.URL(0)+": down: ")

	r.Restart()
	waitLog(t, d, "greystore "+r.URL(0)+": back after ")
	if got := statValue(t, d, "greystore.up"); got != "1" {
		t.Errorf("greystore.up when back: %s", got)
	}
	if got := statValue(t, d, "greystore.outages"); got != "1" {
		t.Errorf("greystore.outages: %s", got)
	}
	if got := greyTry(t, d, ip(20), "alice@sender.example", "bob@localhost"); got != greyRefusal {
		t.Errorf("after Redis came back: %q, want %q", got, greyRefusal)
	}
	if n := len(boxMessages(t, d.Root, "bob")); n != 11 {
		t.Errorf("bob has %d messages, want 11", n)
	}
}

// TestRedisAuthLockout: AUTH failures at host A lock the client out at
// host B, and the smtpd program, run once per session on a third root,
// sees the lockout too.
func TestRedisAuthLockout(t *testing.T) {
	r := testlib.NewRedis(t)
	conf := "greystore " + r.URL(0) + "\n"
	a, _ := startTLSMail(t, conf, "glenda s3cret\n", "-p")
	b, _ := startTLSMail(t, conf, "glenda s3cret\n", "-p")
	plain := func(pw string) string { return "AUTH PLAIN " + b64("\x00glenda\x00"+pw) }
	for range authFailMax {
		s := ehlo(t, a, "127.0.0.9")
		s.Send(plain("wrong"))
		s.Expect("535 ")
	}
	s := ehlo(t, b, "127.0.0.9")
	s.Send(plain("s3cret"))
	s.Expect("454 4.7.0 too many authentication failures, try later")
	s = ehlo(t, b, "127.0.0.10")
	s.Send(plain("s3cret"))
	s.Expect("235 ")

	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte(conf), 0644)
	os.WriteFile(filepath.Join(root, "lib", "secrets"), []byte("glenda s3cret\n"), 0600)
	netdir := t.TempDir()
	os.WriteFile(filepath.Join(netdir, "remote"), []byte("127.0.0.9!4321\n"), 0644)
	os.WriteFile(filepath.Join(netdir, "local"), []byte("127.0.0.1!25\n"), 0644)
	p := startSmtpdPipe(t, "-R", root, "-n", netdir, "-p")
	p.Expect("220 ")
	p.Send("EHLO client.example.net")
	p.Expect("250 ")
	p.Send(plain("s3cret"))
	p.Expect("454 4.7.0 ")
	p.Send("QUIT")
	p.Expect("221 ")
	p.wait(t)
	if _, err := os.Stat(filepath.Join(a.Root, "grey", "authfail")); !os.IsNotExist(err) {
		t.Errorf("grey/authfail at A: %v; the counts are in Redis", err)
	}
}

// TestRedisSmtpdProgram: the smtpd program greylists on the shared store
// too: a first try through it is refused, and the retry at a daemon after
// the window passes.
func TestRedisSmtpdProgram(t *testing.T) {
	r := testlib.NewRedis(t)
	d := startRedisHost(t, r, "", "-g")
	netdir := t.TempDir()
	os.WriteFile(filepath.Join(netdir, "remote"), []byte("127.0.0.5!4321\n"), 0644)
	os.WriteFile(filepath.Join(netdir, "local"), []byte("127.0.0.1!25\n"), 0644)
	p := startSmtpdPipe(t, "-R", d.Root, "-n", netdir, "-g")
	p.Expect("220 ")
	if got := attempt(t, p.Raw, "alice@sender.example", []string{"bob@localhost"}, greyMsg); got != greyRefusal {
		t.Fatalf("first try through smtpd: %q, want %q", got, greyRefusal)
	}
	p.wait(t)
	backdateRedis(t, redisClient(t, r), "127.0.0.5", "bob@localhost", 6*time.Minute)
	if got := greyTry(t, d, "127.0.0.5", "alice@sender.example", "bob@localhost"); got != greySent {
		t.Errorf("retry at the daemon: %q", got)
	}
	if _, err := os.Stat(filepath.Join(d.Root, "grey", "tmp")); !os.IsNotExist(err) {
		t.Errorf("grey/tmp: %v; the triplets are in Redis", err)
	}
}
