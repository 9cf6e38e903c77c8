package registry

import (
	"context"
	"errors"
	"log/slog"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
)

var errRebuilt = errors.New("rebuilt")

// Rebuild replays the whole log into proj, which should be empty, and
// returns the number of events applied. It stops at the log's last
// sequence as of the start; events appended meanwhile are left to the
// projectors. Replaying the same log always yields the same projection.
func Rebuild(ctx context.Context, log Log, proj Projection, logger *slog.Logger) (int, error) {
	last, err := log.LastSeq(ctx)
	if err != nil || last == 0 {
		return 0, err
	}
	n := 0
	err = projectFrom(ctx, log, proj, logger, integrity.Checkpoint{}, nil, nil, func(recs []kez.HandleRecord, cp integrity.Checkpoint, caughtUp bool) error {
		n += len(recs)
		if cp.Seq >= last || caughtUp {
			// Move the checkpoint before stopping: projectFrom moves it
			// only after done returns.
			if err := proj.SetCheckpoint(ctx, cp); err != nil {
				return err
			}
			return errRebuilt
		}
		return nil
	})
	if errors.Is(err, errRebuilt) {
		err = nil
	}
	return n, err
}
