package dnsx

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestServer(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1:53", "[2001:db8::1]": "[2001:db8::1]:53", "2001:db8::1": "[2001:db8::1]:53",
		"ns.example:5353": "ns.example:5353", "[::1]:53": "[::1]:53",
	} {
		if got := Server(in); got != want {
			t.Errorf("Server(%q) = %q, want %q", in, got, want)
		}
	}
	if _, _, err := net.SplitHostPort(Server("")); err != nil {
		t.Errorf("Server(\"\") = %q: %v", Server(""), err)
	}
}

// TestExchange: a truncated UDP reply is asked again over TCP, and the
// TCP reply is the answer; a server that never answers is an error
// within the time bounds.
func TestExchange(t *testing.T) {
	var udp, tcp atomic.Int64
	addr := serve(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		if w.RemoteAddr().Network() == "udp" {
			udp.Add(1)
			m.Truncated = true
		} else {
			tcp.Add(1)
			rr, _ := dns.NewRR("example.org. 60 IN TXT \"over tcp\"")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	}))
	m := new(dns.Msg)
	m.SetQuestion("example.org.", dns.TypeTXT)
	in, err := Exchange(context.Background(), m, addr, 5*time.Second)
	if err != nil || len(in.Answer) != 1 || in.Answer[0].(*dns.TXT).Txt[0] != "over tcp" || udp.Load() != 1 || tcp.Load() != 1 {
		t.Errorf("truncated: %v, %v; %d UDP, %d TCP queries", in, err, udp.Load(), tcp.Load())
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	start := time.Now()
	if _, err := Exchange(context.Background(), m, pc.LocalAddr().String(), 100*time.Millisecond); err == nil {
		t.Error("a silent server: no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a silent server took %v, want two tries of 100ms", d)
	}
}

// serve starts h on one port of 127.0.0.1 for UDP and TCP.
func serve(t *testing.T, h dns.Handler) string {
	for try := 0; try < 20; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		u, s := &dns.Server{PacketConn: pc, Handler: h}, &dns.Server{Listener: l, Handler: h}
		go u.ActivateAndServe()
		go s.ActivateAndServe()
		t.Cleanup(func() { u.Shutdown(); s.Shutdown() })
		return pc.LocalAddr().String()
	}
	t.Fatal("no port free for both UDP and TCP")
	return ""
}
