package chatserver

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez/registry"
	"kez.lat/kez/streams"
)

// scratchSuffix names the buckets a --check rebuild writes.
const scratchSuffix = "_rebuild"

// RebuildResult reports a rebuild.
type RebuildResult struct {
	Events      int      `json:"events"`
	Seconds     float64  `json:"seconds"`
	Checked     bool     `json:"checked"`
	Identical   bool     `json:"identical,omitempty"`
	Differences []string `json:"differences,omitempty"`
}

// Rebuild replays the registry into an empty projection. With check, it
// rebuilds into scratch buckets, compares them entry by entry with the
// live projection, and deletes them; otherwise it replaces the live
// projection. Servers may run meanwhile (docs/operations.md): their
// projectors write the same entries, which Apply accepts as equal, and a
// rebuild that stops half way is run again.
func Rebuild(ctx context.Context, js jetstream.JetStream, replicas int, check bool, logger *slog.Logger) (RebuildResult, error) {
	res := RebuildResult{Checked: check}
	log, err := streams.OpenRegistry(ctx, js)
	if err != nil {
		return res, err
	}
	suffix := ""
	if check {
		suffix = scratchSuffix
	}
	proj, err := streams.ResetProjection(ctx, js, replicas, suffix)
	if err != nil {
		return res, err
	}
	start := time.Now()
	res.Events, err = registry.Rebuild(ctx, log, proj, logger)
	res.Seconds = time.Since(start).Seconds()
	if err != nil || !check {
		return res, err
	}
	defer streams.DeleteProjection(context.WithoutCancel(ctx), js, suffix)
	live, err := streams.OpenProjection(ctx, js)
	if err != nil {
		return res, err
	}
	a, err := live.Dump(ctx)
	if err != nil {
		return res, err
	}
	b, err := proj.Dump(ctx)
	if err != nil {
		return res, err
	}
	for k, v := range a {
		if w, ok := b[k]; !ok {
			res.Differences = append(res.Differences, fmt.Sprintf("%s: only in the live projection", k))
		} else if v != w {
			res.Differences = append(res.Differences, fmt.Sprintf("%s: differs", k))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			res.Differences = append(res.Differences, fmt.Sprintf("%s: missing from the live projection", k))
		}
	}
	slices.Sort(res.Differences)
	res.Identical = len(res.Differences) == 0
	return res, nil
}
