package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
)

// ScanMsg is one message of a full scan of a stream.
type ScanMsg struct {
	Seq     uint64
	Subject string
	Data    []byte
}

// scan calls fn with every message of stream up to its last sequence as of
// the start, in order, through an ordered consumer (served by the stream
// leader), and returns the last sequence. It stops early if fn fails.
func scan(ctx context.Context, js jetstream.JetStream, stream string, fn func(ScanMsg) error) (uint64, error) {
	s, err := openStream(ctx, js, stream)
	if err != nil {
		return 0, err
	}
	last := s.CachedInfo().State.LastSeq
	if s.CachedInfo().State.Msgs == 0 {
		return last, nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return last, fmt.Errorf("%s consumer: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return last, fmt.Errorf("%s consumer: %w", stream, err)
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, fmt.Errorf("%s consumer: %w", stream, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return last, fmt.Errorf("%s message metadata: %w", stream, err)
		}
		if err := fn(ScanMsg{Seq: md.Sequence.Stream, Subject: m.Subject(), Data: m.Data()}); err != nil {
			return last, err
		}
		if md.Sequence.Stream >= last || md.NumPending == 0 {
			return last, nil
		}
	}
}

// Claim kinds of the registry's subjects.
const (
	ClaimHandle   = "handle" // the event itself, on the handle's subject
	ClaimKey      = "key"
	ClaimSkeleton = "skeleton"
)

// RegistryMsg is one message of the registry log: a handle_registered
// event (Kind ClaimHandle, Token the handle's local part) or a key or
// skeleton claim (Token the key's hex or the skeleton).
type RegistryMsg struct {
	ScanMsg
	Kind, Token string
}

// ScanRegistry calls fn with every message of the registry log, in order,
// up to its last sequence at the start, and returns that sequence.
func ScanRegistry(ctx context.Context, js jetstream.JetStream, fn func(RegistryMsg) error) (uint64, error) {
	return scan(ctx, js, RegistryStream, func(m ScanMsg) error {
		rest, ok := strings.CutPrefix(m.Subject, "kez.registry.")
		kind, token, ok2 := strings.Cut(rest, ".")
		if !ok || !ok2 {
			return fmt.Errorf("registry message %d on unexpected subject %s", m.Seq, m.Subject)
		}
		return fn(RegistryMsg{ScanMsg: m, Kind: kind, Token: token})
	})
}

// ScanSigchains calls fn with every event of every chain, in stream order,
// with the chain's key (from the subject), up to the last sequence at the
// start, and returns that sequence.
func ScanSigchains(ctx context.Context, js jetstream.JetStream, fn func(key kez.PublicKey, m ScanMsg) error) (uint64, error) {
	return scan(ctx, js, SigchainStream, func(m ScanMsg) error {
		hex, _ := strings.CutPrefix(m.Subject, "kez.sigchain.")
		key, err := kez.ParsePublicKeyHex(hex)
		if err != nil {
			return fmt.Errorf("sigchain message %d on subject %s: %w", m.Seq, m.Subject, err)
		}
		return fn(key, m)
	})
}

// IsNoStream reports whether err means the stream does not exist.
func IsNoStream(err error) bool { return errors.Is(err, jetstream.ErrStreamNotFound) }
