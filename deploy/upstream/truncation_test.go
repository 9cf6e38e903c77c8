// Package upstream holds reproductions of nats-server faults, written to
// be reported upstream: they use nats-server and nats.go alone, no kez
// code. They are skipped unless KEZ_UPSTREAM_REPRO=1.
package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// needRepro skips t unless KEZ_UPSTREAM_REPRO=1: the reproductions fail
// on the nats-server releases they were written against.
func needRepro(t *testing.T) {
	t.Helper()
	if os.Getenv("KEZ_UPSTREAM_REPRO") != "1" {
		t.Skip("reproduction for upstream (fails on nats-server " + server.VERSION + "): set KEZ_UPSTREAM_REPRO=1 to run it")
	}
}

// startServer starts a nats-server of opts, shut down when t ends, and
// waits until it takes connections.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("server %s not ready", opts.ServerName)
	}
	return s
}

// TestTruncatedFollowerBlocksBecomeLeader: on a 3-node cluster with
// sync_interval: always, an R3 stream that denies deletes and purges
// takes 300 acknowledged messages, each the first on its own subject
// (published with Nats-Expected-Last-Subject-Sequence: 0, the idiom of a
// first-come-first-served claim). One follower is stopped cleanly, its
// message blocks for the stream are cut to half their length (a crash
// mid-write, a bad sector), and it is started again; then it is made the
// stream's leader (stream step-down with a preferred peer).
//
// Expected: the stream still holds 300 messages, and a second claim on an
// acknowledged subject fails with "wrong last sequence". Observed with
// nats-server v2.15.2: the new leader reports about half the messages
// (num_deleted counts the holes, in a stream with deny_delete), and
// accepts a second claim on a subject whose first claim was acknowledged.
// Jepsen's "NATS 2.12.1" analysis reports the same class of fault
// (nats-server issue 7549 for bit flips); PR 7587 repairs a truncated
// Raft WAL, not the stream's message blocks.
//
// Run: KEZ_UPSTREAM_REPRO=1 go test -run TestTruncatedFollowerBlocksBecomeLeader -v ./deploy/upstream/
func TestTruncatedFollowerBlocksBecomeLeader(t *testing.T) {
	needRepro(t)
	const stream, n = "REPRO", 300
	nodes, optsOf := startCluster(t, 3)
	nc, err := nats.Connect(nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{"claim.>"}, Storage: jetstream.FileStorage, Replicas: 3,
		DenyDelete: true, DenyPurge: true, Discard: jetstream.DiscardNew,
	}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, fmt.Sprintf("claim.%d", i), []byte("first"), jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	info := streamInfo(t, ctx, js, stream)
	t.Logf("before: leader %s, %d messages, last sequence %d", info.Cluster.Leader, info.State.Msgs, info.State.LastSeq)

	var victim int
	for i, s := range nodes {
		if s.Name() != info.Cluster.Leader {
			victim = i
			break
		}
	}
	opts := optsOf[victim]
	name, storeDir := opts.ServerName, opts.StoreDir
	nodes[victim].Shutdown()
	nodes[victim].WaitForShutdown()
	cut := 0
	filepath.WalkDir(storeDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".blk") && strings.Contains(path, filepath.Join("streams", stream, "msgs")) {
			st, _ := os.Stat(path)
			if os.Truncate(path, st.Size()/2) == nil {
				cut++
			}
		}
		return nil
	})
	if cut == 0 {
		t.Fatalf("no message blocks of %s under %s", stream, storeDir)
	}
	nodes[victim] = startServer(t, opts)

	for deadline := time.Now().Add(time.Minute); streamInfo(t, ctx, js, stream).Cluster.Leader != name; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("could not move the leadership of %s to %s", stream, name)
		}
		body, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": name}})
		nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, body, 5*time.Second)
	}
	info = streamInfo(t, ctx, js, stream)
	t.Logf("after: leader %s, %d messages, first %d, last %d, num_deleted %d", info.Cluster.Leader, info.State.Msgs,
		info.State.FirstSeq, info.State.LastSeq, info.State.NumDeleted)
	if info.State.Msgs != n {
		t.Errorf("nats-server %s: the stream's new leader %s (its blocks cut while it was down) serves %d of %d acknowledged messages (num_deleted %d, deny_delete set)",
			server.VERSION, name, info.State.Msgs, n, info.State.NumDeleted)
	}
	again := 0
	for i := range n {
		if _, err := js.Publish(ctx, fmt.Sprintf("claim.%d", i), []byte("second"), jetstream.WithExpectLastSequencePerSubject(0)); err == nil {
			again++
		}
	}
	if again > 0 {
		t.Errorf("nats-server %s: %d of %d subjects whose first message was acknowledged accepted a second one with Nats-Expected-Last-Subject-Sequence: 0",
			server.VERSION, again, n)
	}
}

func streamInfo(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		info.Cluster = &jetstream.ClusterInfo{}
	}
	return info
}

// startCluster starts n JetStream servers on loopback as one cluster, with
// sync_interval: always, and waits for a meta leader.
func startCluster(t *testing.T, n int) ([]*server.Server, []*server.Options) {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var nodes []*server.Server
	var all []*server.Options
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), SyncAlways: true,
			Cluster: server.ClusterOpts{Name: "repro", Host: "127.0.0.1", Port: ports[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:   true, NoSigs: true,
		}
		all = append(all, opts.Clone())
		nodes = append(nodes, startServer(t, opts))
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		for _, s := range nodes {
			if s.JetStreamIsLeader() {
				return nodes, all
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no meta leader")
		}
	}
}
