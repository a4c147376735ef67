package testlib

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A Redis is a private redis-server for one test: on a loopback port of
// its own, in a directory of its own, without persistence, run in the
// foreground as a child of the test. NewRedis starts it and the test's
// cleanup kills it, whether the test passed or not.
type Redis struct {
	Addr string // 127.0.0.1:port
	Dir  string

	t    testing.TB
	port int
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *strings.Builder // what it printed, for failures
}

// RedisServer is the program NewRedis runs.
const RedisServer = "redis-server"

// NewRedis starts a redis-server for the test, or skips the test, saying
// why, when there is no redis-server on $PATH.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath(RedisServer); err != nil {
		t.Skipf("no %s on $PATH (Debian: apt-get install redis-server): %v", RedisServer, err)
	}
	r := &Redis{t: t, Dir: t.TempDir()}
	t.Cleanup(r.Kill)
	var err error
	for range 3 { // a free port may be taken between asking and binding
		if r.port, err = freePort(); err != nil {
			continue
		}
		if err = r.start(); err == nil {
			r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
			return r
		}
	}
	t.Fatalf("redis-server: %v", err)
	return nil
}

// URL returns the store's URL for database db, as greystore takes it.
func (r *Redis) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr, db) }

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start runs redis-server on r.port and waits until it says it is ready.
func (r *Redis) start() error {
	cmd := exec.Command(RedisServer, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.Dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	done, ready, out := make(chan struct{}), make(chan bool, 1), &strings.Builder{}
	var outMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			outMu.Lock()
			out.WriteString(sc.Text() + "\n")
			outMu.Unlock()
			if !said && strings.Contains(sc.Text(), "Ready to accept connections") {
				said = true
				ready <- true
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		if !said {
			ready <- false
		}
		close(done)
	}()
	select {
	case ok := <-ready:
		if !ok {
			outMu.Lock()
			defer outMu.Unlock()
			return fmt.Errorf("exited before it was ready:\n%s", out)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		return errors.New("not ready after 20s")
	}
	r.mu.Lock()
	r.cmd, r.done, r.out = cmd, done, out
	r.mu.Unlock()
	return nil
}

// Kill kills the server at once, as a crash would, and waits for it to
// exit. It is safe to call when it is not running.
func (r *Redis) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart starts the server again on the same port, empty (it keeps
// nothing on disk), after Kill.
func (r *Redis) Restart() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("redis-server on port %d again: %v", r.port, err)
	}
}

// Do sends one command to the server on a connection of its own and
// returns the first line of the reply (RESP: "+OK", ":3", "$5", "-ERR
// ..."), for tests that poke at the server without a client library.
func (r *Redis) Do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}
