package chatserver

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/streams"
)

// sweepInboxes purges messages waiting on inbox subjects that belong to no
// registered key. A signed-in user may publish to any kez.inbox.<token>
// (permissions cannot say "a registered key"), and such messages would
// otherwise sit out the inbox age limit, using the stream's bytes. A token
// is kept if it is a key the cache knows, or one the registry stream's
// leader knows (a user who registered a moment ago is never swept); only a
// definite "not registered" purges.
func sweepInboxes(ctx context.Context, inboxes *streams.Inboxes, users calloutUsers, logger *slog.Logger) (int, error) {
	tokens, err := inboxes.InboxTokens(ctx)
	if err != nil {
		return 0, err
	}
	purged := 0
	for token := range tokens {
		key, err := kez.ParsePublicKeyHex(token)
		if err == nil {
			if _, ok := users.LookupKey(key); ok {
				continue
			}
			_, err = users.KeyHandle(ctx, key)
			if err == nil || !errors.Is(err, kez.ErrNotFound) {
				continue // registered, or unknown for now: keep
			}
		}
		if err := inboxes.PurgeInbox(ctx, token); err != nil {
			return purged, err
		}
		purged++
	}
	if purged > 0 {
		logger.Info("purged messages sent to unregistered inboxes", "inboxes", purged)
	}
	return purged, nil
}

// sweepLoop runs sweepInboxes every interval until ctx ends.
func sweepLoop(ctx context.Context, interval time.Duration, sweep func(context.Context) (int, error), logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := sweep(ctx); err != nil && ctx.Err() == nil {
				logger.Warn("inbox sweep", "err", err)
			}
		}
	}
}
