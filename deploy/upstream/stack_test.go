package upstream

import (
	"bufio"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestIdleClientStacks: a server with n idle clients, each of which has
// exchanged one PING and PONG since the last garbage collections (what a
// client's keepalive does every few seconds), holds more than 32 KiB of
// goroutine stack per client.
//
// Why: (*client).flushOutbound declares `var _orig [nbMaxVectorSize][]byte`,
// 1,024 slice headers, on its stack: a 25,008-byte frame in the built
// server (go tool objdump: SUBQ $0x61b0, SP). Every goroutine that writes to
// a socket, a client's writeLoop above all, grows its stack to 32 KiB at
// its first write; a collection halves it while it is parked, and the next
// PONG grows it back. With an array of 8 (append moves to the heap beyond
// it; flushoutbound-stack.patch, which applies to v2.15.2 and to upstream
// main of August 2026, and passes nats-server's own flushOutbound tests)
// the frame is 624 bytes; measured with kez-chat's load generator,
// 10,000 idle clients of a server with an auth callout: goroutine stacks
// 402–405 MiB → 126–137 MiB, RSS per connection 73–78 → 46–47 KB
// (docs/capacity.md).
//
// The clients here are raw TCP connections driven by this one goroutine,
// so the stacks that grow are the server's.
//
// Run: KEZ_UPSTREAM_REPRO=1 go test -run TestIdleClientStacks -v ./deploy/upstream/
func TestIdleClientStacks(t *testing.T) {
	needRepro(t)
	const n = 500
	s := startServer(t, &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	// stacks reads the stack memory in use after gcs collections (each
	// halves a parked goroutine's stack at most once).
	stacks := func(gcs int) uint64 {
		for range gcs {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.StackInuse
	}
	base := stacks(4)

	type conn struct {
		c net.Conn
		r *bufio.Reader
	}
	conns := make([]conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.c.Close()
		}
	})
	// expect reads protocol lines until one starts with want.
	expect := func(c conn, want string) {
		c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if strings.HasPrefix(line, want) {
				return
			}
			if strings.HasPrefix(line, "-ERR") {
				t.Fatalf("waiting for %s: %s", want, line)
			}
		}
	}
	ping := func() {
		for _, c := range conns {
			if _, err := c.c.Write([]byte("PING\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range conns {
			expect(c, "PONG")
		}
	}
	for range n {
		nc, err := net.Dial("tcp", s.ClientURL()[len("nats://"):])
		if err != nil {
			t.Fatal(err)
		}
		c := conn{nc, bufio.NewReader(nc)}
		conns = append(conns, c)
		expect(c, "INFO")
		if _, err := nc.Write([]byte(`CONNECT {"verbose":false,"pedantic":false,"protocol":1}` + "\r\nPING\r\n")); err != nil {
			t.Fatal(err)
		}
		expect(c, "PONG")
	}
	perConn := func(total uint64) float64 { return float64(total-min(total, base)) / n / 1024 }
	connected := stacks(4)
	ping()
	pinged := stacks(0)
	t.Logf("nats-server %s, %d idle clients: goroutine stacks per client %.1f KiB after collections, %.1f KiB after one more PING/PONG each, %.1f KiB after one more collection",
		server.VERSION, n, perConn(connected), perConn(pinged), perConn(stacks(1)))
	// Two parked loops need a few KiB each; 16 KiB leaves room for both.
	if got := perConn(pinged); got > 16 {
		t.Errorf("nats-server %s: %.1f KiB of goroutine stack per idle client after a PING/PONG (%.1f KiB before it): flushOutbound's frame grows every writeLoop to 32 KiB",
			server.VERSION, got, perConn(connected))
	}
}
