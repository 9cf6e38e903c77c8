package streams_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
	"kez.lat/kez/streams"
)

// TestApplyBatch: a batch projects every record; applying it again (a
// replica that died before moving the pointer, or two replicas side by
// side) changes nothing; a batch holding a different record for a
// projected handle is ErrProjectionConflict, reported as damage of the
// handles bucket, and the rest of it is still applied; an entry deleted
// by hand is written again.
func TestApplyBatch(t *testing.T) {
	js, _ := setup(t, streams.DefaultConfig())
	ctx := context.Background()
	proj, err := streams.OpenProjection(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	var recs []kez.HandleRecord
	for i := range 50 {
		recs = append(recs, event(t, fmt.Sprintf("batch%d", i)).Record(uint64(i+1)))
	}
	for range 2 {
		if err := proj.ApplyBatch(ctx, recs); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	for _, r := range recs {
		got, err := proj.GetByKey(ctx, r.Primary)
		if err != nil || got.Handle != r.Handle || got.Seq != r.Seq {
			t.Fatalf("%s: %+v, %v", r.Handle, got, err)
		}
	}

	other := eventBy(t, mustKey(t), "batch7", time.Now()).Record(99)
	fresh := event(t, "fresh").Record(100)
	err = proj.ApplyBatch(ctx, []kez.HandleRecord{other, fresh})
	var se *integrity.StreamError
	if !errors.Is(err, streams.ErrProjectionConflict) || !errors.Is(err, kez.ErrLogDamaged) || !errors.As(err, &se) || se.Stream != "KV_"+streams.HandlesBucket {
		t.Fatalf("another record for batch7: %v, want ErrProjectionConflict, damage of KV_%s", err, streams.HandlesBucket)
	}
	if got, err := proj.Get(ctx, "fresh"); err != nil || got.Seq != 100 {
		t.Errorf("the rest of a conflicting batch: %+v, %v", got, err)
	}
	if got, _ := proj.Get(ctx, "batch7"); !got.Primary.Equal(recs[7].Primary) {
		t.Errorf("batch7 was overwritten by the conflicting record")
	}

	// An entry deleted by hand is gone, not another value: applying its
	// event again writes it back.
	for _, b := range []struct{ bucket, key string }{{streams.HandlesBucket, "batch3"}, {streams.KeysBucket, recs[3].Primary.Hex()}} {
		kv, err := js.KeyValue(ctx, b.bucket)
		if err != nil {
			t.Fatal(err)
		}
		if err := kv.Delete(ctx, b.key); err != nil {
			t.Fatal(err)
		}
	}
	if err := proj.ApplyBatch(ctx, recs[3:4]); err != nil {
		t.Fatalf("apply over deleted entries: %v", err)
	}
	if got, err := proj.GetByKey(ctx, recs[3].Primary); err != nil || got.Handle != recs[3].Handle {
		t.Errorf("batch3 after its entries were deleted and applied again: %+v, %v", got, err)
	}
}

func mustKey(t *testing.T) *kez.PrivateKey {
	t.Helper()
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
