package sigchain_test

import (
	"errors"
	"testing"
	"time"

	"kez.lat/kez/keztest"
	"kez.lat/kez/sigchain"
)

func TestCheckPin(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	chain := sample(t, key) // seqnos 1..5
	// A rewritten history: the same first two events, then others.
	fork := appendSteps(t, key, append([]sigchain.Event(nil), chain[:2]...),
		step{sigchain.TypeAddClaim, sigchain.Claim{Kind: "github", Value: "mallory", Proof: "p"}, time.Minute},
		step{"note", nil, time.Hour}, step{"note", nil, time.Hour})

	tests := []struct {
		name   string
		pin    sigchain.Pin
		events []sigchain.Event
		want   error
	}{
		{"zero pin", sigchain.Pin{}, nil, nil},
		{"same tail", chain[4].Pin(), chain, nil},
		{"grew", chain[2].Pin(), chain, nil},
		{"tail from the pin", chain[2].Pin(), chain[2:], nil},
		{"rolled back", chain[4].Pin(), chain[:3], sigchain.ErrRollback},
		{"emptied", chain[0].Pin(), nil, sigchain.ErrRollback},
		{"rewritten", chain[2].Pin(), fork, sigchain.ErrRewritten},
		{"rewritten at the tail", chain[4].Pin(), fork, sigchain.ErrRewritten},
		{"prefix still shared", chain[1].Pin(), fork, nil},
		{"tail after the pin", chain[1].Pin(), chain[3:], sigchain.ErrWrongSeqno},
		{"not contiguous", chain[2].Pin(), []sigchain.Event{chain[0], chain[4]}, sigchain.ErrWrongSeqno},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, "CheckPin", sigchain.CheckPin(tt.pin, tt.events), tt.want)
		})
	}
}

func TestExtend(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	pub := key.Public()
	chain := appendSteps(t, key, sample(t, key), // seqnos 1..8
		step{sigchain.TypeRevokeClaim, sigchain.Claim{Kind: "github", Value: "alice"}, 2 * time.Hour},
		step{sigchain.TypeRemoveEndpoint, sigchain.P2PEndpoint{PeerID: peerID(pub)}, 2 * time.Hour},
		step{sigchain.TypeSetSharedFiles, sigchain.SharedFiles{Manifest: hashOf("m2"), Size: 7}, 3 * time.Hour},
	)
	full, err := sigchain.VerifyChain(pub, chain)
	if err != nil {
		t.Fatal(err)
	}
	// Every split point, every overlap: the same state as verifying it all.
	for cut := 1; cut <= len(chain); cut++ {
		old, err := sigchain.VerifyChain(pub, chain[:cut])
		if err != nil {
			t.Fatal(err)
		}
		before := old.Tail
		for from := 0; from < cut; from++ {
			got, err := old.Extend(chain[from:])
			if err != nil {
				t.Fatalf("cut %d, tail from seqno %d: %v", cut, from+1, err)
			}
			if !sameState(got, full) {
				t.Errorf("cut %d, tail from seqno %d: state %+v, want %+v", cut, from+1, got, full)
			}
		}
		if old.Tail != before {
			t.Errorf("Extend changed its receiver")
		}
	}

	pinned, err := sigchain.VerifyChain(pub, chain[:5])
	if err != nil {
		t.Fatal(err)
	}
	fork := appendSteps(t, key, append([]sigchain.Event(nil), chain[:3]...),
		step{"note", nil, time.Hour}, step{"note", nil, time.Hour}, step{"note", nil, time.Hour})
	tests := []struct {
		name string
		tail []sigchain.Event
		want error
	}{
		{"no new events", chain[4:5], nil},
		{"empty answer", nil, sigchain.ErrRollback},
		{"rolled back", chain[2:4], sigchain.ErrRollback},
		{"rewritten", fork[3:], sigchain.ErrRewritten},
		{"rewritten, shown from seqno 1", fork, sigchain.ErrRewritten},
		{"starts after the pin", chain[5:], sigchain.ErrWrongSeqno},
		{"gap", []sigchain.Event{chain[4], chain[6]}, sigchain.ErrWrongSeqno},
		{"another chain", sample(t, keztest.SeedKey(t, 0x20))[4:], sigchain.ErrWrongChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pinned.Extend(tt.tail)
			wantErr(t, "Extend", err, tt.want)
		})
	}

	if _, err := (sigchain.State{}).Extend(chain); !errors.Is(err, sigchain.ErrWrongChain) {
		t.Errorf("Extend on a state without key = %v, want ErrWrongChain", err)
	}
}

// TestPinnedStateSurvivesJSON is the client flow: verify, cache the state
// as JSON, later extend the cached state with the server's tail.
func TestPinnedStateSurvivesJSON(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	pub := key.Public()
	chain := sample(t, key)
	st, err := sigchain.VerifyChain(pub, chain[:3])
	if err != nil {
		t.Fatal(err)
	}
	b := mustJSON(t, st)
	var cached sigchain.State
	unmarshal(t, b, &cached)
	got, err := cached.Extend(chain[cached.Tail.Seqno-1:])
	if err != nil {
		t.Fatal(err)
	}
	want, _ := sigchain.VerifyChain(pub, chain)
	if !sameState(got, want) {
		t.Errorf("state = %+v, want %+v", got, want)
	}
}
