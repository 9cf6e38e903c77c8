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
	// not addressed to a key (nobody could ever have read them).
	Moved, Dropped int
	// Consumers is how many per-user inbox consumers were removed.
	Consumers int
}

// MigrateLegacy upgrades an inbox stream of the release before the door
// in place: messages still unread on the old subjects kez.inbox.<hex>
// move to kez.inbox.<hex>.<sender> (published with their dedup key as
// Nats-Msg-Id, then purged from the old subject, so a replica that dies
// half way, or two replicas at once, neither lose nor double a message),
// and the per-user durable consumers, which nothing reads any more, are
// deleted. It does nothing on a stream that has neither. Every replica
// runs it at start.
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
	if m.Moved+m.Dropped+m.Consumers > 0 {
		logger.Info("inbox upgraded to the door", "moved", m.Moved, "dropped", m.Dropped, "consumers_removed", m.Consumers)
	}
	return m, nil
}

// migrateSubject moves the messages of one old inbox subject.
func migrateSubject(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, subject string, m *Migration) error {
	recipient, err := kez.ParsePublicKeyHex(strings.TrimPrefix(subject, "kez.inbox."))
	for {
		msgs, gerr := jetstreamext.GetBatch(ctx, js, kez.InboxStream, readBatch, jetstreamext.GetBatchSubject(subject))
		if gerr != nil {
			return fmt.Errorf("read %s: %w", subject, gerr)
		}
		var last uint64
		for msg, merr := range msgs {
			if errors.Is(merr, jetstreamext.ErrNoMessages) {
				break
			}
			if merr != nil {
				return fmt.Errorf("read %s: %w", subject, merr)
			}
			last = msg.Sequence
			env, perr := message.Parse(msg.Data)
			if err != nil || perr != nil || !env.To.Equal(recipient) {
				m.Dropped++
				continue
			}
			if _, err := js.Publish(ctx, kez.InboxMsgSubject(recipient, env.From), msg.Data, jetstream.WithMsgID(env.DedupKey())); err != nil {
				return fmt.Errorf("move a message of %s: %w", subject, err)
			}
			m.Moved++
		}
		if last == 0 {
			return nil
		}
		if err := st.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(last+1)); err != nil {
			return fmt.Errorf("purge %s: %w", subject, err)
		}
	}
}
