package streams

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// ApplyBatch writes the projection of many registrations, with the
// effect of Apply on each, but with every write in flight at once:
// asynchronous publishes to the buckets' subjects, each expecting its key
// to have no entry yet (Nats-Expected-Last-Subject-Sequence: 0, what a
// KV create sends). A write refused because its key has an entry (applied
// before, by this or another replica) or refused for any other reason is
// done again as Apply does it, which accepts an equal entry and reports
// ErrProjectionConflict for a different one. A rebuild or a projector
// catching up thus goes at the speed of the store, not of one round trip
// per entry.
func (p *Projection) ApplyBatch(ctx context.Context, recs []kez.HandleRecord) error {
	type write struct {
		kv       jetstream.KeyValue
		key      string
		val      []byte
		ack      jetstream.PubAckFuture
		deferred bool // not sent asynchronously: done as Apply does
		exists   bool // refused because the key has an entry, or one in flight
	}
	writes := make([]write, 0, 2*len(recs))
	for _, rec := range recs {
		val, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode record: %w", err)
		}
		writes = append(writes,
			write{kv: p.handles, key: rec.Handle.Local(), val: val},
			write{kv: p.keys, key: rec.Primary.Hex(), val: []byte(rec.Handle.Local())})
	}
	turn := p.turns.Next()
	for i := range writes {
		w := &writes[i]
		m := nats.NewMsg("$KV." + w.kv.Bucket() + "." + w.key)
		m.Data = w.val
		ack, err := p.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil {
			w.deferred = true
			continue
		}
		w.ack = ack
	}
	var careful []*write
	for i := range writes {
		w := &writes[i]
		if !w.deferred {
			select {
			case <-w.ack.Ok():
				continue
			case err := <-w.ack.Err():
				// Refused for its expected sequence: the entry is there
				// (10071), or another replica's write of it is in flight
				// (10164). Either way there is nothing to create: read it.
				w.exists = isWrongLastSeq(err)
			case <-turn:
				// A leader froze or died with the write, or the answer's
				// subscription was away: write it again carefully.
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		careful = append(careful, w)
	}
	// The careful writes go side by side too. On a deployment of several
	// replicas every projector applies every event and all but the first
	// find its entries there: one after the other, those reads made the
	// later projectors (and the registrations waiting on them) a few
	// round trips per entry slower.
	errs := make([]error, len(careful))
	sem := make(chan struct{}, carefulInFlight)
	var wg sync.WaitGroup
	for i, w := range careful {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = p.createOrSame(ctx, w.kv, w.key, w.val, w.exists)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// carefulInFlight bounds the careful writes of ApplyBatch in flight.
const carefulInFlight = 32

// createOrSame is the careful write of one entry, within the
// default timeout; exists skips its first create (the key is known to
// have an entry, or one in flight).
func (p *Projection) createOrSame(ctx context.Context, kv jetstream.KeyValue, key string, val []byte, exists bool) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return retried(ctx, p.turns, func(ctx context.Context) error { return createOrSame(ctx, p.js, kv, key, val, exists) })
}

// createOrSame creates key with val in kv, or finds it already holding
// exactly val; any other value is ErrProjectionConflict. With exists,
// it reads first and creates only if the entry is not there after all.
//
// On a replicated bucket a create is refused while another replica's
// write of the same key is still in flight (10164), before that write can
// be read, from followers or the leader: a refused create whose key is
// not there yet is tried again, shortly.
func createOrSame(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, key string, val []byte, exists bool) error {
	start := time.Now()
	for try := 0; ; try++ {
		if !exists || try > 0 {
			_, err := kv.Create(ctx, key, val)
			if err == nil {
				return nil
			}
			if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSeq(err) {
				return fmt.Errorf("project %s/%s: %w", kv.Bucket(), key, err)
			}
		}
		var got []byte
		e, err := kv.Get(ctx, key)
		if isNotFound(err) {
			// A KV get is a direct get, which a follower behind the
			// leader may answer: ask the leader.
			got, err = leaderLastMsg(ctx, js, kvStream(kv.Bucket()), "$KV."+kv.Bucket()+"."+key)
		} else if err == nil {
			got = e.Value()
		}
		if isNotFound(err) && time.Since(start) < inFlightWait {
			select {
			case <-ctx.Done():
				return fmt.Errorf("project %s/%s: %w", kv.Bucket(), key, ctx.Err())
			case <-time.After(inFlightBackoff(try)):
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("project %s/%s: %w", kv.Bucket(), key, err)
		}
		if !bytes.Equal(got, val) {
			return conflict(kv.Bucket(), "%s/%s holds another value than the log's event", kv.Bucket(), key)
		}
		return nil
	}
}

// inFlightWait bounds the wait for another replica's write in flight,
// which lands in a round trip or two: it is looked for after 2 ms, then
// twice as long each time up to 50 ms. (A fixed 50 ms made a projector
// that lost the race for an entry sleep 50 ms for that batch, and the
// registrations its replica answers wait on it.)
const inFlightWait = 2 * time.Second

func inFlightBackoff(try int) time.Duration {
	return min(2*time.Millisecond<<min(try, 5), 50*time.Millisecond)
}

// isWrongLastSeq reports whether err is a refused expected last sequence
// (10071, or 10164 on a replicated stream with a write in flight).
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// isNotFound reports whether err says a key or message is not there.
func isNotFound(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrMsgNotFound) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound
}
