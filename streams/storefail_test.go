package streams_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// TestStoreCannotStageBatches: a disk full or failing below
// max_file_store takes writes into the blocks the store has open but no
// new files, and a single server stages every atomic batch in files of
// its own, so it refuses them all as incomplete (10176), as a busy
// stream refuses batches over its 50 in flight. Here the files cannot be
// made (a plain file where each stream's batch folder goes): the store
// probe says so, naming the streams, and a registration answers
// kez.ErrStoreUnavailable at once, not at its deadline; both recover
// when the files can be made again.
func TestStoreCannotStageBatches(t *testing.T) {
	ns := natstest.Start(t)
	js, err := jetstream.New(ns.Connect(natskeys.KeyChatServer))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := streams.Setup(ctx, js, streams.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	reg, err := streams.OpenRegistry(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	probe := streams.NewStoreProbe(js, 1, "test")
	reg.Guard(nil, probe)
	if err := probe.Check(ctx); err != nil {
		t.Fatalf("probe of a healthy store: %v", err)
	}
	if _, _, err := reg.Append(ctx, event(t, "before")); err != nil {
		t.Fatalf("append to a healthy store: %v", err)
	}

	unblock := ns.BlockBatches(streams.RegistryStream, "KEZ_HEALTH")
	time.Sleep(1100 * time.Millisecond) // the healthy probe's result expires

	actx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err = reg.Append(actx, event(t, "during"))
	took := time.Since(start)
	if !errors.Is(err, kez.ErrStoreUnavailable) || took > 2*time.Second {
		t.Errorf("append while the store cannot stage batches: %v after %v; want ErrStoreUnavailable within 2s", err, took)
	}
	perr := probe.Check(ctx)
	if perr == nil || !strings.Contains(perr.Error(), "KEZ_HEALTH") || !strings.Contains(perr.Error(), streams.RegistryStream) {
		t.Errorf("probe while the store cannot stage batches: %v; want a failure naming KEZ_HEALTH and %s", perr, streams.RegistryStream)
	}

	unblock()
	time.Sleep(1100 * time.Millisecond)
	if err := probe.Check(ctx); err != nil {
		t.Errorf("probe once the store can stage batches again: %v", err)
	}
	if _, _, err := reg.Append(ctx, event(t, "after")); err != nil {
		t.Errorf("append once the store can stage batches again: %v", err)
	}
}
