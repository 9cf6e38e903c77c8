package sigchain_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/keztest"
	"kez.lat/kez/sigchain"
)

func TestNextParseRoundTrip(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	pub := key.Public()
	chain := build(t, key,
		step{sigchain.TypeAddEndpoint, sigchain.NATSEndpoint{URL: "nats://nats.kez.lat:4222", Inbox: sigchain.Inbox(pub)}, 0},
		step{sigchain.TypeAddClaim, sigchain.Claim{Kind: "nostr", Value: "npub1xyz", Proof: "note1abc\nsecond line"}, time.Second},
		step{"future_thing", nil, 2 * time.Second},
	)
	for i, e := range chain {
		if e.Seqno() != uint64(i+1) || !e.Chain().Equal(pub) {
			t.Errorf("event %d: seqno %d chain %v", i+1, e.Seqno(), e.Chain())
		}
		if i == 0 && e.Prev() != "" || i > 0 && e.Prev() != chain[i-1].Hash() {
			t.Errorf("event %d: prev %q", i+1, e.Prev())
		}
		if e.Hash() != hashOf(string(e.Payload())) {
			t.Errorf("event %d: hash is not sha256 of the payload", i+1)
		}
		if err := e.Verify(pub); err != nil {
			t.Errorf("event %d: Verify: %v", i+1, err)
		}
		got, err := sigchain.ParseEvent(wireOf(t, e))
		if err != nil {
			t.Fatalf("event %d: ParseEvent: %v", i+1, err)
		}
		if !bytes.Equal(got.Payload(), e.Payload()) || !bytes.Equal(got.Signature(), e.Signature()) ||
			got.Hash() != e.Hash() || got.Type() != e.Type() || got.Ctime() != e.Ctime() ||
			!bytes.Equal(got.Body(), e.Body()) {
			t.Errorf("event %d: parsed event differs from the built one", i+1)
		}
	}
	if got := string(chain[2].Body()); got != "{}" {
		t.Errorf("nil body = %s, want {}", got)
	}
	if got, want := chain[1].Ctime(), t0.Unix()+1; got != want {
		t.Errorf("ctime = %d, want %d", got, want)
	}

	// A server's list of events, compact or indented, decodes and verifies.
	for _, indent := range []bool{false, true} {
		var b []byte
		var err error
		if indent {
			b, err = json.MarshalIndent(chain, "", "    ")
		} else {
			b, err = json.Marshal(chain)
		}
		if err != nil {
			t.Fatal(err)
		}
		var back []sigchain.Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal (indent %v): %v", indent, err)
		}
		if _, err := sigchain.VerifyChain(pub, back); err != nil {
			t.Errorf("VerifyChain after JSON round trip (indent %v): %v", indent, err)
		}
	}
}

func TestAccessorsReturnCopies(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	e := build(t, key, step{"note", map[string]string{"text": "hi"}, 0})[0]
	e.Payload()[0] = 'X'
	e.Signature()[0] ^= 1
	e.Body()[0] = 'X'
	if err := e.Verify(key.Public()); err != nil {
		t.Errorf("Verify after mutating copies: %v", err)
	}
}

func TestNextErrors(t *testing.T) {
	key, other := keztest.SeedKey(t, 0), keztest.SeedKey(t, 0x20)
	first := build(t, key, step{"note", nil, 0})[0]
	tests := []struct {
		name string
		key  *kez.PrivateKey
		prev *sigchain.Event
		typ  string
		body any
		want error
	}{
		{"prev of another chain", other, &first, "note", nil, sigchain.ErrWrongChain},
		{"zero prev", key, &sigchain.Event{}, "note", nil, sigchain.ErrMalformed},
		{"bad type", key, nil, "Add Endpoint", nil, sigchain.ErrMalformed},
		{"empty type", key, nil, "", nil, sigchain.ErrMalformed},
		{"body not an object", key, nil, "note", []int{1}, sigchain.ErrMalformed},
		{"body unmarshallable", key, nil, "note", map[string]any{"c": make(chan int)}, sigchain.ErrMalformed},
		{"bad known body", key, nil, sigchain.TypeAddEndpoint, sigchain.NATSEndpoint{URL: "http://x.example", Inbox: sigchain.Inbox(key.Public())}, sigchain.ErrMalformed},
		{"inbox of another key", key, nil, sigchain.TypeAddEndpoint, sigchain.NATSEndpoint{URL: "nats://x.example", Inbox: sigchain.Inbox(other.Public())}, sigchain.ErrMalformed},
		{"too large", key, nil, "note", map[string]string{"text": strings.Repeat("x", sigchain.MaxEventSize)}, sigchain.ErrTooLarge},
		{"no key", nil, nil, "note", nil, kez.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sigchain.Next(tt.key, tt.prev, tt.typ, tt.body, t0)
			wantErr(t, "Next", err, tt.want)
		})
	}
}

func TestNextClampsCtime(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	first := build(t, key, step{"note", nil, time.Hour})[0]
	// The clock went back an hour: the next event keeps the previous ctime.
	next, err := sigchain.Next(key, &first, "note", nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if next.Ctime() != first.Ctime() {
		t.Errorf("ctime = %d, want %d", next.Ctime(), first.Ctime())
	}
	if err := sigchain.VerifyAppend(key.Public(), &first, next); err != nil {
		t.Errorf("VerifyAppend: %v", err)
	}
	if _, err := sigchain.Next(key, nil, "note", nil, time.Unix(-1, 0)); !errors.Is(err, sigchain.ErrMalformed) {
		t.Errorf("Next before 1970 = %v, want ErrMalformed", err)
	}
}

// payloadFor returns the payload text of a seqno-1 event of key.
func payloadFor(key *kez.PrivateKey, typ, body string) string {
	return fmt.Sprintf(`{"v":1,"chain":%q,"seqno":1,"prev":null,"ctime":1767225600,"type":%q,"body":%s}`,
		key.Public().String(), typ, body)
}

func TestParseEventRejects(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	pub := key.Public()
	good := payloadFor(key, "note", `{}`)
	goodWire := signWire(key, good)
	sig64 := base64.StdEncoding.EncodeToString(key.Sign(kez.PurposeSigchain, []byte("x")))
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	// replace makes a signed variant of the good payload.
	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in payload", old)
		}
		return signWire(key, strings.Replace(good, old, new, 1))
	}
	unpadded := good // a payload whose base64 needs padding
	for len(unpadded)%3 != 2 {
		unpadded += " "
	}
	body := func(typ, body string) string { return signWire(key, payloadFor(key, typ, body)) }
	inbox := sigchain.Inbox(pub)
	peer := peerID(pub)

	tests := []struct {
		name string
		wire string
		want error
	}{
		{"valid", goodWire, nil},
		{"oversized", `{"payload":"` + strings.Repeat("A", sigchain.MaxEventSize) + `","sig":""}`, sigchain.ErrTooLarge},
		{"empty", ``, sigchain.ErrMalformed},
		{"not JSON", `payload`, sigchain.ErrMalformed},
		{"truncated", goodWire[:len(goodWire)-1], sigchain.ErrMalformed},
		{"trailing data", goodWire + `{}`, sigchain.ErrMalformed},
		{"array", `[` + goodWire + `]`, sigchain.ErrMalformed},
		{"null", `null`, sigchain.ErrMalformed},
		{"unknown top-level field", strings.Replace(goodWire, `{"payload"`, `{"v":1,"payload"`, 1), sigchain.ErrMalformed},
		{"top-level field in other case", strings.Replace(goodWire, `"sig"`, `"Sig"`, 1), sigchain.ErrMalformed},
		{"duplicate top-level field", strings.Replace(goodWire, `{"payload"`, `{"sig":"`+sig64+`","payload"`, 1), sigchain.ErrMalformed},
		{"missing sig", `{"payload":"` + b64(good) + `"}`, sigchain.ErrMalformed},
		{"missing payload", `{"sig":"` + sig64 + `"}`, sigchain.ErrMalformed},
		{"sig not a string", `{"payload":"` + b64(good) + `","sig":null}`, sigchain.ErrMalformed},
		{"short sig", `{"payload":"` + b64(good) + `","sig":"` + b64("short") + `"}`, sigchain.ErrMalformed},
		{"unpadded base64", `{"payload":"` + base64.RawStdEncoding.EncodeToString([]byte(unpadded)) + `","sig":"` + sig64 + `"}`, sigchain.ErrMalformed},
		{"base64 with newline", `{"payload":"` + b64(good)[:8] + `\n` + b64(good)[8:] + `","sig":"` + sig64 + `"}`, sigchain.ErrMalformed},
		{"base64 with non-zero padding bits", `{"payload":"` + b64(unpadded)[:len(b64(unpadded))-2] + `B=","sig":"` + sig64 + `"}`, sigchain.ErrMalformed},
		{"empty payload", `{"payload":"","sig":"` + sig64 + `"}`, sigchain.ErrMalformed},
		{"payload not JSON", signWire(key, "hello"), sigchain.ErrMalformed},
		{"payload not an object", signWire(key, `[1]`), sigchain.ErrMalformed},
		{"payload trailing data", signWire(key, good+` {}`), sigchain.ErrMalformed},
		{"payload invalid UTF-8", signWire(key, payloadFor(key, "note", "{\"a\":\"\xc3\"}")), sigchain.ErrMalformed},
		{"unknown payload field", replace(`"v":1,`, `"v":1,"merkle_root":null,`), sigchain.ErrMalformed},
		{"payload field in other case", replace(`"type"`, `"Type"`), sigchain.ErrMalformed},
		{"duplicate payload field", replace(`"type":"note"`, `"type":"note","type":"note"`), sigchain.ErrMalformed},
		{"duplicate escaped field", replace(`"type":"note"`, `"type":"note","\u0074ype":"note"`), sigchain.ErrMalformed},
		{"missing v", replace(`"v":1,`, ``), sigchain.ErrMalformed},
		{"missing prev", replace(`"prev":null,`, ``), sigchain.ErrMalformed},
		{"missing body", replace(`,"body":{}`, ``), sigchain.ErrMalformed},
		{"v 2", replace(`"v":1`, `"v":2`), sigchain.ErrMalformed},
		{"v as string", replace(`"v":1`, `"v":"1"`), sigchain.ErrMalformed},
		{"v as float", replace(`"v":1`, `"v":1.0`), sigchain.ErrMalformed},
		{"v with exponent", replace(`"v":1`, `"v":1e0`), sigchain.ErrMalformed},
		{"seqno 0", replace(`"seqno":1`, `"seqno":0`), sigchain.ErrMalformed},
		{"seqno leading zero", replace(`"seqno":1`, `"seqno":01`), sigchain.ErrMalformed},
		{"seqno negative", replace(`"seqno":1`, `"seqno":-1`), sigchain.ErrMalformed},
		{"seqno beyond 2^53", replace(`"seqno":1`, `"seqno":9007199254740992`), sigchain.ErrMalformed},
		{"ctime negative", replace(`"ctime":1767225600`, `"ctime":-1`), sigchain.ErrMalformed},
		{"ctime as string", replace(`"ctime":1767225600`, `"ctime":"1767225600"`), sigchain.ErrMalformed},
		{"prev at seqno 1", replace(`"prev":null`, `"prev":"`+strings.Repeat("a", 64)+`"`), sigchain.ErrMalformed},
		{"null prev at seqno 2", replace(`"seqno":1`, `"seqno":2`), sigchain.ErrMalformed},
		{"short prev", signWire(key, strings.Replace(strings.Replace(good, `"seqno":1`, `"seqno":2`, 1), `null`, `"abcd"`, 1)), sigchain.ErrMalformed},
		{"chain not a key", replace(pub.String(), "ed25519:00"), sigchain.ErrMalformed},
		{"chain in upper case", replace(pub.String(), strings.ToUpper(pub.String())), sigchain.ErrMalformed},
		{"chain small-order key", replace(pub.Hex(), strings.Repeat("0", 64)), kez.ErrInvalidKey},
		{"type upper case", replace(`"type":"note"`, `"type":"Note"`), sigchain.ErrMalformed},
		{"type with dot", replace(`"type":"note"`, `"type":"kez.note"`), sigchain.ErrMalformed},
		{"type too long", replace(`"type":"note"`, `"type":"`+strings.Repeat("n", 33)+`"`), sigchain.ErrMalformed},
		{"body null", replace(`"body":{}`, `"body":null`), sigchain.ErrMalformed},
		{"body string", replace(`"body":{}`, `"body":"x"`), sigchain.ErrMalformed},
		{"nested too deep", replace(`"body":{}`, `"body":{"a":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`}`), sigchain.ErrMalformed},

		{"nats endpoint", body("add_endpoint", `{"protocol":"nats","url":"nats://nats.kez.lat:4222","inbox":"`+inbox+`"}`), nil},
		{"nats endpoint wss with path", body("add_endpoint", `{"protocol":"nats","url":"wss://kez.lat/nats","inbox":"`+inbox+`"}`), nil},
		{"nats missing inbox", body("add_endpoint", `{"protocol":"nats","url":"nats://nats.kez.lat:4222"}`), sigchain.ErrMalformed},
		{"nats inbox wildcard", body("add_endpoint", `{"protocol":"nats","url":"nats://a.example","inbox":"kez.inbox.*"}`), sigchain.ErrMalformed},
		{"nats missing url", body("add_endpoint", `{"protocol":"nats","inbox":"`+inbox+`"}`), sigchain.ErrMalformed},
		{"nats http url", body("add_endpoint", `{"protocol":"nats","url":"http://a.example","inbox":"`+inbox+`"}`), sigchain.ErrMalformed},
		{"nats url without host", body("add_endpoint", `{"protocol":"nats","url":"nats://:4222","inbox":"`+inbox+`"}`), sigchain.ErrMalformed},
		{"nats url with user", body("add_endpoint", `{"protocol":"nats","url":"nats://token@a.example","inbox":"`+inbox+`"}`), sigchain.ErrMalformed},
		{"nats url with query", body("add_endpoint", `{"protocol":"nats","url":"nats://a.example?x=1","inbox":"`+inbox+`"}`), sigchain.ErrMalformed},
		{"nats url with space", body("add_endpoint", `{"protocol":"nats","url":"nats://a.example/ x","inbox":"`+inbox+`"}`), sigchain.ErrMalformed},
		{"nats url list", body("add_endpoint", `{"protocol":"nats","url":"nats://a.example,nats://b.example","inbox":"`+inbox+`"}`), sigchain.ErrMalformed},
		{"nats unknown field", body("add_endpoint", `{"protocol":"nats","url":"nats://a.example","inbox":"`+inbox+`","tls":true}`), sigchain.ErrMalformed},
		{"p2p endpoint", body("add_endpoint", `{"protocol":"p2p","peer_id":"`+peer+`","addrs":["/ip4/1.2.3.4/tcp/1"]}`), nil},
		{"p2p endpoint without addrs", body("add_endpoint", `{"protocol":"p2p","peer_id":"`+peer+`"}`), nil},
		{"p2p sha256 peer id", body("add_endpoint", `{"protocol":"p2p","peer_id":"QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"}`), nil},
		{"p2p bad peer id", body("add_endpoint", `{"protocol":"p2p","peer_id":"12D3KooW0OIl"}`), sigchain.ErrMalformed},
		{"p2p peer id bad multihash", body("add_endpoint", `{"protocol":"p2p","peer_id":"`+base58([]byte{0x12, 3, 1, 2, 3})+`"}`), sigchain.ErrMalformed},
		{"p2p addrs null", body("add_endpoint", `{"protocol":"p2p","peer_id":"`+peer+`","addrs":null}`), sigchain.ErrMalformed},
		{"p2p addr not multiaddr", body("add_endpoint", `{"protocol":"p2p","peer_id":"`+peer+`","addrs":["1.2.3.4:1"]}`), sigchain.ErrMalformed},
		{"p2p addr not string", body("add_endpoint", `{"protocol":"p2p","peer_id":"`+peer+`","addrs":[1]}`), sigchain.ErrMalformed},
		{"p2p too many addrs", body("add_endpoint", `{"protocol":"p2p","peer_id":"`+peer+`","addrs":[`+strings.Repeat(`"/a",`, 32)+`"/a"]}`), sigchain.ErrMalformed},
		{"unknown protocol kept", body("add_endpoint", `{"protocol":"iroh","node_id":"abc"}`), nil},
		{"protocol missing", body("add_endpoint", `{"url":"nats://a.example"}`), sigchain.ErrMalformed},
		{"protocol not a name", body("add_endpoint", `{"protocol":"NATS!"}`), sigchain.ErrMalformed},
		{"remove nats by url", body("remove_endpoint", `{"protocol":"nats","url":"nats://a.example"}`), nil},
		{"remove nats with inbox of another key", body("remove_endpoint", `{"protocol":"nats","url":"nats://a.example","inbox":"kez.inbox.x"}`), sigchain.ErrMalformed},
		{"remove p2p by peer id", body("remove_endpoint", `{"protocol":"p2p","peer_id":"`+peer+`"}`), nil},
		{"remove p2p without peer id", body("remove_endpoint", `{"protocol":"p2p"}`), sigchain.ErrMalformed},
		{"claim", body("add_claim", `{"kind":"github","value":"alice","proof":"https://gist.github.com/alice/1"}`), nil},
		{"claim empty value", body("add_claim", `{"kind":"github","value":"","proof":"p"}`), sigchain.ErrMalformed},
		{"claim value with spaces around", body("add_claim", `{"kind":"github","value":" alice","proof":"p"}`), sigchain.ErrMalformed},
		{"claim value with newline", body("add_claim", `{"kind":"github","value":"al\nice","proof":"p"}`), sigchain.ErrMalformed},
		{"claim value with bidi override", body("add_claim", `{"kind":"github","value":"al\u202eice","proof":"p"}`), sigchain.ErrMalformed},
		{"claim value lone surrogate", body("add_claim", `{"kind":"github","value":"al\ud800ice","proof":"p"}`), sigchain.ErrMalformed},
		{"claim value too long", body("add_claim", `{"kind":"github","value":"`+strings.Repeat("a", 257)+`","proof":"p"}`), sigchain.ErrMalformed},
		{"claim kind not a name", body("add_claim", `{"kind":"Git Hub","value":"alice","proof":"p"}`), sigchain.ErrMalformed},
		{"claim proof with escape", body("add_claim", `{"kind":"github","value":"alice","proof":"\u001b[2J"}`), sigchain.ErrMalformed},
		{"claim unknown field", body("add_claim", `{"kind":"github","value":"alice","proof":"p","at":1}`), sigchain.ErrMalformed},
		{"revoke claim", body("revoke_claim", `{"kind":"github","value":"alice"}`), nil},
		{"revoke claim missing value", body("revoke_claim", `{"kind":"github"}`), sigchain.ErrMalformed},
		{"shared files", body("set_shared_files", `{"manifest":"`+strings.Repeat("0a", 32)+`","size":0}`), nil},
		{"shared files upper-case hash", body("set_shared_files", `{"manifest":"`+strings.Repeat("0A", 32)+`","size":1}`), sigchain.ErrMalformed},
		{"shared files short hash", body("set_shared_files", `{"manifest":"abcd","size":1}`), sigchain.ErrMalformed},
		{"shared files missing size", body("set_shared_files", `{"manifest":"`+strings.Repeat("0a", 32)+`"}`), sigchain.ErrMalformed},
		{"shared files size float", body("set_shared_files", `{"manifest":"`+strings.Repeat("0a", 32)+`","size":1.5}`), sigchain.ErrMalformed},
		{"moved_to reserved, kept", body("moved_to", `{"anything":["goes"]}`), nil},
		{"unknown type kept", body("x_future", `{"deep":{"er":[1,2.5,"x",null,true]}}`), nil},
		{"unknown type with duplicate field", body("x_future", `{"a":1,"a":2}`), sigchain.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := sigchain.ParseEvent([]byte(tt.wire))
			wantErr(t, "ParseEvent", err, tt.want)
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	key, other := keztest.SeedKey(t, 0), keztest.SeedKey(t, 0x20)
	payload := payloadFor(key, "note", `{}`)
	good := mustParse(t, signWire(key, payload))

	wantErr(t, "Verify(good)", good.Verify(key.Public()), nil)

	flipped := good.Signature()
	flipped[63] ^= 0x80
	bad := mustParse(t, `{"payload":"`+base64.StdEncoding.EncodeToString([]byte(payload))+`","sig":"`+base64.StdEncoding.EncodeToString(flipped)+`"}`)
	wantErr(t, "Verify(flipped signature)", bad.Verify(key.Public()), sigchain.ErrBadSignature)

	byOther := mustParse(t, signWire(other, payload))
	wantErr(t, "Verify(signed by another key)", byOther.Verify(key.Public()), sigchain.ErrBadSignature)

	// Without the context string the signature is not an event signature.
	noContext := ed25519.Sign(ed25519.NewKeyFromSeed(key.Seed()), []byte(payload))
	raw := mustParse(t, `{"payload":"`+base64.StdEncoding.EncodeToString([]byte(payload))+`","sig":"`+base64.StdEncoding.EncodeToString(noContext)+`"}`)
	wantErr(t, "Verify(no context)", raw.Verify(key.Public()), sigchain.ErrBadSignature)

	wantErr(t, "Verify(other chain)", good.Verify(other.Public()), sigchain.ErrWrongChain)
	wantErr(t, "Verify(zero event)", sigchain.Event{}.Verify(key.Public()), sigchain.ErrMalformed)
	if _, err := json.Marshal(sigchain.Event{}); err == nil {
		t.Error("Marshal(zero event) succeeded")
	}
}

func TestErrorsMatchRootSentinels(t *testing.T) {
	for _, tt := range []struct{ err, root error }{
		{sigchain.ErrMalformed, kez.ErrInvalidRequest},
		{sigchain.ErrWrongChain, kez.ErrInvalidRequest},
		{sigchain.ErrBadCtime, kez.ErrInvalidRequest},
		{sigchain.ErrTooLarge, kez.ErrTooLarge},
		{sigchain.ErrBadSignature, kez.ErrBadSignature},
	} {
		if !errors.Is(tt.err, tt.root) {
			t.Errorf("errors.Is(%v, %v) = false", tt.err, tt.root)
		}
	}
	for _, err := range []error{sigchain.ErrWrongSeqno, sigchain.ErrWrongPrev, sigchain.ErrRollback, sigchain.ErrRewritten} {
		if errors.Is(err, kez.ErrInvalidRequest) || errors.Is(err, sigchain.ErrMalformed) {
			t.Errorf("%v matches another sentinel", err)
		}
	}
}

func TestErrorsDoNotEchoInput(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	const secret = "hunter2-very-secret-token"
	for _, body := range []string{
		`{"protocol":"nats","url":"nats://u:` + secret + `@a.example","inbox":"x"}`,
		`{"protocol":"nats","url":"nats://a.example","inbox":"` + secret + `"}`,
		`{"protocol":"p2p","peer_id":"` + secret + `"}`,
		`{"protocol":"` + secret + `!"}`,
	} {
		_, err := sigchain.ParseEvent([]byte(signWire(key, payloadFor(key, "add_endpoint", body))))
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("ParseEvent error %v echoes the input", err)
		}
	}
	_, err := sigchain.ParseEvent([]byte(signWire(key, strings.Replace(payloadFor(key, "note", "{}"), pubString(key), "ed25519:"+secret, 1))))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("ParseEvent error %v echoes the chain field", err)
	}
}

func pubString(k *kez.PrivateKey) string { return k.Public().String() }

func TestCheckCtime(t *testing.T) {
	key := keztest.SeedKey(t, 0)
	e := build(t, key, step{"note", nil, 10 * time.Minute})[0]
	wantErr(t, "CheckCtime(within skew)", sigchain.CheckCtime(e, t0.Add(6*time.Minute), 5*time.Minute), nil)
	wantErr(t, "CheckCtime(past)", sigchain.CheckCtime(e, t0.Add(48*time.Hour), 5*time.Minute), nil)
	wantErr(t, "CheckCtime(future)", sigchain.CheckCtime(e, t0, 5*time.Minute), sigchain.ErrBadCtime)
}

func TestEndpointJSON(t *testing.T) {
	inbox := sigchain.Inbox(keztest.SeedKey(t, 0).Public())
	n := sigchain.NATSEndpoint{URL: "nats://a.example:4222", Inbox: inbox}
	b, err := json.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"protocol":"nats","url":"nats://a.example:4222","inbox":"` + inbox + `"}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var n2 sigchain.NATSEndpoint
	if err := json.Unmarshal(b, &n2); err != nil || n2 != n {
		t.Errorf("Unmarshal = %+v, %v", n2, err)
	}
	if err := json.Unmarshal([]byte(`{"protocol":"p2p","url":"nats://a.example"}`), &n2); !errors.Is(err, sigchain.ErrMalformed) {
		t.Error("Unmarshal of a p2p body into NATSEndpoint succeeded")
	}
	p := sigchain.P2PEndpoint{PeerID: peerID(keztest.SeedKey(t, 0).Public())}
	if b, err = json.Marshal(p); err != nil || strings.Contains(string(b), "addrs") {
		t.Errorf("Marshal(no addrs) = %s, %v", b, err)
	}
}
