// Package mock holds hand-written fakes of the registry's interfaces for
// tests: each method calls the function field of its name, so a test sets
// just the calls it expects (a call to an unset one panics, failing the
// test that did not expect it).
package mock

import (
	"context"
	"net/netip"

	"kez.lat/kez"
	"kez.lat/kez/integrity"
	"kez.lat/kez/registry"
)

var (
	_ registry.Log        = (*Log)(nil)
	_ registry.Projection = (*Projection)(nil)
	_ registry.Limiter    = (*Limiter)(nil)
)

// Log is a fake [registry.Log].
type Log struct {
	AppendFn         func(ctx context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error)
	FollowFn         func(ctx context.Context, after uint64, fn func(kez.RegistryEntry) error) error
	LastSeqFn        func(ctx context.Context) (uint64, error)
	EventFn          func(ctx context.Context, seq uint64) ([]byte, error)
	HandleEventFn    func(ctx context.Context, local string) (kez.RegistryEvent, error)
	KeyHandleFn      func(ctx context.Context, key kez.PublicKey) (kez.Handle, error)
	SkeletonHandleFn func(ctx context.Context, skel string) (kez.Handle, error)
	ClaimSkeletonFn  func(ctx context.Context, h kez.Handle) (kez.Handle, bool, error)
}

func (l *Log) Append(ctx context.Context, ev kez.RegistryEvent) (kez.RegistryEvent, uint64, error) {
	return l.AppendFn(ctx, ev)
}

func (l *Log) Follow(ctx context.Context, after uint64, fn func(kez.RegistryEntry) error) error {
	return l.FollowFn(ctx, after, fn)
}

func (l *Log) LastSeq(ctx context.Context) (uint64, error) { return l.LastSeqFn(ctx) }

func (l *Log) Event(ctx context.Context, seq uint64) ([]byte, error) { return l.EventFn(ctx, seq) }

func (l *Log) HandleEvent(ctx context.Context, local string) (kez.RegistryEvent, error) {
	return l.HandleEventFn(ctx, local)
}

func (l *Log) KeyHandle(ctx context.Context, key kez.PublicKey) (kez.Handle, error) {
	return l.KeyHandleFn(ctx, key)
}

func (l *Log) SkeletonHandle(ctx context.Context, skel string) (kez.Handle, error) {
	return l.SkeletonHandleFn(ctx, skel)
}

func (l *Log) ClaimSkeleton(ctx context.Context, h kez.Handle) (kez.Handle, bool, error) {
	return l.ClaimSkeletonFn(ctx, h)
}

// Projection is a fake [registry.Projection].
type Projection struct {
	ApplyBatchFn    func(ctx context.Context, recs []kez.HandleRecord) error
	CheckpointFn    func(ctx context.Context) (integrity.Checkpoint, error)
	SetCheckpointFn func(ctx context.Context, cp integrity.Checkpoint) error
	GetFn           func(ctx context.Context, local string) (kez.HandleRecord, error)
	GetByKeyFn      func(ctx context.Context, key kez.PublicKey) (kez.HandleRecord, error)
	VerifyFn        func(ctx context.Context, rec kez.HandleRecord) error
	WatchFn         func(ctx context.Context, put func(kez.HandleRecord), ready func()) error
}

func (p *Projection) ApplyBatch(ctx context.Context, recs []kez.HandleRecord) error {
	return p.ApplyBatchFn(ctx, recs)
}

func (p *Projection) Checkpoint(ctx context.Context) (integrity.Checkpoint, error) {
	return p.CheckpointFn(ctx)
}

func (p *Projection) SetCheckpoint(ctx context.Context, cp integrity.Checkpoint) error {
	return p.SetCheckpointFn(ctx, cp)
}

func (p *Projection) Get(ctx context.Context, local string) (kez.HandleRecord, error) {
	return p.GetFn(ctx, local)
}

func (p *Projection) GetByKey(ctx context.Context, key kez.PublicKey) (kez.HandleRecord, error) {
	return p.GetByKeyFn(ctx, key)
}

func (p *Projection) Verify(ctx context.Context, rec kez.HandleRecord) error {
	return p.VerifyFn(ctx, rec)
}

func (p *Projection) Watch(ctx context.Context, put func(kez.HandleRecord), ready func()) error {
	return p.WatchFn(ctx, put, ready)
}

// Limiter is a fake [registry.Limiter].
type Limiter struct {
	AllowFn func(ctx context.Context, addr netip.Addr) error
}

func (l *Limiter) Allow(ctx context.Context, addr netip.Addr) error { return l.AllowFn(ctx, addr) }
