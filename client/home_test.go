package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
)

// TestHomeRecordRelays: the relays a home server lists reach the client
// in canonical form; entries that are not relay addresses are dropped
// without failing the record.
func TestHomeRecordRelays(t *testing.T) {
	const relayID = "12D3KooWH7ZDwA8qAEzcqJAPtutuD7bEe7EtQp6t7k1c8vkCgK48"
	key, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("bob@kez.test", "")
	ts := time.Now().Unix()
	rec := kez.Record{Handle: h.String(), Primary: key.Public().String(),
		SigchainURL:  kez.SigchainURL("https://sig.kez.test", key.Public()),
		RegisteredAt: ts, RegistrationSig: key.Sign(kez.PurposeRegistration, kez.RegistrationMessage(h, key.Public(), ts)),
		Relays: []string{
			"/ip4/203.0.113.7/udp/4001/quic-v1/p2p/" + relayID,
			"/ip4/203.0.113.7/tcp/4001/ipfs/" + relayID,
			"not a multiaddr",
			"/ip4/203.0.113.7/tcp/4001",
		}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(rec)
	}))
	defer srv.Close()
	got, err := client.Home{BaseURL: srv.URL}.Key(context.Background(), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/ip4/203.0.113.7/udp/4001/quic-v1/p2p/" + relayID, "/ip4/203.0.113.7/tcp/4001/p2p/" + relayID}
	if !reflect.DeepEqual(got.Relays, want) {
		t.Errorf("Relays = %q, want %q", got.Relays, want)
	}

	rec.Relays = nil
	if got, err = (client.Home{BaseURL: srv.URL}).Key(context.Background(), key.Public()); err != nil || got.Relays != nil {
		t.Errorf("record without relays: %q, %v", got.Relays, err)
	}
}
