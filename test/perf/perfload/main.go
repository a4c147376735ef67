// Perfload is the load and measuring tool of test/perf/run. It is never
// part of the product.
//
//	perfload send -a host:port -s sessions -m messages [-l bytes] [-f from] [-t rcpt] [-pid server]
//	perfload run [-pid server] command [arg...]
//	perfload idle -a host:port -n conns [-pid server] [-src count]
//	perfload fill -d queuedir -n messages [-t rcpt] [-l bytes]
//	perfload cat -ns socket file
//	perfload ctl -ns socket text...
//	perfload wait [-want n] -ns socket [-field name] | dir...
//	perfload count dir...
//	perfload cpu -pid server
//	perfload port
//
// send speaks SMTP as smtp-source -d does (each session sends message
// after message over one connection, no pipelining) and prints the rate
// and the p50/p99 time from the DATA command to the 250 that ends the
// message. run runs a command (smtp-source) and prints its wall time.
// With -pid, both also print the CPU seconds the server's process tree
// used meanwhile (its processes and the children they reaped, from
// /proc/pid/stat) and the peak of the tree's summed proportional set size
// (Pss of /proc/pid/smaps_rollup, sampled every 50 ms), so that a server
// of many processes sharing pages is not counted many times over.
//
// idle holds conns sessions open after their greeting, prints the
// server's RSS and peak RSS (VmRSS, VmHWM) and how long a newcomer waits
// for its greeting. fill writes held messages into a stopped daemon's
// queue directory in the on-disk format of smtpfs(8). cat times reading a
// 9P file to its end; ctl writes a line to the ctl file. wait waits until
// a counter of the daemon's stats file (queue.length unless -field says),
// or the number of files under the directories, is -want (0; a -want
// above 0 is reached by a count at or above it) and prints how long that
// took. count prints the number of files under the
// directories (0 if they do not exist). cpu prints the CPU seconds a server's tree has used
// so far (as above). port prints a free loopback TCP port.
//
// Results are printed as one line of name=value words.
package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"9fans.net/go/plan9"
	"9fans.net/go/plan9/client"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmds := map[string]func([]string) error{
		"send": send, "run": run, "idle": idle, "fill": fill,
		"cat": cat, "ctl": ctl, "wait": wait, "count": count, "cpu": cpu, "port": port,
	}
	f := cmds[os.Args[1]]
	if f == nil {
		usage()
	}
	if err := f(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "perfload %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: perfload send|run|idle|fill|cat|ctl|wait|count|cpu|port [flags] (see the source)")
	os.Exit(2)
}

// message returns a message of about size bytes: a few headers and lines
// of 76 characters, CRLF, no line starting with a dot.
func message(from, to string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: perfload\r\nMessage-ID: <%s@perfload>\r\n\r\n", from, to, rand.Text())
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 3)[:76] + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	return []byte(b.String())
}

// conn is one SMTP client connection.
type conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// replyTimeout bounds the wait for each reply, so that a server that
// stops answering fails the run instead of hanging it (RFC 5321
// §4.5.3.2 gives a client 2 to 10 minutes per command).
const replyTimeout = 2 * time.Minute

// reply reads one reply, all its lines, and checks its code's first digit.
func (c *conn) reply(want byte) error {
	c.c.SetDeadline(time.Now().Add(replyTimeout))
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(l) < 4 || l[0] != want {
			return fmt.Errorf("unexpected reply %q", strings.TrimSpace(l))
		}
		if l[3] != '-' {
			return nil
		}
	}
}

func (c *conn) cmd(want byte, format string, a ...any) error {
	c.c.SetDeadline(time.Now().Add(replyTimeout))
	fmt.Fprintf(c.w, format+"\r\n", a...)
	if err := c.w.Flush(); err != nil {
		return err
	}
	return c.reply(want)
}

func dial(addr string, local net.Addr) (*conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second, LocalAddr: local}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	cn := &conn{c: c, r: bufio.NewReader(c), w: bufio.NewWriterSize(c, 16<<10)}
	if err := cn.reply('2'); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %v", err)
	}
	return cn, nil
}

func send(args []string) error {
	fl := flag.NewFlagSet("send", flag.ExitOnError)
	addr := fl.String("a", "127.0.0.1:2525", "server `host:port`")
	sessions := fl.Int("s", 1, "parallel sessions")
	total := fl.Int("m", 100, "messages in all")
	size := fl.Int("l", 5120, "message size in bytes")
	from := fl.String("f", "perf@bench.example", "sender")
	to := fl.String("t", "box@bench.example", "recipient")
	pid := fl.Int("pid", 0, "server `pid` whose process tree to watch")
	fl.Parse(args)
	msg := message(*from, *to, *size)
	w := watch(*pid)
	var next atomic.Int64
	lat := make([][]time.Duration, *sessions)
	errs := make([]error, *sessions)
	var wg sync.WaitGroup
	start := time.Now()
	for s := range *sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[s], errs[s] = session(*addr, *from, *to, msg, int64(*total), &next)
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	usage := w.stop()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%d of %d messages sent: %v", len(all), *total, err)
	}
	slices.Sort(all)
	fmt.Printf("sessions=%d msgs=%d secs=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f%s\n",
		*sessions, len(all), secs, float64(len(all))/secs, ms(pct(all, 50)), ms(pct(all, 99)), usage)
	return nil
}

func run(args []string) error {
	fl := flag.NewFlagSet("run", flag.ExitOnError)
	pid := fl.Int("pid", 0, "server `pid` whose process tree to watch")
	fl.Parse(args)
	if fl.NArg() == 0 {
		return errors.New("no command")
	}
	cmd := exec.Command(fl.Arg(0), fl.Args()[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	w := watch(*pid)
	start := time.Now()
	err := cmd.Run()
	secs := time.Since(start).Seconds()
	usage := w.stop()
	if err != nil {
		return fmt.Errorf("%s: %v", fl.Arg(0), err)
	}
	fmt.Printf("secs=%.3f%s\n", secs, usage)
	return nil
}

// A watcher follows a server's process tree while a load runs.
type watcher struct {
	pid  int
	cpu0 float64
	peak int64 // kB
	done chan bool
	wg   sync.WaitGroup
}

// watch starts sampling pid's tree; pid 0 watches nothing.
func watch(pid int) *watcher {
	w := &watcher{pid: pid, done: make(chan bool)}
	if pid == 0 {
		return w
	}
	cpu, _ := treeUsage(pid, false)
	w.cpu0 = cpu
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			_, pss := treeUsage(pid, true)
			w.peak = max(w.peak, pss)
			select {
			case <-w.done:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// stop ends the watch and returns its figures as name=value words.
func (w *watcher) stop() string {
	if w.pid == 0 {
		return ""
	}
	close(w.done)
	w.wg.Wait()
	cpu, pss := treeUsage(w.pid, true)
	w.peak = max(w.peak, pss)
	return fmt.Sprintf(" cpu_secs=%.2f peak_pss_mb=%.1f", cpu-w.cpu0, float64(w.peak)/1024)
}

// treeUsage returns the CPU seconds of pid and its descendants (user and
// system, their own and their reaped children's) and, with pss, the sum
// of their proportional set sizes in kB.
func treeUsage(pid int, pss bool) (cpu float64, kb int64) {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	ticks := map[int]float64{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; fields after
		// its closing parenthesis are numbered from 3 (state).
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		parent[p], _ = strconv.Atoi(f[1])
		var t float64
		for _, k := range f[11:15] { // utime stime cutime cstime
			v, _ := strconv.ParseFloat(k, 64)
			t += v
		}
		ticks[p] = t
	}
	for p := range ticks {
		// The walk up is bounded: /proc is not read at one instant, and
		// a reused pid could make a loop of parents.
		q := p
		for n := 0; q != 0 && q != pid && n < len(parent); n++ {
			q = parent[q]
		}
		if q != pid {
			continue
		}
		cpu += ticks[p] / 100 // USER_HZ
		if pss {
			kb += smapsPss(p)
		}
	}
	return cpu, kb
}

func smapsPss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// session sends messages over one connection until next reaches total and
// returns the DATA-to-250 time of each.
func session(addr, from, to string, msg []byte, total int64, next *atomic.Int64) ([]time.Duration, error) {
	c, err := dial(addr, nil)
	if err != nil {
		return nil, err
	}
	defer c.c.Close()
	if err := c.cmd('2', "EHLO perfload.example"); err != nil {
		return nil, err
	}
	var lat []time.Duration
	for next.Add(1) <= total {
		if err := c.cmd('2', "MAIL FROM:<%s>", from); err != nil {
			return lat, err
		}
		if err := c.cmd('2', "RCPT TO:<%s>", to); err != nil {
			return lat, err
		}
		t := time.Now()
		if err := c.cmd('3', "DATA"); err != nil {
			return lat, err
		}
		c.w.Write(msg)
		if err := c.cmd('2', "."); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t))
	}
	c.cmd('2', "QUIT")
	return lat, nil
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[(len(d)-1)*p/100]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func idle(args []string) error {
	fl := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fl.String("a", "127.0.0.1:2525", "server `host:port`")
	n := fl.Int("n", 10000, "connections to hold")
	pid := fl.Int("pid", 0, "server `pid` whose RSS to read")
	srcs := fl.Int("src", 10, "source addresses 127.0.0.2 onwards")
	fl.Parse(args)
	conns := make([]*conn, *n)
	errs := make([]error, *n)
	var wg sync.WaitGroup
	sem := make(chan bool, 100) // dials at once
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		sem <- true
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%*srcs))}
			conns[i], errs[i] = dial(*addr, src)
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.c.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("opening %d sessions: %v", *n, firstErr(errs))
	}
	opened := time.Since(start)
	rss, hwm := "?", "?"
	if *pid != 0 {
		rss, hwm = procKB(*pid, "VmRSS"), procKB(*pid, "VmHWM")
	}
	t := time.Now()
	c, err := dial(*addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("newcomer: %v", err)
	}
	greet := time.Since(t)
	c.cmd('2', "QUIT")
	c.c.Close()
	fmt.Printf("conns=%d open_secs=%.2f rss_kb=%s hwm_kb=%s newcomer_ms=%.2f\n",
		*n, opened.Seconds(), rss, hwm, ms(greet))
	return nil
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// procKB returns the kB figure of a /proc/pid/status field.
func procKB(pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSuffix(strings.TrimSpace(v), " kB")
		}
	}
	return "?"
}

// fill writes n held messages in the on-disk format (smtpfs(8), The queue):
// a fixture for a daemon that is not running, so nothing is fsynced.
func fill(args []string) error {
	fl := flag.NewFlagSet("fill", flag.ExitOnError)
	dir := fl.String("d", "", "queue `directory`")
	n := fl.Int("n", 100000, "messages")
	to := fl.String("t", "user@remote.example", "recipient")
	size := fl.Int("l", 1024, "message size in bytes")
	fl.Parse(args)
	if *dir == "" {
		return errors.New("no -d")
	}
	if err := os.MkdirAll(*dir, 0700); err != nil {
		return err
	}
	msg := message("perf@bench.example", *to, *size)
	base := time.Now().Add(-time.Hour)
	for i := range *n {
		t := base.Add(time.Duration(i) * time.Millisecond)
		id := queueID(t)
		env := fmt.Sprintf("# smtpfs queue envelope; the format is in smtpfs(8), The queue\n"+
			"from perf@bench.example\narrived %s\nsize %d\nheld\nrcpt %s 0 %s ''\n",
			t.UTC().Format(time.RFC3339Nano), len(msg), *to, t.UTC().Format(time.RFC3339Nano))
		if err := os.WriteFile(filepath.Join(*dir, id+".msg"), msg, 0600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*dir, id+".env"), []byte(env), 0600); err != nil {
			return err
		}
	}
	fmt.Printf("filled=%d\n", *n)
	return nil
}

// queueID makes an id of the documented shape: 8 base-36 digits of the
// time in milliseconds, then 7 random ones.
func queueID(t time.Time) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	ms := strconv.FormatUint(uint64(t.UnixMilli()), 36)
	r := strings.ToLower(rand.Text())
	var b strings.Builder
	b.WriteString(strings.Repeat("0", max(0, 8-len(ms))) + ms)
	for i := 0; b.Len() < 15; i++ {
		if strings.IndexByte(digits, r[i]) >= 0 {
			b.WriteByte(r[i])
		}
	}
	return b.String()
}

func attach(ns string) (*client.Fsys, *client.Conn, error) {
	c, err := client.Dial("unix", ns)
	if err != nil {
		return nil, nil, err
	}
	fsys, err := c.Attach(nil, os.Getenv("USER"), "")
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return fsys, c, nil
}

func cat(args []string) error {
	fl := flag.NewFlagSet("cat", flag.ExitOnError)
	ns := fl.String("ns", "", "9P unix `socket`")
	fl.Parse(args)
	if fl.NArg() != 1 {
		return errors.New("usage: cat -ns socket file")
	}
	t := time.Now()
	fsys, c, err := attach(*ns)
	if err != nil {
		return err
	}
	defer c.Close()
	b, err := readFile(fsys, fl.Arg(0))
	if err != nil {
		return err
	}
	fmt.Printf("file=%s bytes=%d lines=%d secs=%.3f\n", fl.Arg(0), len(b), strings.Count(string(b), "\n"), time.Since(t).Seconds())
	return nil
}

func readFile(fsys *client.Fsys, name string) ([]byte, error) {
	fid, err := fsys.Open(name, plan9.OREAD)
	if err != nil {
		return nil, err
	}
	defer fid.Close()
	return io.ReadAll(fid)
}

func ctl(args []string) error {
	fl := flag.NewFlagSet("ctl", flag.ExitOnError)
	ns := fl.String("ns", "", "9P unix `socket`")
	fl.Parse(args)
	fsys, c, err := attach(*ns)
	if err != nil {
		return err
	}
	defer c.Close()
	fid, err := fsys.Open("ctl", plan9.OWRITE)
	if err != nil {
		return err
	}
	if _, err := fid.Write([]byte(strings.Join(fl.Args(), " ") + "\n")); err != nil {
		fid.Close()
		return err
	}
	return fid.Close()
}

// wait waits until a counter of the daemon's stats file, or the number of
// files under directories (Postfix's spool, a Maildir), is -want (a
// -want above 0 is a count that grows: reaching it or more will do), and
// prints how long that took.
func wait(args []string) error {
	fl := flag.NewFlagSet("wait", flag.ExitOnError)
	ns := fl.String("ns", "", "9P unix `socket` of smtpfs")
	field := fl.String("field", "queue.length", "stats counter")
	want := fl.Int("want", 0, "the count to wait for")
	limit := fl.Duration("timeout", 5*time.Minute, "give up after")
	fl.Parse(args)
	var count func() (int, error)
	if *ns != "" {
		fsys, c, err := attach(*ns)
		if err != nil {
			return err
		}
		defer c.Close()
		count = func() (int, error) {
			b, err := readFile(fsys, "stats")
			if err != nil {
				return 0, err
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, *field+" "); ok {
					return strconv.Atoi(v)
				}
			}
			return 0, fmt.Errorf("no %s in stats", *field)
		}
	} else {
		count = func() (int, error) { return countFiles(fl.Args()) }
	}
	t := time.Now()
	for {
		n, err := count()
		if err != nil {
			return err
		}
		if n == *want || *want > 0 && n > *want {
			break
		}
		if time.Since(t) > *limit {
			return fmt.Errorf("%d, not %d, after %v", n, *want, *limit)
		}
		time.Sleep(10 * time.Millisecond) // polling what another process does
	}
	fmt.Printf("wait_secs=%.3f\n", time.Since(t).Seconds())
	return nil
}

func count(args []string) error {
	n, err := countFiles(args)
	if err != nil {
		return err
	}
	fmt.Println(n)
	return nil
}

func cpu(args []string) error {
	fl := flag.NewFlagSet("cpu", flag.ExitOnError)
	pid := fl.Int("pid", 0, "server `pid`")
	fl.Parse(args)
	if *pid == 0 {
		return errors.New("no -pid")
	}
	s, _ := treeUsage(*pid, false)
	fmt.Printf("cpu_secs=%.2f\n", s)
	return nil
}

// port prints a loopback TCP port that was free a moment ago.
func port(args []string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}

func countFiles(dirs []string) (int, error) {
	n := 0
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // a file gone while we look
				}
				return err
			}
			if e.Type().IsRegular() {
				n++
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return n, nil
}
