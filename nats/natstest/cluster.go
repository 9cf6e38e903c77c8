package natstest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a JetStream cluster of embedded servers, each loaded from
// nats/nats.conf with the same keys, joined by routes on loopback.
type Cluster struct {
	Servers []*Server
}

// StartCluster starts n servers from nats/nats.conf as one JetStream
// cluster and waits until it has a meta leader.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	dir := configDir(tb)
	ports := freePorts(tb, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &Cluster{}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		s := &Server{Dir: dir, tb: tb, adjust: func(o *server.Options) {
			o.ServerName = name
			o.StoreDir = filepath.Join(dir, "jetstream-"+name)
			o.Cluster.Name = "kez"
			o.Cluster.Host = "127.0.0.1"
			o.Cluster.Port = ports[i]
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}}
		s.start()
		tb.Cleanup(s.Stop)
		c.Servers = append(c.Servers, s)
	}
	// Ready once the meta leader knows every node as a placement peer
	// (online, with JetStream, its stats received): a stream created
	// before that can fail with "no suitable peers for placement".
	deadline := time.Now().Add(30 * time.Second)
	for !c.ready() {
		if time.Now().After(deadline) {
			tb.Fatalf("cluster not ready within 30s: no JetStream meta leader that sees all %d nodes", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// ready reports whether a meta leader sees every node as a peer.
func (c *Cluster) ready() bool {
	for _, s := range c.Servers {
		if s.Running() && s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(c.Servers) {
			return true
		}
	}
	return false
}

// ClientURL returns the client URLs of every node, comma-separated.
func (c *Cluster) ClientURL() string {
	var urls []string
	for _, s := range c.Servers {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
