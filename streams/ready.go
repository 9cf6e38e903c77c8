package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"kez.lat/kez"
)

// HomeStreams are the streams (KV buckets by their stream) kez-chat-server
// writes: readiness checks each of them.
var HomeStreams = []string{
	RegistryStream, RateLimitStream, NetRateLimitStream, kez.InboxStream, kez.PresenceStream,
	kvStream(HandlesBucket), kvStream(KeysBucket), kvStream(ProjectionBucket), kvStream(QuotaBucket),
}

// SigchainStreams are the streams kez-sig-server writes.
var SigchainStreams = []string{SigchainStream, SigchainRateLimitStream}

// ProbeStreams are the streams the readiness and store probes make and,
// when a probe write goes unanswered, delete: they come and go with the
// store's health, not with users.
var ProbeStreams = []string{healthStream, storeProbeStream}

// The stream the readiness probes write to: one subject per writer, one
// message kept per subject, so it stays a few hundred bytes whatever the
// number of probes.
const (
	healthStream   = "KEZ_HEALTH"
	healthSubjects = "kez.health.>"
)

func healthStreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              healthStream,
		Description:       "kez-chat readiness probes: one small message per server replica, proof that the store writes",
		Subjects:          []string{healthSubjects},
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgsPerSubject: 1,
		MaxAge:            time.Hour,
		Discard:           jetstream.DiscardOld,
		// For the batch probe (probeBatch).
		AllowAtomicPublish: true,
	}
}

// The probe failures that say the store itself cannot write (a write in
// flight then will not be stored either), as opposed to a leader lost.
var (
	errStoreRefuses  = errors.New("store refuses writes")
	errStoreNoAnswer = errors.New("store does not answer writes")
)

// ErrNotConnected: the service connection to the broker is down.
var ErrNotConnected = errors.New("not connected to the broker")

// Connected is a readiness check of nc.
func Connected(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return ErrNotConnected
		}
		return nil
	}
}

// JetStreamReady reports whether JetStream answers an account info
// request.
func JetStreamReady(ctx context.Context, js jetstream.JetStream) error {
	if !js.Conn().IsConnected() {
		return ErrNotConnected
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("JetStream does not answer: %v", err)
	}
	return nil
}

// StreamReady reports whether stream name is present and, when
// replicated, has a leader (a stream without one accepts no writes). A
// missing stream calls missing (a keeper's Kick), so that readiness both
// reports it and gets it made again.
func StreamReady(ctx context.Context, js jetstream.JetStream, name string, missing func()) error {
	if !js.Conn().IsConnected() {
		return ErrNotConnected
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		if IsMissing(err) {
			if missing != nil {
				missing()
			}
			return fmt.Errorf("stream %s is missing (being made again)", name)
		}
		return fmt.Errorf("stream %s does not answer: %v", name, err)
	}
	if c := s.CachedInfo().Cluster; c != nil && c.Leader == "" {
		return fmt.Errorf("stream %s has no leader", name)
	}
	return nil
}

// ProbeStore reports whether the JetStream store takes a write: it
// publishes one small message for writer (a token naming the replica) to the probe
// stream, creating it when missing. A full store (max_file_store, or the
// account's limit) answers at once; a disk that fails writes answers
// nothing, and nats-server then keeps refusing writes to that stream
// until it restarts, so a probe that gets no answer deletes the probe
// stream: the next probe makes a fresh one and shows the disk as it is.
func ProbeStore(ctx context.Context, js jetstream.JetStream, replicas int, writer string) error {
	if !js.Conn().IsConnected() {
		return ErrNotConnected
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(StoreWait)
	}
	// Half the budget for the write, the rest for what follows a failure.
	pctx, cancel := context.WithDeadline(ctx, time.Now().Add(time.Until(deadline)/2))
	defer cancel()
	subject := "kez.health." + writer
	write := func(ctx context.Context) error {
		_, err := js.Publish(ctx, subject, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
		if err == nil {
			err = probeBatch(ctx, js, replicas, subject)
		}
		return err
	}
	err := write(pctx)
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		// No stream took the subject: make it, then write (the batch
		// too: a stream made again after a failing disk's probe deleted
		// it must not pass on a plain write alone).
		if _, cerr := js.CreateOrUpdateStream(ctx, healthStreamConfig(replicas)); cerr != nil {
			if IsStoreFull(cerr) {
				return fmt.Errorf("%w: the JetStream store is full (its max_file_store or the account's limit): %v", errStoreRefuses, cerr)
			}
			return fmt.Errorf("probe stream %s: %v", healthStream, cerr)
		}
		err = write(ctx)
	}
	switch {
	case err == nil:
		return nil
	case isBatchIncomplete(err):
		return fmt.Errorf("%w: stream %s refused a one-message atomic batch as incomplete: the store cannot make the files a batch is staged in "+
			"(a disk full or failing below max_file_store?); registrations (%s) are refused alike: %v", errStoreRefuses, healthStream, RegistryStream, err)
	case IsStoreFull(err):
		return fmt.Errorf("%w: the JetStream store is full (its max_file_store or the account's limit): %v", errStoreRefuses, err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		if replicas > 1 {
			// A replicated stream's node that fails writes steps down
			// and another leads: no answer here is a leader lost (an
			// election follows), not yet the store's fault.
			return errors.New("the JetStream store did not store a probe write in time (its leader frozen or lost?)")
		}
		// A single server: the disk fails writes, and the stream keeps
		// refusing until nats-server restarts; delete it so the next
		// probe shows the disk as it is then.
		if _, ierr := js.Stream(ctx, healthStream); ierr == nil {
			_ = js.DeleteStream(ctx, healthStream)
		}
		return fmt.Errorf("%w: the JetStream store did not store a probe write in time (a disk that fails writes?)", errStoreNoAnswer)
	default:
		return fmt.Errorf("the JetStream store refused a probe write: %v", err)
	}
}

// probeBatch publishes a one-message atomic batch to subject. A disk
// that is full or failing below max_file_store still takes plain writes
// into the blocks the store has open, but on a single server each atomic
// batch is staged in files of its own, which it cannot create: the
// batch is refused as incomplete (10176) at once. The probe stream is
// idle (one probe per replica a second), so that refusal cannot be the
// 50 batches in flight that a busy stream also refuses as incomplete. A
// probe stream made before it allowed batches is updated first.
func probeBatch(ctx context.Context, js jetstream.JetStream, replicas int, subject string) error {
	for updated := false; ; updated = true {
		m := nats.NewMsg(subject)
		m.Data = []byte("batch probe")
		_, err := jetstreamext.PublishMsgBatch(ctx, js, []*nats.Msg{m})
		var apiErr *jetstream.APIError
		if updated || !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstreamext.JSErrCodeBatchPublishNotEnabled {
			return err
		}
		if _, err := js.CreateOrUpdateStream(ctx, healthStreamConfig(replicas)); err != nil {
			return fmt.Errorf("probe stream %s: %w", healthStream, err)
		}
	}
}

// isBatchIncomplete reports whether err is JetStream refusing an atomic
// batch as incomplete (10176): on a busy stream, too many batches in
// flight; on an idle one, a store that cannot stage it.
func isBatchIncomplete(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishIncomplete
}
