package streams_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
)

// TestAppendGroupsConcurrentRegistrations: registrations appended at
// once go in group batches; each is answered with its own event's
// sequence, first claim wins, a refused claim does not fail the others
// of its group, and a retry of the same registration gets the one event
// stored. On one server and on a 3-node cluster (R3).
func TestAppendGroupsConcurrentRegistrations(t *testing.T) {
	t.Run("R1", func(t *testing.T) {
		js, reg := setup(t, streams.DefaultConfig())
		appendConcurrently(t, js, reg)
	})
	t.Run("R3", func(t *testing.T) {
		if testing.Short() {
			t.Skip("cluster")
		}
		c := natstest.StartCluster(t, 3)
		js, err := jetstream.New(c.Servers[0].Connect(natskeys.KeyChatServer))
		if err != nil {
			t.Fatal(err)
		}
		cfg := streams.DefaultConfig()
		cfg.Replicas = 3
		if _, err := streams.Setup(context.Background(), js, cfg); err != nil {
			t.Fatal(err)
		}
		reg, err := streams.OpenRegistry(context.Background(), js)
		if err != nil {
			t.Fatal(err)
		}
		appendConcurrently(t, js, reg)
	})
}

func appendConcurrently(t *testing.T, js jetstream.JetStream, reg *streams.Registry) {
	ctx := context.Background()
	if _, _, err := reg.Append(ctx, event(t, "carol")); err != nil {
		t.Fatal(err)
	}
	stored := uint64(3)
	// Rounds until registrations were seen grouped (all but certain in
	// the first: 60 arrive at once and 4 batches go at a time).
	for round := 0; round < 5 && streams.GroupedRegistrations(reg) == 0 || round < 2; round++ {
		type want struct {
			ev  kez.RegistryEvent
			err error // nil: stored; else the error wanted
		}
		var evs []want
		for i := range 40 {
			evs = append(evs, want{ev: event(t, fmt.Sprintf("fresh%dx%d", round, i))})
		}
		contested := fmt.Sprintf("dup%d", round)
		for range 8 {
			evs = append(evs, want{ev: event(t, contested), err: kez.ErrHandleTaken})
		}
		for range 4 {
			evs = append(evs, want{ev: event(t, "caro1"), err: kez.ErrHandleTooSimilar})
		}
		twice := event(t, fmt.Sprintf("twice%d", round))
		evs = append(evs, want{ev: twice}, want{ev: twice})
		type got struct {
			ev  kez.RegistryEvent
			seq uint64
			err error
		}
		res := make([]got, len(evs))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, w := range evs {
			wg.Go(func() {
				<-start
				ev, seq, err := reg.Append(ctx, w.ev)
				res[i] = got{ev, seq, err}
			})
		}
		close(start)
		wg.Wait()

		winners, seqs := 0, map[uint64]bool{}
		for i, w := range evs {
			r := res[i]
			if w.ev.Handle.Local() == contested {
				if r.err == nil {
					winners++
				} else if !errors.Is(r.err, kez.ErrHandleTaken) {
					t.Errorf("%s: %v, want stored or ErrHandleTaken", contested, r.err)
				}
			} else if w.err != nil {
				if !errors.Is(r.err, w.err) {
					t.Errorf("%s: %v, want %v", w.ev.Handle, r.err, w.err)
				}
				continue
			} else if r.err != nil {
				t.Errorf("%s: %v", w.ev.Handle, r.err)
				continue
			}
			if r.err != nil {
				continue
			}
			// The sequence answered holds this very event.
			data, err := reg.Event(ctx, r.seq)
			if err != nil {
				t.Errorf("%s: event %d: %v", w.ev.Handle, r.seq, err)
				continue
			}
			var at kez.RegistryEvent
			if err := json.Unmarshal(data, &at); err != nil || at.Handle != w.ev.Handle || !at.Primary.Equal(w.ev.Primary) ||
				string(at.RegistrationSig) != string(r.ev.RegistrationSig) {
				t.Errorf("%s answered with sequence %d, which holds %s (%v)", w.ev.Handle, r.seq, at.Handle, err)
			}
			seqs[r.seq] = true
		}
		if winners != 1 {
			t.Errorf("%d registrations of %s stored, want 1", winners, contested)
		}
		a, b := res[len(res)-2], res[len(res)-1]
		if a.err != nil || b.err != nil || a.seq != b.seq {
			t.Errorf("the same registration twice: %d %v, %d %v; want one sequence", a.seq, a.err, b.seq, b.err)
		}
		// 40 fresh, one contested, one twice: three messages each, and
		// nothing of a refused claim.
		stored += 3 * 42
		if len(seqs) != 42 {
			t.Errorf("%d distinct sequences answered, want 42", len(seqs))
		}
		s, err := js.Stream(ctx, streams.RegistryStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != stored {
			t.Errorf("registry holds %d messages, want %d", info.State.Msgs, stored)
		}
	}
	if streams.GroupedRegistrations(reg) == 0 {
		t.Error("no registration went in a group")
	}
	t.Logf("%d registrations grouped", streams.GroupedRegistrations(reg))
}
