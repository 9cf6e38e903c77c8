package streams

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez/integrity"
)

// RegistryAppendOnly are the streams of the home server that never lose a
// message: the registry log and the two projection buckets whose entries
// are only ever created (a handle's record, a key's handle). A gap in any
// of them is damage.
var RegistryAppendOnly = []string{RegistryStream, kvStream(HandlesBucket), kvStream(KeysBucket)}

// SigchainAppendOnly are the streams of the sig-server that never lose a
// message.
var SigchainAppendOnly = []string{SigchainStream}

// kvStream returns the stream behind a KV bucket.
func kvStream(bucket string) string { return "KV_" + bucket }

// leaderElected is the subject of JetStream's advisory that a replicated
// stream elected a leader; it is published in the stream's account.
func leaderElected(stream string) string { return "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + stream }

// Inspector returns an integrity.Inspector that reads a stream's state
// from its leader (a stream info request, answered by the leader).
func Inspector(js jetstream.JetStream) integrity.Inspector {
	return func(ctx context.Context, name string) (integrity.State, error) {
		ctx, cancel := withTimeout(ctx)
		defer cancel()
		s, err := js.Stream(ctx, name)
		if err != nil {
			return integrity.State{}, fmt.Errorf("stream %s: %w", name, err)
		}
		return stateOf(s.CachedInfo()), nil
	}
}

func stateOf(info *jetstream.StreamInfo) integrity.State {
	st := integrity.State{
		Stream:   info.Config.Name,
		FirstSeq: info.State.FirstSeq,
		LastSeq:  info.State.LastSeq,
		Msgs:     info.State.Msgs,
		Deleted:  info.State.NumDeleted,
	}
	if info.Cluster != nil {
		st.Leader = info.Cluster.Leader
	}
	if info.State.Lost != nil {
		st.LostMsgs = len(info.State.Lost.Msgs)
	}
	return st
}

// WatchLeaders sends the name of each of names whose leader JetStream
// reports elected (only replicated streams have elections) on the
// returned channel, until the returned stop is called. A name is dropped
// rather than block the connection when the receiver is behind: the
// receiver checks the stream either way.
func WatchLeaders(nc *nats.Conn, names []string) (<-chan string, func(), error) {
	ch := make(chan string, 16)
	var subs []*nats.Subscription
	stop := func() {
		for _, s := range subs {
			s.Unsubscribe()
		}
	}
	for _, name := range names {
		sub, err := nc.Subscribe(leaderElected(name), func(*nats.Msg) {
			select {
			case ch <- name:
			default:
			}
		})
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("subscribe to leader advisories of %s: %w", name, err)
		}
		subs = append(subs, sub)
	}
	return ch, stop, nil
}
