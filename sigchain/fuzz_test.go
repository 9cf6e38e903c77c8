package sigchain_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"kez.lat/kez/keztest"
	"kez.lat/kez/sigchain"
)

// fuzzSeeds returns the wire forms of the vector chain and of the chains
// it must refuse.
func fuzzSeeds(tb testing.TB) (valid []string, invalid [][]string) {
	v := generateVectors(tb)
	for _, e := range v.Events {
		valid = append(valid, e.Wire)
	}
	for _, iv := range v.Invalid {
		invalid = append(invalid, iv.Events)
	}
	return valid, invalid
}

// FuzzParseEvent feeds untrusted wire forms to ParseEvent. Whatever it
// accepts must be within the size limit, re-encode to a wire form that
// parses to the same event, and verify or fail cleanly.
func FuzzParseEvent(f *testing.F) {
	valid, invalid := fuzzSeeds(f)
	for _, w := range valid {
		f.Add([]byte(w))
	}
	for _, c := range invalid {
		for _, w := range c {
			f.Add([]byte(w))
		}
	}
	f.Add([]byte(`{"payload":"","sig":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, wire []byte) {
		e, err := sigchain.ParseEvent(wire)
		if err != nil {
			if !e.IsZero() {
				t.Fatal("ParseEvent returned an event with an error")
			}
			for _, s := range []error{sigchain.ErrMalformed, sigchain.ErrTooLarge} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("ParseEvent error %v is neither ErrMalformed nor ErrTooLarge", err)
		}
		if len(wire) > sigchain.MaxEventSize {
			t.Fatalf("accepted %d bytes", len(wire))
		}
		if e.Seqno() < 1 || (e.Seqno() == 1) != (e.Prev() == "") || e.Type() == "" {
			t.Fatalf("accepted seqno %d prev %q type %q", e.Seqno(), e.Prev(), e.Type())
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if len(again) > sigchain.MaxEventSize {
			t.Fatalf("canonical form is %d bytes", len(again))
		}
		e2, err := sigchain.ParseEvent(again)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !bytes.Equal(e2.Payload(), e.Payload()) || !bytes.Equal(e2.Signature(), e.Signature()) || e2.Hash() != e.Hash() {
			t.Fatal("re-parse differs")
		}
		if err := e.Verify(e.Chain()); err != nil && !errors.Is(err, sigchain.ErrBadSignature) {
			t.Fatalf("Verify: %v", err)
		}
	})
}

// FuzzVerifyChain signs arbitrary payloads with the vector key, so that
// the fuzzer gets past the signature and explores the payload, body, link
// and state rules. data holds up to 16 payloads separated by NUL (which
// valid JSON never contains). Whatever verifies must give the same state
// when verified in two parts, and pin cleanly.
func FuzzVerifyChain(f *testing.F) {
	key := keztest.SeedKey(f, 0)
	pub := key.Public()
	v := generateVectors(f)
	var payloads [][]byte
	for _, e := range v.Events {
		payloads = append(payloads, []byte(e.PayloadText))
	}
	f.Add(bytes.Join(payloads, []byte{0}))
	f.Add(bytes.Join(payloads[:3], []byte{0}))
	f.Add(payloads[0])
	f.Fuzz(func(t *testing.T, data []byte) {
		parts := bytes.SplitN(data, []byte{0}, 16)
		var events []sigchain.Event
		for _, p := range parts {
			e, err := sigchain.ParseEvent([]byte(signWire(key, string(p))))
			if err != nil {
				continue // a refused event is simply not in the chain
			}
			events = append(events, e)
		}
		st, err := sigchain.VerifyChain(pub, events)
		if err != nil {
			return
		}
		if len(events) == 0 {
			if !st.Tail.IsZero() {
				t.Fatal("empty chain with a tail")
			}
			return
		}
		if st.Tail != events[len(events)-1].Pin() || st.Tail.Seqno != uint64(len(events)) {
			t.Fatalf("tail %+v after %d events", st.Tail, len(events))
		}
		if err := sigchain.CheckPin(st.Tail, events); err != nil {
			t.Fatalf("CheckPin(own tail): %v", err)
		}
		cut := len(data) % len(events) // 0..len-1
		part, err := sigchain.VerifyChain(pub, events[:cut+1])
		if err != nil {
			t.Fatalf("prefix of a valid chain: %v", err)
		}
		rest, err := part.Extend(events[cut:])
		if err != nil {
			t.Fatalf("Extend: %v", err)
		}
		if !sameState(rest, st) {
			t.Fatalf("Extend = %+v, VerifyChain = %+v", rest, st)
		}
		for i := 1; i < len(events); i++ {
			if err := sigchain.VerifyAppend(pub, &events[i-1], events[i]); err != nil {
				t.Fatalf("VerifyAppend of a verified chain: %v", err)
			}
		}
	})
}

// FuzzVerifyChainJSON feeds a server's answer, a JSON array of wire forms,
// to the client path: decode, verify, pin.
func FuzzVerifyChainJSON(f *testing.F) {
	key := keztest.SeedKey(f, 0)
	pub := key.Public()
	valid, invalid := fuzzSeeds(f)
	f.Add([]byte("[" + strings.Join(valid, ",") + "]"))
	for _, c := range invalid {
		f.Add([]byte("[" + strings.Join(c, ",") + "]"))
	}
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var events []sigchain.Event
		if err := json.Unmarshal(data, &events); err != nil {
			return
		}
		st, err := sigchain.VerifyChain(pub, events)
		if err != nil {
			return
		}
		b, err := json.Marshal(events)
		if err != nil {
			t.Fatal(err)
		}
		var back []sigchain.Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		st2, err := sigchain.VerifyChain(pub, back)
		if err != nil || !sameState(st, st2) {
			t.Fatalf("re-verify: %v", err)
		}
		if err := sigchain.CheckPin(st.Tail, back); err != nil {
			t.Fatalf("CheckPin: %v", err)
		}
	})
}
