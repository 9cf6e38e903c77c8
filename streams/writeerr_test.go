package streams_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// TestStreamRefusesWritesUntilRestart: a stream whose store failed a
// write on a full disk (below max_file_store) keeps refusing writes,
// dropping them unanswered, until nats-server restarts, even once the
// disk has room again and the store probe passes. The registry's and
// the sigchains' appends then answer kez.ErrStoreUnavailable within a
// few seconds, not at their 15 s deadline, naming the stream and what to
// do, and readiness (WriteErrors.Err) names the streams until a restart
// of nats-server, after which they take writes again.
func TestStreamRefusesWritesUntilRestart(t *testing.T) {
	mnt, ok := natstest.Tmpfs(t, 48<<20)
	if !ok {
		return // ran in a user namespace of its own (natstest.Tmpfs)
	}
	ns := natstest.StartWith(t, natstest.OnSmallDisk(mnt))
	ctx := context.Background()
	connect := func(key string) (*nats.Conn, jetstream.JetStream) {
		nc := ns.Connect(key)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	chatNC, chatJS := connect(natskeys.KeyChatServer)
	sigNC, sigJS := connect(natskeys.KeySigServer)
	cfg := streams.DefaultConfig()
	cfg.InboxMaxBytes = 16 << 20
	if _, err := streams.Setup(ctx, chatJS, cfg); err != nil {
		t.Fatal(err)
	}
	if err := streams.SetupSigchains(ctx, sigJS, streams.DefaultSigchainConfig()); err != nil {
		t.Fatal(err)
	}
	reg, err := streams.OpenRegistry(ctx, chatJS)
	if err != nil {
		t.Fatal(err)
	}
	chains, err := streams.OpenSigchains(ctx, sigJS)
	if err != nil {
		t.Fatal(err)
	}
	chatProbe := streams.NewStoreProbe(chatJS, 1, "chat")
	chatWrites := streams.NewWriteErrors(chatJS, chatProbe)
	reg.Guard(nil, chatProbe)
	reg.TrackWrites(chatWrites)
	sigProbe := streams.NewStoreProbe(sigJS, 1, "sig")
	sigWrites := streams.NewWriteErrors(sigJS, sigProbe)
	chains.TrackWrites(sigWrites)

	if _, _, err := reg.Append(ctx, event(t, "before")); err != nil {
		t.Fatalf("registration on a healthy store: %v", err)
	}
	k, events := chain(t, 3)
	if _, err := chains.Append(ctx, events[0], 0); err != nil {
		t.Fatalf("sigchain append on a healthy store: %v", err)
	}

	// The disk fills; a write to each stream fails (as a registration's
	// batch or a sigchain append landing then would), and the stream
	// keeps that error.
	free := natstest.Fill(t, mnt)
	for _, w := range []struct {
		js      jetstream.JetStream
		subject string
	}{
		{chatJS, "kez.registry.test.fill"},
		{sigJS, streams.SigchainSubject(mustKey(t).Public())},
	} {
		var failed error
		for i := 0; i < 200 && failed == nil; i++ {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, failed = w.js.Publish(pctx, w.subject, make([]byte, 512))
			cancel()
		}
		if failed == nil {
			t.Fatalf("%s: 200 writes stored on a full disk", w.subject)
		}
	}
	free()
	// The store probe passes again: it makes its stream afresh.
	for i := 0; ; i++ {
		perr, serr := chatProbe.Check(ctx), sigProbe.Check(ctx)
		if perr == nil && serr == nil {
			break
		}
		if i == 20 {
			t.Fatalf("store probe with room on the disk again: %v; %v", perr, serr)
		}
		time.Sleep(1100 * time.Millisecond) // a probe's result stands a second
	}
	for _, s := range []string{streams.RegistryStream, streams.SigchainStream} {
		if err := streams.StreamReady(ctx, chatJS, s, nil); err != nil {
			t.Fatalf("StreamReady(%s) = %v; want nil (the stream is there, with its leader)", s, err)
		}
	}

	// Refused quickly, naming the stream and the remedy, and readiness
	// says so until nats-server restarts.
	refused := func(what, stream string, w *streams.WriteErrors, append func(context.Context) error) {
		t.Helper()
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		start := time.Now()
		err := append(actx)
		took := time.Since(start)
		if !errors.Is(err, kez.ErrStoreUnavailable) || !errors.Is(err, streams.ErrStreamRefusesWrites) ||
			!strings.Contains(err.Error(), stream) || !strings.Contains(err.Error(), "restart nats-server on ") || took > 5*time.Second {
			t.Errorf("%s to a stream that keeps its write error: %v after %v; want ErrStoreUnavailable naming %s and the restart within 5s",
				what, err, took, stream)
		}
		if err := w.Err(stream); err == nil || !strings.Contains(err.Error(), "the broker refuses writes to "+stream+" since ") {
			t.Errorf("readiness of %s after a %s refused: %v; want it refusing writes since a time", stream, what, err)
		}
	}
	refused("registration", streams.RegistryStream, chatWrites, func(ctx context.Context) error {
		_, _, err := reg.Append(ctx, event(t, "during"))
		return err
	})
	refused("sigchain append", streams.SigchainStream, sigWrites, func(ctx context.Context) error {
		_, err := chains.Append(ctx, events[1], tailSeq(t, chains, k))
		return err
	})
	if err := chatWrites.Err(kez.InboxStream); err != nil {
		t.Errorf("readiness of %s, never refused: %v", kez.InboxStream, err)
	}

	ns.Restart()
	for i := 0; !chatNC.IsConnected() || !sigNC.IsConnected(); i++ {
		if i == 100 {
			t.Fatal("not reconnected within 10s of the broker's restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, e := range []error{chatWrites.Err(streams.RegistryStream), sigWrites.Err(streams.SigchainStream)} {
		if e != nil {
			t.Errorf("readiness after nats-server restarted: %v", e)
		}
	}
	if _, _, err := reg.Append(ctx, event(t, "after")); err != nil {
		t.Errorf("registration after nats-server restarted: %v", err)
	}
	if _, err := chains.Append(ctx, events[1], tailSeq(t, chains, k)); err != nil {
		t.Errorf("sigchain append after nats-server restarted: %v", err)
	}
}

func tailSeq(t *testing.T, chains *streams.Sigchains, k *kez.PrivateKey) uint64 {
	t.Helper()
	_, seq, err := chains.Tail(context.Background(), k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return seq
}
