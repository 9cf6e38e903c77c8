package sigchain_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/keztest"
	"kez.lat/kez/sigchain"
)

// sample returns a five-event chain of key touching every known type.
func sample(tb testing.TB, key *kez.PrivateKey) []sigchain.Event {
	tb.Helper()
	pub := key.Public()
	return build(tb, key,
		step{sigchain.TypeAddEndpoint, sigchain.NATSEndpoint{URL: "nats://nats.kez.lat:4222", Inbox: sigchain.Inbox(pub)}, 0},
		step{sigchain.TypeAddEndpoint, sigchain.P2PEndpoint{PeerID: peerID(pub), Addrs: []string{"/ip4/203.0.113.7/tcp/4001"}}, 0},
		step{sigchain.TypeAddClaim, sigchain.Claim{Kind: "github", Value: "alice", Proof: "https://gist.github.com/alice/1"}, time.Minute},
		step{sigchain.TypeSetSharedFiles, sigchain.SharedFiles{Manifest: hashOf("manifest"), Size: 42}, time.Hour},
		step{"x_future", map[string]int{"n": 1}, time.Hour},
	)
}

func TestVerifyChain(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	pub := key.Public()
	chain := sample(t, key)
	st, err := sigchain.VerifyChain(pub, chain)
	if err != nil {
		t.Fatal(err)
	}
	want := sigchain.State{
		Key:         pub,
		Tail:        chain[4].Pin(),
		Ctime:       t0.Add(time.Hour).Unix(),
		NATS:        []sigchain.NATSEndpoint{{URL: "nats://nats.kez.lat:4222", Inbox: sigchain.Inbox(pub)}},
		P2P:         []sigchain.P2PEndpoint{{PeerID: peerID(pub), Addrs: []string{"/ip4/203.0.113.7/tcp/4001"}}},
		Claims:      []sigchain.Claim{{Kind: "github", Value: "alice", Proof: "https://gist.github.com/alice/1"}},
		SharedFiles: &sigchain.SharedFiles{Manifest: hashOf("manifest"), Size: 42},
	}
	if !sameState(st, want) {
		t.Errorf("VerifyChain = %+v, want %+v", st, want)
	}

	empty, err := sigchain.VerifyChain(pub, nil)
	if err != nil || !empty.Tail.IsZero() || len(empty.NATS) != 0 || !empty.Key.Equal(pub) {
		t.Errorf("VerifyChain(empty) = %+v, %v", empty, err)
	}
	if _, err := sigchain.VerifyChain(kez.PublicKey{}, chain); err == nil {
		t.Error("VerifyChain(zero key) succeeded")
	}
}

func TestVerifyChainRejects(t *testing.T) {
	key, other := keztest.SeedKey(t, 0), keztest.SeedKey(t, 0x20)
	pub := key.Public()
	chain := sample(t, key)
	otherChain := sample(t, other)

	// forged returns a seqno-2 event of key after chain[0] with the given
	// fields, signed by signer.
	forged := func(signer *kez.PrivateKey, seqno int, prev string, ctime int64) sigchain.Event {
		p := fmt.Sprintf(`{"v":1,"chain":%q,"seqno":%d,"prev":%q,"ctime":%d,"type":"note","body":{}}`,
			pub.String(), seqno, prev, ctime)
		return mustParse(t, signWire(signer, p))
	}
	tests := []struct {
		name   string
		events []sigchain.Event
		want   error
	}{
		{"valid", chain, nil},
		{"starts at 2", chain[1:], sigchain.ErrWrongSeqno},
		{"gap", []sigchain.Event{chain[0], chain[2]}, sigchain.ErrWrongSeqno},
		{"repeated", []sigchain.Event{chain[0], chain[1], chain[1]}, sigchain.ErrWrongSeqno},
		{"reordered", []sigchain.Event{chain[0], chain[2], chain[1]}, sigchain.ErrWrongSeqno},
		{"wrong prev", []sigchain.Event{chain[0], forged(key, 2, hashOf("other"), t0.Unix())}, sigchain.ErrWrongPrev},
		{"ctime backwards", []sigchain.Event{chain[0], forged(key, 2, chain[0].Hash(), t0.Unix()-1)}, sigchain.ErrBadCtime},
		{"equal ctime", []sigchain.Event{chain[0], forged(key, 2, chain[0].Hash(), t0.Unix())}, nil},
		{"signed by another key", []sigchain.Event{chain[0], forged(other, 2, chain[0].Hash(), t0.Unix())}, sigchain.ErrBadSignature},
		{"event of another chain", []sigchain.Event{chain[0], otherChain[1]}, sigchain.ErrWrongChain},
		{"another chain", otherChain, sigchain.ErrWrongChain},
		{"zero event", []sigchain.Event{chain[0], {}}, sigchain.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sigchain.VerifyChain(pub, tt.events)
			wantErr(t, "VerifyChain", err, tt.want)
		})
	}
}

func TestUnknownTypeKeptAndIgnored(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	pub := key.Public()
	chain := build(t, key,
		step{"x_future", map[string]any{"anything": []any{1, "two", nil}}, 0},
		step{sigchain.TypeMovedTo, map[string]string{"handle": "alice@other.example"}, 0},
		step{sigchain.TypeAddEndpoint, map[string]string{"protocol": "iroh", "node_id": "abc"}, 0},
	)
	st, err := sigchain.VerifyChain(pub, chain)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tail != chain[2].Pin() {
		t.Errorf("tail = %+v, want %+v", st.Tail, chain[2].Pin())
	}
	if len(st.NATS)+len(st.P2P)+len(st.Claims) != 0 || st.SharedFiles != nil {
		t.Errorf("unknown events changed the state: %+v", st)
	}
	// A later event links to the unknown ones like to any other.
	chain = appendSteps(t, key, chain, step{sigchain.TypeAddClaim, sigchain.Claim{Kind: "dns", Value: "a.example", Proof: "txt"}, 0})
	if st, err = sigchain.VerifyChain(pub, chain); err != nil || len(st.Claims) != 1 {
		t.Errorf("VerifyChain = %+v, %v", st, err)
	}
}

func TestState(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	pub := key.Public()
	inbox := sigchain.Inbox(pub)
	peer := peerID(pub)
	n1 := sigchain.NATSEndpoint{URL: "nats://a.example:4222", Inbox: inbox}
	n2 := sigchain.NATSEndpoint{URL: "wss://b.example", Inbox: inbox}
	p1 := sigchain.P2PEndpoint{PeerID: peer, Addrs: []string{"/ip4/192.0.2.1/tcp/1"}}
	p1b := sigchain.P2PEndpoint{PeerID: peer, Addrs: []string{"/ip4/192.0.2.2/tcp/2"}}
	gh := sigchain.Claim{Kind: "github", Value: "alice", Proof: "https://gist.github.com/alice/1"}
	gh2 := sigchain.Claim{Kind: "github", Value: "alice", Proof: "https://gist.github.com/alice/2"}
	dns := sigchain.Claim{Kind: "dns", Value: "alice.example", Proof: "TXT"}
	f1 := sigchain.SharedFiles{Manifest: hashOf("1"), Size: 1}
	f2 := sigchain.SharedFiles{Manifest: hashOf("2"), Size: 2}

	tests := []struct {
		name  string
		steps []step
		want  sigchain.State
	}{
		{"add two nats", []step{
			{sigchain.TypeAddEndpoint, n1, 0}, {sigchain.TypeAddEndpoint, n2, 0},
		}, sigchain.State{NATS: []sigchain.NATSEndpoint{n1, n2}}},
		{"remove nats by url", []step{
			{sigchain.TypeAddEndpoint, n1, 0}, {sigchain.TypeAddEndpoint, n2, 0},
			{sigchain.TypeRemoveEndpoint, sigchain.NATSEndpoint{URL: n1.URL}, 0},
		}, sigchain.State{NATS: []sigchain.NATSEndpoint{n2}}},
		{"remove nats with the added value", []step{
			{sigchain.TypeAddEndpoint, n1, 0}, {sigchain.TypeRemoveEndpoint, n1, 0},
		}, sigchain.State{}},
		{"re-add moves to the end", []step{
			{sigchain.TypeAddEndpoint, n1, 0}, {sigchain.TypeAddEndpoint, n2, 0}, {sigchain.TypeAddEndpoint, n1, 0},
		}, sigchain.State{NATS: []sigchain.NATSEndpoint{n2, n1}}},
		{"p2p addrs replaced", []step{
			{sigchain.TypeAddEndpoint, p1, 0}, {sigchain.TypeAddEndpoint, p1b, 0},
		}, sigchain.State{P2P: []sigchain.P2PEndpoint{p1b}}},
		{"remove p2p by peer id", []step{
			{sigchain.TypeAddEndpoint, p1, 0}, {sigchain.TypeAddEndpoint, n1, 0},
			{sigchain.TypeRemoveEndpoint, sigchain.P2PEndpoint{PeerID: peer}, 0},
		}, sigchain.State{NATS: []sigchain.NATSEndpoint{n1}}},
		{"remove absent endpoint is a no-op", []step{
			{sigchain.TypeAddEndpoint, n1, 0}, {sigchain.TypeRemoveEndpoint, sigchain.NATSEndpoint{URL: "nats://gone.example"}, 0},
			{sigchain.TypeRemoveEndpoint, sigchain.P2PEndpoint{PeerID: peer}, 0},
		}, sigchain.State{NATS: []sigchain.NATSEndpoint{n1}}},
		{"remove unknown protocol is a no-op", []step{
			{sigchain.TypeAddEndpoint, n1, 0}, {sigchain.TypeRemoveEndpoint, map[string]string{"protocol": "iroh"}, 0},
		}, sigchain.State{NATS: []sigchain.NATSEndpoint{n1}}},
		{"claims", []step{
			{sigchain.TypeAddClaim, gh, 0}, {sigchain.TypeAddClaim, dns, 0},
		}, sigchain.State{Claims: []sigchain.Claim{gh, dns}}},
		{"claim proof replaced", []step{
			{sigchain.TypeAddClaim, gh, 0}, {sigchain.TypeAddClaim, dns, 0}, {sigchain.TypeAddClaim, gh2, 0},
		}, sigchain.State{Claims: []sigchain.Claim{dns, gh2}}},
		{"revoke claim", []step{
			{sigchain.TypeAddClaim, gh, 0}, {sigchain.TypeAddClaim, dns, 0},
			{sigchain.TypeRevokeClaim, sigchain.Claim{Kind: "github", Value: "alice"}, 0},
		}, sigchain.State{Claims: []sigchain.Claim{dns}}},
		{"revoke with proof, revoke absent", []step{
			{sigchain.TypeAddClaim, gh, 0}, {sigchain.TypeRevokeClaim, gh, 0}, {sigchain.TypeRevokeClaim, dns, 0},
		}, sigchain.State{}},
		{"revoke needs the exact value", []step{
			{sigchain.TypeAddClaim, gh, 0}, {sigchain.TypeRevokeClaim, sigchain.Claim{Kind: "github", Value: "Alice"}, 0},
		}, sigchain.State{Claims: []sigchain.Claim{gh}}},
		{"latest shared files", []step{
			{sigchain.TypeSetSharedFiles, f1, 0}, {sigchain.TypeSetSharedFiles, f2, 0},
		}, sigchain.State{SharedFiles: &f2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chain := build(t, key, tt.steps...)
			st, err := sigchain.VerifyChain(pub, chain)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Key = pub
			tt.want.Tail = chain[len(chain)-1].Pin()
			tt.want.Ctime = t0.Unix()
			if !sameState(st, tt.want) {
				t.Errorf("state = %+v\nwant    %+v", st, tt.want)
			}
		})
	}
}

func TestStateJSON(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	st, err := sigchain.VerifyChain(key.Public(), sample(t, key))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back sigchain.State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Errorf("JSON round trip = %+v, want %+v", back, st)
	}
}

func TestStateDoesNotAliasEvents(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	chain := sample(t, key)
	st, err := sigchain.VerifyChain(key.Public(), chain)
	if err != nil {
		t.Fatal(err)
	}
	st.P2P[0].Addrs[0] = "/mutated"
	again, err := sigchain.VerifyChain(key.Public(), chain)
	if err != nil {
		t.Fatal(err)
	}
	if again.P2P[0].Addrs[0] == "/mutated" {
		t.Error("state shares memory with the events")
	}
}

func TestVerifyAppend(t *testing.T) {
	key, other := keztest.SeedKey(t, 0), keztest.SeedKey(t, 0x20)
	pub := key.Public()
	chain := sample(t, key)
	otherChain := sample(t, other)
	forged := func(seqno int, prev string, ctime int64) sigchain.Event {
		return mustParse(t, signWire(key, fmt.Sprintf(`{"v":1,"chain":%q,"seqno":%d,"prev":%q,"ctime":%d,"type":"note","body":{}}`,
			pub.String(), seqno, prev, ctime)))
	}
	last := &chain[len(chain)-1]
	next := appendSteps(t, key, chain, step{"note", nil, 2 * time.Hour})[len(chain)]
	byOther, err := sigchain.Next(other, nil, "note", nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  kez.PublicKey
		last *sigchain.Event
		next sigchain.Event
		want error
	}{
		{"first", pub, nil, chain[0], nil},
		{"next", pub, last, next, nil},
		{"first not seqno 1", pub, nil, chain[1], sigchain.ErrWrongSeqno},
		{"stale tail", pub, &chain[len(chain)-2], next, sigchain.ErrWrongSeqno},
		{"replay of last", pub, last, *last, sigchain.ErrWrongSeqno},
		{"wrong prev", pub, last, forged(6, hashOf("x"), t0.Add(2*time.Hour).Unix()), sigchain.ErrWrongPrev},
		{"ctime backwards", pub, last, forged(6, last.Hash(), t0.Unix()), sigchain.ErrBadCtime},
		{"signed by another key", pub, nil, mustParse(t, signWire(other, string(chain[0].Payload()))), sigchain.ErrBadSignature},
		{"event of another chain", pub, nil, byOther, sigchain.ErrWrongChain},
		{"last of another chain", pub, &otherChain[4], next, sigchain.ErrWrongChain},
		{"zero next", pub, nil, sigchain.Event{}, sigchain.ErrMalformed},
		{"zero last", pub, &sigchain.Event{}, next, sigchain.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, "VerifyAppend", sigchain.VerifyAppend(tt.key, tt.last, tt.next), tt.want)
		})
	}
}

// TestAppendThenVerify checks the invariant that makes an append-only chain
// safe to serve: whatever VerifyAppend accepts one event at a time,
// VerifyChain accepts as a whole.
func TestAppendThenVerify(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	pub := key.Public()
	var stored []sigchain.Event
	events := appendSteps(t, key, sample(t, key),
		step{sigchain.TypeRemoveEndpoint, sigchain.NATSEndpoint{URL: "nats://never.added"}, 0},
		step{sigchain.TypeRevokeClaim, sigchain.Claim{Kind: "x", Value: "never added"}, 0})
	// A second history of the same key does not link after the first.
	events = append(events, build(t, key, step{"note", nil, 0}, step{"note", nil, 0})...)
	for _, e := range events {
		var last *sigchain.Event
		if len(stored) > 0 {
			last = &stored[len(stored)-1]
		}
		if sigchain.VerifyAppend(pub, last, e) == nil {
			stored = append(stored, e)
		}
	}
	if len(stored) != 7 {
		t.Fatalf("stored %d events, want 7", len(stored))
	}
	if _, err := sigchain.VerifyChain(pub, stored); err != nil {
		t.Errorf("VerifyChain of appended events: %v", err)
	}
}
