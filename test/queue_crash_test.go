package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"9fans.net/go/plan9"

	"smtpfs/fs/fstest"
	"smtpfs/test/testlib"
)

// The crash test of issue 5: many SMTP clients send to local and remote
// recipients while the daemon is killed with SIGKILL at a random moment
// (or, every other round, stopped with SIGTERM), then restarted on the
// same mail root, several times. Every message that
// got a 250 must be, whole, in its local recipients' Maildirs and, for its
// remote recipients, in the queue or at the smarthost; nothing half
// written may ever be delivered.

const (
	crashRounds  = 5
	crashClients = 16
)

// A crashMsg is a message a client sent, and was told 250 for.
type crashMsg struct {
	token  string
	lines  int
	local  []string // users at example.org
	remote []string // addresses for the smarthost
}

// crashBody is the body of a message: its token, a number of lines that
// depends on it, and an end line, so that a copy cut short anywhere is
// seen. eol is "\r\n" as sent, "\n" as a Maildir stores it.
func crashBody(token string, lines int, eol string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "token %s lines %d%s", token, lines, eol)
	for i := range lines {
		fmt.Fprintf(&b, "%s line %d of %d: the quick brown fox jumps over the lazy dog%s", token, i, lines, eol)
	}
	fmt.Fprintf(&b, "end of %s%s", token, eol)
	return b.String()
}

var crashToken = regexp.MustCompile(`token (r[0-9]+c[0-9]+m[0-9]+) lines ([0-9]+)\r?\n`)

// crashClient sends messages over one connection after another until
// ctx is done or the daemon is gone, and reports each acknowledged one on
// acks. The end of ctx closes the connection: one the kernel had
// accepted for the daemon just as it died may never hear of its death.
func crashClient(ctx context.Context, addr string, round, id int, rng *rand.Rand, acks chan<- crashMsg) {
	for n := 0; ctx.Err() == nil; {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return // the daemon is dead
		}
		unwatch := context.AfterFunc(ctx, func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		c, err := smtp.NewClient(conn, "127.0.0.1")
		if err == nil {
			err = c.Hello("crash.example")
		}
		for err == nil && ctx.Err() == nil {
			m := crashMsg{token: fmt.Sprintf("r%dc%dm%d", round, id, n), lines: rng.IntN(300)}
			n++
			switch rng.IntN(3) {
			case 0:
				m.local = []string{fmt.Sprintf("u%d", rng.IntN(4))}
			case 1:
				m.remote = []string{fmt.Sprintf("r%d@remote.example", rng.IntN(4))}
			default:
				m.local = []string{fmt.Sprintf("u%d", rng.IntN(4))}
				m.remote = []string{fmt.Sprintf("r%d@remote.example", rng.IntN(4)), "s@other.example"}
			}
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			if err = crashSend(c, m); err == nil {
				acks <- m
			}
		}
		unwatch()
		conn.Close()
	}
}

// crashSend sends one message on c.
func crashSend(c *smtp.Client, m crashMsg) error {
	rcpts := slices.Clone(m.remote)
	for _, u := range m.local {
		rcpts = append(rcpts, u+"@example.org")
	}
	hdr := "From: alice@example.org\r\nSubject: crash " + m.token + "\r\n\r\n"
	return sendOn(c, "alice@example.org", rcpts, []byte(hdr+crashBody(m.token, m.lines, "\r\n")))
}

// A crashCopy is one delivered or queued copy of a message: its token,
// and whether it is whole.
type crashCopy struct {
	token string
	whole bool
}

// readCrashCopy finds the message in text, and checks that it is whole.
func readCrashCopy(text, eol string) (crashCopy, bool) {
	m := crashToken.FindStringSubmatch(text)
	if m == nil {
		return crashCopy{}, false
	}
	n, _ := strconv.Atoi(m[2])
	return crashCopy{token: m[1], whole: strings.HasSuffix(text, "\r\n\r\n"+crashBody(m[1], n, eol)) ||
		strings.HasSuffix(text, "\n\n"+crashBody(m[1], n, eol))}, true
}

// crashState is what is where: the tokens in each box, queued for each
// remote recipient, and at the sink for each.
type crashState struct {
	box    map[string]map[string]bool // user → token → seen
	remote map[string]map[string]bool // rcpt → token → seen (queued or at the sink)
}

func newCrashState() *crashState {
	return &crashState{box: map[string]map[string]bool{}, remote: map[string]map[string]bool{}}
}

func (s *crashState) add(m map[string]map[string]bool, k, token string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][token] = true
}

// look reads the Maildirs, then the queue, then the sink (in that order:
// a message leaves the queue only after the sink has it), and fails the
// test for any copy that is not whole.
func (s *crashState) look(t *testing.T, root string, sink *testlib.Sink) {
	t.Helper()
	users, _ := os.ReadDir(filepath.Join(root, "box"))
	for _, u := range users {
		for _, text := range boxMessages(t, root, u.Name()) {
			c, ok := readCrashCopy(text, "\n")
			if !ok || !c.whole {
				t.Errorf("box/%s has a message that is not one we sent whole:\n%.300s", u.Name(), text)
				continue
			}
			s.add(s.box, u.Name(), c.token)
		}
	}
	for _, id := range queueRecords(t, root) {
		env, err1 := os.ReadFile(filepath.Join(root, "queue", id+".env"))
		msg, err2 := os.ReadFile(filepath.Join(root, "queue", id+".msg"))
		if os.IsNotExist(err1) || os.IsNotExist(err2) {
			continue // delivered meanwhile: the sink has it
		}
		c, ok := readCrashCopy(string(msg), "\r\n")
		if !ok || !c.whole {
			t.Errorf("queued message %s is not one we sent whole:\n%.300s", id, msg)
			continue
		}
		for _, l := range strings.Split(string(env), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "rcpt" {
				s.add(s.remote, f[1], c.token)
			}
		}
	}
	for _, m := range sink.Messages() {
		c, ok := readCrashCopy(string(m.Data), "\r\n")
		if !ok || !c.whole {
			t.Errorf("the sink got a message that is not one we sent whole:\n%.300s", m.Data)
			continue
		}
		for _, r := range m.Rcpts {
			s.add(s.remote, r, c.token)
		}
	}
}

// check fails the test for each acknowledged message that is missing
// somewhere, and returns how many copies it checked.
func (s *crashState) check(t *testing.T, acked []crashMsg) int {
	t.Helper()
	n, lost := 0, 0
	for _, m := range acked {
		for _, u := range m.local {
			n++
			if !s.box[u][m.token] {
				lost++
				t.Errorf("%s was acknowledged, but box/%s does not have it", m.token, u)
			}
		}
		for _, r := range m.remote {
			n++
			if !s.remote[r][m.token] {
				lost++
				t.Errorf("%s was acknowledged, but it is neither queued for %s nor at the sink", m.token, r)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged copies lost", lost, n)
	}
	return n
}

func TestQueueCrash(t *testing.T) {
	sink := testlib.NewSink(t, testlib.SinkOptions{})
	root := filepath.Join(t.TempDir(), "mail")
	os.MkdirAll(filepath.Join(root, "lib"), 0755)
	conf := queueConf + "smarthost tcp!127.0.0.1!" + sink.Port() + "\nbackoff 1s\n"
	if err := os.WriteFile(filepath.Join(root, "lib", "smtpd.conf"), []byte(conf), 0644); err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	var acked []crashMsg
	for round := range crashRounds {
		d := startDaemon(t, root)
		if round > 0 {
			// Recovered: everything acknowledged before is here.
			s := newCrashState()
			s.look(t, root, sink)
			s.check(t, acked)
		}
		kill := 10 + rng.IntN(120) // acknowledgements before the kill
		ctx, stop := context.WithCancel(context.Background())
		acks := make(chan crashMsg, 1000)
		var wg sync.WaitGroup
		for c := range crashClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				crashClient(ctx, d.SMTP[0], round, c, rand.New(rand.NewPCG(seed, uint64(round*crashClients+c+1))), acks)
			}()
		}
		for n := 0; n < kill; n++ {
			select {
			case m := <-acks:
				acked = append(acked, m)
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: %d messages acknowledged in 20s, want %d\n%s", round, n, kill, d.Stderr)
			}
		}
		how := "SIGKILL"
		if round%2 == 1 {
			// SIGTERM: sessions may finish their transaction, the
			// runner abandons its deliveries; nothing is lost either.
			how = "SIGTERM"
			d.Stop(t)
		} else {
			d.Kill()
		}
		stop()
		wg.Wait()
		close(acks)
		for m := range acks {
			acked = append(acked, m)
		}
		t.Logf("round %d: %s after %d acknowledgements; %d in all", round, how, kill, len(acked))
	}

	// The last restart delivers everything.
	d := startDaemon(t, root)
	fsys := fstest.Dial(t, d.NineP[0])
	if err := fstest.Write(fsys, "ctl", plan9.OWRITE, "kick\n"); err != nil {
		t.Fatal(err)
	}
	testlib.WaitFor(t, 15*time.Second, "the queue to empty", func() bool {
		return fstest.Read(t, fsys, "queue") == "" && len(queueRecords(t, root)) == 0
	})
	s := newCrashState()
	s.look(t, root, sink)
	n := s.check(t, acked)
	for _, dir := range []string{"queue/tmp", "queue/bad"} {
		if left, _ := os.ReadDir(filepath.Join(root, dir)); len(left) != 0 {
			t.Errorf("%s holds %d files after the recovery", dir, len(left))
		}
	}
	t.Logf("%d messages acknowledged, %d copies checked, %d at the sink; %d half-written queue files removed",
		len(acked), n, len(sink.Messages()), strings.Count(runqLog(t, root), ": half-written"))
}
