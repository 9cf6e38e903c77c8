package streams_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// TestPresenceBucket: Setup makes the presence bucket on one server and
// on a three-node cluster (where async persistence is refused), without
// roll-ups (a user could purge every entry with one), and it binds as a
// KV bucket for the nats CLI.
func TestPresenceBucket(t *testing.T) {
	ctx := context.Background()
	for _, replicas := range []int{1, 3} {
		var js jetstream.JetStream
		if replicas == 1 {
			js, _ = jetstream.New(natstest.Start(t).Connect(natskeys.KeyChatServer))
		} else {
			js, _ = jetstream.New(natstest.StartCluster(t, 3).Servers[0].Connect(natskeys.KeyChatServer))
		}
		cfg := streams.DefaultConfig()
		cfg.Replicas = replicas
		for range 2 { // idempotent
			if _, err := streams.Setup(ctx, js, cfg); err != nil {
				t.Fatalf("R%d: %v", replicas, err)
			}
		}
		s, err := js.Stream(ctx, kez.PresenceStream)
		if err != nil {
			t.Fatal(err)
		}
		c := s.CachedInfo().Config
		if c.AllowRollup || !c.DenyPurge || !c.DenyDelete || c.SubjectDeleteMarkerTTL != 0 || c.MaxMsgsPerSubject != 1 || c.Replicas != replicas {
			t.Errorf("R%d presence stream config %+v", replicas, c)
		}
		if _, err := js.KeyValue(ctx, kez.PresenceBucket); err != nil {
			t.Errorf("R%d: bind the bucket: %v", replicas, err)
		}
	}
}
