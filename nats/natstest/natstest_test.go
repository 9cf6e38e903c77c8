package natstest_test

import (
	"testing"

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
