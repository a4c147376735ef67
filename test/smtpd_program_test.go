package test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// smtpdProgram is one session of the smtpd program, run as inetd runs it:
// on the accepted socket of a client (startSmtpd), or on pipes with the
// client's address from -n netdir (startSmtpdPipe).
type smtpdProgram struct {
	*Raw
	cmd    *exec.Cmd
	stderr *SyncBuffer
}

// startSmtpd connects from ip and runs smtpd with args on the accepted
// socket.
func startSmtpd(t *testing.T, ip string, args ...string) *smtpdProgram {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.(*net.TCPConn).File()
	sc.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := runSmtpd(t, f, f, args)
	c.SetDeadline(time.Now().Add(60 * time.Second))
	p.Raw = &Raw{t: t, C: c, R: bufio.NewReader(c)}
	return p
}

// startSmtpdPipe runs smtpd with args on two pipes, its standard input and
// output; args give the client's address (-n netdir).
func startSmtpdPipe(t *testing.T, args ...string) *smtpdProgram {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inW.Close(); outR.Close() })
	p := runSmtpd(t, inR, outW, args)
	inR.Close()
	outW.Close()
	c := pipeConn{w: inW, r: outR}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	p.Raw = &Raw{t: t, C: c, R: bufio.NewReader(outR)}
	return p
}

// runSmtpd starts smtpd with args, in and out its standard input and
// output, and kills it at the end of the test if it is still running.
func runSmtpd(t *testing.T, in, out *os.File, args []string) *smtpdProgram {
	t.Helper()
	p := &smtpdProgram{stderr: &SyncBuffer{}}
	p.cmd = exec.Command(bin(t, "smtpd"), args...)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = in, out, p.stderr
	p.cmd.Env = append(os.Environ(), quickExit)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return p
}

// wait waits for smtpd to exit and fails the test unless it exited 0.
func (p *smtpdProgram) wait(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("smtpd: %v\n%s", err, p.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("smtpd still running after its session\n%s", p.stderr)
	}
}

// pipeConn is the test's end of smtpd's standard input and output, as a
// net.Conn for Raw.
type pipeConn struct{ w, r *os.File }

func (p pipeConn) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p pipeConn) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeConn) Close() error                { p.r.Close(); return p.w.Close() }
func (p pipeConn) LocalAddr() net.Addr         { return nil }
func (p pipeConn) RemoteAddr() net.Addr        { return nil }

func (p pipeConn) SetDeadline(t time.Time) error {
	p.w.SetWriteDeadline(t)
	return p.r.SetReadDeadline(t)
}

func (p pipeConn) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p pipeConn) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }
