package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
)

// ErrProjectionConflict means the projection holds a different record for a
// handle or key than the registry event being applied: the buckets were
// written by something other than the projector.
var ErrProjectionConflict = errors.New("projection conflict")

// conflict is an error wrapping ErrProjectionConflict and kez.ErrLogDamaged,
// as damage of bucket's stream, for a projection write that finds another
// value than the log's event: a bucket holding what no event of the log
// made, or a log holding two claims to one handle or key, is damage, and a
// replica refuses registrations until it is mended (docs/operations.md).
func conflict(bucket, format string, args ...any) error {
	return &integrity.StreamError{Stream: kvStream(bucket),
		Err: fmt.Errorf("%w: %w: %s", kez.ErrLogDamaged, ErrProjectionConflict, fmt.Sprintf(format, args...))}
}

// Projection is the KV projection of the registry: handles, the key index
// and the applied pointer. The live projection has no suffix; a rebuild can
// target buckets with a suffix, to compare before replacing.
type Projection struct {
	js                  jetstream.JetStream // for ApplyBatch's asynchronous writes and the integrity checks
	handles, keys, meta jetstream.KeyValue
	turns               *Turns

	// The checkpoint this replica last wrote and its revision, so that
	// the next SetCheckpoint is one conditional write, not a read, a
	// write and a read: a stale one (another replica wrote since) only
	// makes the write refused and read again.
	cpMu  sync.Mutex
	cpCur integrity.Checkpoint
	cpRev uint64
}

// Guard makes the projection's writes go again at a turn (a leader
// elected for one of its buckets, the connection back) rather than wait
// for an answer from a leader that froze or died: every registration
// waits on the projection (read-your-writes).
func (p *Projection) Guard(t *Turns) { p.turns = t }

// ProjectionStreams are the streams of the projection's buckets, for
// WatchTurns.
var ProjectionStreams = []string{kvStream(HandlesBucket), kvStream(KeysBucket), kvStream(ProjectionBucket)}

func createProjection(ctx context.Context, js jetstream.JetStream, replicas int, suffix string) (*Projection, error) {
	p := Projection{js: js}
	for _, b := range []struct {
		kv   *jetstream.KeyValue
		name string
		desc string
	}{
		{&p.handles, HandlesBucket, "kez-chat: handle -> record, projected from " + RegistryStream},
		{&p.keys, KeysBucket, "kez-chat: primary key hex -> handle, projected from " + RegistryStream},
		{&p.meta, ProjectionBucket, "kez-chat: last registry sequence applied to the projection"},
	} {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      b.name + suffix,
			Description: b.desc,
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("create bucket %s: %w", b.name+suffix, err)
		}
		*b.kv = kv
	}
	return &p, nil
}

// OpenProjection binds the live projection buckets that Setup created.
func OpenProjection(ctx context.Context, js jetstream.JetStream) (*Projection, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	p := Projection{js: js}
	var err error
	if p.handles, err = js.KeyValue(ctx, HandlesBucket); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", HandlesBucket, err)
	}
	if p.keys, err = js.KeyValue(ctx, KeysBucket); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", KeysBucket, err)
	}
	if p.meta, err = js.KeyValue(ctx, ProjectionBucket); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", ProjectionBucket, err)
	}
	return &p, nil
}

// DeleteProjection deletes the projection buckets with the given suffix.
func DeleteProjection(ctx context.Context, js jetstream.JetStream, suffix string) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	for _, b := range []string{HandlesBucket, KeysBucket, ProjectionBucket} {
		if err := js.DeleteKeyValue(ctx, b+suffix); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("delete bucket %s: %w", b+suffix, err)
		}
	}
	return nil
}

// ResetProjection deletes the projection buckets with the given suffix
// ("" for the live ones) and creates them empty.
func ResetProjection(ctx context.Context, js jetstream.JetStream, replicas int, suffix string) (*Projection, error) {
	if err := DeleteProjection(ctx, js, suffix); err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return createProjection(ctx, js, replicas, suffix)
}

// Checkpoint returns the projection's checkpoint: the last registry
// sequence applied (every event up to it is) and the Merkle tree over
// those events. An empty projection has the zero checkpoint. A pointer
// written before checkpoints existed (a bare sequence number) counts as
// none: the projector applies the log again from the start, which has no
// second effect, and hashes it on the way.
func (p *Projection) Checkpoint(ctx context.Context) (integrity.Checkpoint, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	cp, _, err := p.checkpoint(ctx)
	return cp, err
}

func (p *Projection) checkpoint(ctx context.Context) (integrity.Checkpoint, uint64, error) {
	e, err := p.meta.Get(ctx, projectionPointer)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return integrity.Checkpoint{}, 0, nil
	}
	if err != nil {
		return integrity.Checkpoint{}, 0, fmt.Errorf("read checkpoint: %w", err)
	}
	if _, err := strconv.ParseUint(string(e.Value()), 10, 64); err == nil {
		return integrity.Checkpoint{}, e.Revision(), nil // before checkpoints
	}
	cp, err := integrity.ParseCheckpoint(e.Value())
	if err != nil {
		return integrity.Checkpoint{}, 0, fmt.Errorf("%w: %s/%s: %v", ErrProjectionConflict, ProjectionBucket, projectionPointer, err)
	}
	return cp, e.Revision(), nil
}

// SetCheckpoint raises the checkpoint to cp; it never lowers it, so
// replicas applying the same events race harmlessly. Replicas hash the
// same log alike, so a stored checkpoint at cp's sequence with another
// tree means the log each of them read was not the same: it returns an
// error wrapping kez.ErrLogDamaged.
func (p *Projection) SetCheckpoint(ctx context.Context, cp integrity.Checkpoint) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	val, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	p.cpMu.Lock()
	defer p.cpMu.Unlock()
	cur, rev, known := p.cpCur, p.cpRev, p.cpRev != 0
	for inFlight := 0; ; {
		if !known {
			if cur, rev, err = p.checkpoint(ctx); err != nil {
				return err
			}
		}
		known = false
		if cur.Seq == cp.Seq && (cur.Tree.Size != cp.Tree.Size || cur.Tree.Root() != cp.Tree.Root()) {
			return fmt.Errorf("%w: the projection's checkpoint at sequence %d has %d events, root %s; this replica hashed %d events, root %s",
				kez.ErrLogDamaged, cp.Seq, cur.Tree.Size, cur.Tree.Root(), cp.Tree.Size, cp.Tree.Root())
		}
		if cur.Seq >= cp.Seq {
			return nil
		}
		var next uint64
		err, _ = guarded(ctx, p.turns, nil, func(ctx context.Context) (err error) {
			if rev == 0 {
				next, err = p.meta.Create(ctx, projectionPointer, val)
			} else {
				next, err = p.meta.Update(ctx, projectionPointer, val, rev)
			}
			return err
		})
		if err == nil {
			// Written over revision rev: nobody moved it between.
			p.cpCur, p.cpRev = cp, next
			return nil
		}
		if errors.Is(err, errTurn) {
			continue // read it again: the write may have got in
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			continue // another replica moved it since rev: read it again
		}
		if isWrongLastSeq(err) {
			// Another replica's write is in flight (10164): read again
			// once it has landed.
			select {
			case <-ctx.Done():
				return fmt.Errorf("advance checkpoint: %w", ctx.Err())
			case <-time.After(inFlightBackoff(inFlight)):
			}
			inFlight++
			continue
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("advance checkpoint: %w", err)
		}
		// Another replica moved it meanwhile: read again.
	}
}

// Get returns the record of a handle's local part, or kez.ErrNotFound.
func (p *Projection) Get(ctx context.Context, local string) (kez.HandleRecord, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var rec kez.HandleRecord
	e, err := p.handles.Get(ctx, local)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return rec, kez.ErrNotFound
	}
	if err != nil {
		return rec, fmt.Errorf("get handle: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, fmt.Errorf("%w: record of %s: %v", ErrProjectionConflict, local, err)
	}
	return rec, nil
}

// GetByKey returns the record of the handle bound to key, or kez.ErrNotFound.
func (p *Projection) GetByKey(ctx context.Context, key kez.PublicKey) (kez.HandleRecord, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	e, err := p.keys.Get(ctx, key.Hex())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return kez.HandleRecord{}, kez.ErrNotFound
	}
	if err != nil {
		return kez.HandleRecord{}, fmt.Errorf("get key: %w", err)
	}
	return p.Get(ctx, string(e.Value()))
}

// Verify checks that rec is projected: the handle's record is rec and the
// key's entry names the handle. Missing or different entries are an error
// wrapping kez.ErrLogDamaged inside an *integrity.StreamError naming the
// bucket's stream (an entry once projected is never removed).
func (p *Projection) Verify(ctx context.Context, rec kez.HandleRecord) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	want, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	for _, c := range []struct {
		bucket, key, val string
	}{
		{HandlesBucket, rec.Handle.Local(), string(want)},
		{KeysBucket, rec.Primary.Hex(), rec.Handle.Local()},
	} {
		// From the bucket's leader: a KV get is a direct get, which any
		// replica may answer.
		v, err := leaderLastMsg(ctx, p.js, kvStream(c.bucket), "$KV."+c.bucket+"."+c.key)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			err = fmt.Errorf("%w: %s/%s is missing (%s, sequence %d)", kez.ErrLogDamaged, c.bucket, c.key, rec.Handle, rec.Seq)
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders),
			isTemporary(err):
			return fmt.Errorf("verify %s/%s: %w", c.bucket, c.key, err)
		case err != nil:
			// The leader answered, with an error instead of the entry (a
			// message it cannot read).
			err = fmt.Errorf("%w: %s/%s unreadable: %v", kez.ErrLogDamaged, c.bucket, c.key, err)
		case string(v) != c.val:
			err = fmt.Errorf("%w: %s/%s differs from event %d", kez.ErrLogDamaged, c.bucket, c.key, rec.Seq)
		default:
			continue
		}
		return &integrity.StreamError{Stream: kvStream(c.bucket), Err: err}
	}
	return nil
}

// Watch calls put for every record in the projection, then ready once, then
// put for every record added later, until ctx ends or the watch fails.
func (p *Projection) Watch(ctx context.Context, put func(kez.HandleRecord), ready func()) error {
	w, err := p.handles.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch %s: %w", HandlesBucket, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: closed", HandlesBucket)
			}
			if e == nil {
				ready()
				continue
			}
			var rec kez.HandleRecord
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				continue // not ours to serve; Apply never writes such a value
			}
			put(rec)
		}
	}
}

// listIdle bounds the wait for the next key of a listing. A bucket
// whose stream lost messages can leave a listing waiting forever for
// the count it was promised (its consumer's pending never reaches 0);
// a healthy one hands out keys without pauses of this length.
const listIdle = 10 * time.Second

// drainKeys collects keys until the channel closes; it fails when ctx
// ends or no key comes for idle.
func drainKeys(ctx context.Context, keys <-chan string, idle time.Duration) ([]string, error) {
	var out []string
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case k, ok := <-keys:
			if !ok {
				return out, ctx.Err()
			}
			out = append(out, k)
			t.Reset(idle)
		case <-t.C:
			return nil, fmt.Errorf("no key for %v after %d keys: the listing did not end", idle, len(out))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Dump returns every entry of the three buckets as "bucket/key" -> value
// (bucket names without suffix), for comparing two projections.
func (p *Projection) Dump(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, b := range []struct {
		name string
		kv   jetstream.KeyValue
	}{{HandlesBucket, p.handles}, {KeysBucket, p.keys}, {ProjectionBucket, p.meta}} {
		lister, err := b.kv.ListKeys(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", b.kv.Bucket(), err)
		}
		keys, err := drainKeys(ctx, lister.Keys(), listIdle)
		_ = lister.Stop()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", b.kv.Bucket(), err)
		}
		for _, k := range keys {
			e, err := b.kv.Get(ctx, k)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // listed, but its value is gone (a damaged bucket)
			}
			if err != nil {
				return nil, fmt.Errorf("get %s/%s: %w", b.kv.Bucket(), k, err)
			}
			out[b.name+"/"+k] = string(e.Value())
		}
	}
	return out, nil
}
