package natstest_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
)

func TestStartLoadsReferenceConfig(t *testing.T) {
	s := natstest.Start(t)
	nc := s.Connect(natskeys.KeyChatServer)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Fatalf("service user has no JetStream: %v", err)
	}
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream off")
	}
	if !s.JetStreamConfig().SyncAlways {
		t.Fatal("sync_interval: always not applied")
	}
}

func TestClusterReplicatesStreams(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	nc := c.Servers[0].Connect(natskeys.KeyChatServer)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.AddStream(&nats.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3})
	if err != nil {
		t.Fatalf("R3 stream: %v", err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream cluster info = %+v, want a leader and 2 replicas", info.Cluster)
	}
	if _, err := js.Publish("r3.x", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestMonitoringOnLoopback: nats-server's monitoring needs no credentials
// and /connz?subs=detail lists every user's key, address and
// subscriptions (their contacts), so the shipped nats.conf listens for it
// on loopback, also under `make dev`'s flags (-a 127.0.0.1 -m, which do
// not set the monitoring host). The compose files run it as it is: in a
// container, loopback is the container's own, which no other container
// reaches (deploy/deploytest checks that).
func TestMonitoringOnLoopback(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(natstest.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := natskeys.EnsureKeys(filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	load := func(name string) *server.Options {
		t.Helper()
		o, err := server.ProcessConfigFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
		return o
	}
	host := load("nats.conf")
	dev := server.MergeOptions(load("nats.conf"), &server.Options{Host: "127.0.0.1", Port: 4222, HTTPPort: 8222})
	for _, tt := range []struct {
		name string
		o    *server.Options
		want string
	}{
		{"nats.conf", host, "127.0.0.1:8222"},
		{"nats.conf with make dev's flags", dev, "127.0.0.1:8222"},
	} {
		if got := net.JoinHostPort(tt.o.HTTPHost, strconv.Itoa(tt.o.HTTPPort)); got != tt.want {
			t.Errorf("%s: monitoring on %s, want %s", tt.name, got, tt.want)
		}
	}
}
