package door

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"kez.lat/kez"
	"kez.lat/kez/message"
	"kez.lat/kez/streams"
)

// Migration is what MigrateLegacy did.
type Migration struct {
	// Moved messages went from kez.inbox.<recipient> to the door's
	// kez.inbox.<recipient>.<sender>; Dropped ones were not envelopes or
	// not addressed to the inbox's owner (nobody could ever have read
	// them), and Forged ones did not verify as signed by their sender.
	Moved, Dropped, Forged int
	// Kept messages stay on their old subject: their sender's share of
	// the recipient's inbox is full. A later migration (every replica
	// runs one at start) moves them once the recipient has read some;
	// otherwise they expire with the stream's max age.
	Kept int
	// Consumers is how many per-user inbox consumers were removed.
	Consumers int
}

// MigrateLegacy upgrades an inbox stream of the release before the door
// in place: messages still unread on the old subjects kez.inbox.<hex>
// move to kez.inbox.<hex>.<sender> (published with their dedup key as
// Nats-Msg-Id, then removed from the old subject, so a replica that dies
// half way, or two replicas at once, neither lose nor double a message),
// and the per-user durable consumers, which nothing reads any more, are
// deleted. It does nothing on a stream that has neither. Every replica
// runs it at start.
//
// Before the door anyone could publish to kez.inbox.<hex>, so a message
// moves only if it is an envelope addressed to the inbox's owner whose
// signature verifies: a forgery naming another sender would take that
// sender's share of the inbox and of her quota. A message whose sender's
// share of the inbox is full stays where it is (Migration.Kept) and is
// not an error: retrying could not make room.
func MigrateLegacy(ctx context.Context, js jetstream.JetStream, logger *slog.Logger) (Migration, error) {
	var m Migration
	st, err := js.Stream(ctx, kez.InboxStream)
	if err != nil {
		return m, fmt.Errorf("stream %s: %w", kez.InboxStream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(streams.LegacyInboxSubjects))
	if err != nil {
		return m, fmt.Errorf("stream info: %w", err)
	}
	for subject := range info.State.Subjects {
		if err := migrateSubject(ctx, js, st, subject, &m); err != nil {
			return m, err
		}
	}
	names := st.ConsumerNames(ctx)
	for name := range names.Name() {
		if err := st.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return m, fmt.Errorf("delete consumer %s: %w", name, err)
		}
		m.Consumers++
	}
	if err := names.Err(); err != nil {
		return m, fmt.Errorf("list consumers: %w", err)
	}
	if m.Moved+m.Dropped+m.Forged+m.Consumers > 0 {
		logger.Info("inbox upgraded to the door", "moved", m.Moved, "dropped", m.Dropped, "forged_dropped", m.Forged, "consumers_removed", m.Consumers)
	}
	if m.Kept > 0 {
		logger.Warn("inbox upgrade kept messages on their old subjects: their sender's share of the inbox is full; they move at a later start once the recipient reads", "kept", m.Kept)
	}
	return m, nil
}

// migrateSubject moves the messages of one old inbox subject. While it
// keeps none, it removes the messages it read with one purge per batch;
// once it keeps one, it deletes the others one by one.
func migrateSubject(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, subject string, m *Migration) error {
	recipient, err := kez.ParsePublicKeyHex(strings.TrimPrefix(subject, "kez.inbox."))
	owned := err == nil
	keeping := false
	for next := uint64(1); ; {
		msgs, gerr := jetstreamext.GetBatch(ctx, js, kez.InboxStream, readBatch, jetstreamext.GetBatchSubject(subject), jetstreamext.GetBatchSeq(next))
		if gerr != nil {
			return fmt.Errorf("read %s: %w", subject, gerr)
		}
		var last uint64
		var remove []uint64 // the messages read, once keeping
		for msg, merr := range msgs {
			if errors.Is(merr, jetstreamext.ErrNoMessages) {
				break
			}
			if merr != nil {
				return fmt.Errorf("read %s: %w", subject, merr)
			}
			last = msg.Sequence
			switch moved, err := migrateMsg(ctx, js, recipient, owned, msg.Data, m); {
			case err != nil:
				return fmt.Errorf("move a message of %s: %w", subject, err)
			case !moved:
				keeping = true
			default:
				remove = append(remove, msg.Sequence)
			}
		}
		if last == 0 {
			return nil
		}
		next = last + 1
		if !keeping {
			if err := st.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(next)); err != nil {
				return fmt.Errorf("purge %s: %w", subject, err)
			}
			continue
		}
		for _, seq := range remove {
			if err := st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("delete a message of %s: %w", subject, err)
			}
		}
	}
}

// migrateMsg moves one message of recipient's old inbox subject (owned:
// the subject names a key), or drops it, and counts it in m. It reports
// false if it kept the message where it is.
func migrateMsg(ctx context.Context, js jetstream.JetStream, recipient kez.PublicKey, owned bool, data []byte, m *Migration) (bool, error) {
	env, err := message.Parse(data)
	if err != nil || !owned || !env.To.Equal(recipient) {
		m.Dropped++
		return true, nil
	}
	if env.Verify() != nil {
		m.Forged++
		return true, nil
	}
	_, err = js.Publish(ctx, kez.InboxMsgSubject(recipient, env.From), data, jetstream.WithMsgID(env.DedupKey()))
	if isShareFull(err) {
		m.Kept++
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m.Moved++
	return true, nil
}
