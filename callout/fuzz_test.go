package callout_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/callout"
	"kez.lat/kez/callout/mock"
	"kez.lat/kez/streams"
)

// cached is a registry look-up whose cache holds recs and whose registry
// knows no other key.
func cached(recs ...kez.HandleRecord) *mock.Users {
	return &mock.Users{
		LookupKeyFn: func(k kez.PublicKey) (kez.HandleRecord, bool) {
			for _, r := range recs {
				if r.Primary.Equal(k) {
					return r, true
				}
			}
			return kez.HandleRecord{}, false
		},
		KeyHandleFn: func(context.Context, kez.PublicKey) (kez.Handle, error) {
			return kez.Handle{}, kez.ErrNotFound
		},
	}
}

// request builds an authorization request as nats-server would, for a
// client that signs nonce with signer and presents key.
func request(t testing.TB, server nkeys.KeyPair, key kez.PublicKey, signer *kez.PrivateKey, nonce string) string {
	t.Helper()
	return requestFrom(t, server, key, signer, nonce, "")
}

// requestFrom is request from a client at host ("" for none).
func requestFrom(t testing.TB, server nkeys.KeyPair, key kez.PublicKey, signer *kez.PrivateKey, nonce, host string) string {
	t.Helper()
	userNkey, _ := nkeys.CreateUser()
	upub, _ := userNkey.PublicKey()
	spub, _ := server.PublicKey()
	rc := jwt.NewAuthorizationRequestClaims("ABJHLOVMPA4CI6R5KLNGOB4GSLNIY7IOUPAJC4YFNDLQVIOBYQGUWVLA")
	rc.Audience = "nats-authorization-request"
	rc.UserNkey = upub
	rc.Server.ID = spub
	rc.ConnectOptions.Nkey = key.NKey()
	rc.ClientInformation.Nonce = nonce
	rc.ClientInformation.Host = host
	rc.ConnectOptions.SignedNonce = base64.RawURLEncoding.EncodeToString(signer.Sign(kez.PurposeNATSAuth, []byte(nonce)))
	tok, err := rc.Encode(server)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func FuzzAnswer(f *testing.F) {
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	alice, _ := kez.NewPrivateKey(make([]byte, 32))
	stranger, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	users := cached(kez.HandleRecord{Handle: h, Primary: alice.Public()})
	svc, err := callout.New(callout.Config{Issuer: issuer, Account: "KEZ"}, users, streams.UserPermissions,
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(request(f, server, alice.Public(), alice, "abcdefghijklmno")))
	f.Add([]byte(request(f, server, alice.Public(), stranger, "abcdefghijklmno")))
	f.Add([]byte(request(f, server, stranger.Public(), stranger, "abcdefghijklmno")))
	f.Add([]byte(request(f, server, alice.Public(), alice, "")))
	f.Add([]byte("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, key, err := svc.Answer(data, "")
		if err != nil {
			return
		}
		// Allowed: the key must be registered and the answer a response
		// JWT carrying a user JWT for that handle.
		if _, ok := users.LookupKey(key); !ok {
			t.Fatalf("allowed an unregistered key %s", key)
		}
		ar, derr := jwt.DecodeAuthorizationResponseClaims(string(resp))
		if derr != nil || ar.Jwt == "" || ar.Error != "" {
			t.Fatalf("allowed, but the answer is %q (%v)", resp, derr)
		}
		uc, derr := jwt.DecodeUserClaims(ar.Jwt)
		if derr != nil || uc.Name != "alice@kez.test" || uc.Audience != "KEZ" || uc.Subject != ar.Subject {
			t.Fatalf("user JWT %+v (%v)", uc, derr)
		}
		pub, sub := streams.UserPermissions(alice.Public())
		if len(uc.AllowedConnectionTypes) != 2 || uc.Expires == 0 ||
			!slices.Equal(uc.Sub.Allow, sub) || !slices.Equal(uc.Pub.Allow, pub) {
			t.Fatalf("user JWT limits %+v", uc.UserPermissionLimits)
		}
	})
}

func TestAnswerChecksSignature(t *testing.T) {
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	alice, _ := kez.GenerateKey(nil)
	stranger, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	users := cached(kez.HandleRecord{Handle: h, Primary: alice.Public()})
	svc, _ := callout.New(callout.Config{Issuer: issuer, Account: "KEZ"}, users, streams.UserPermissions,
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	for _, tt := range []struct {
		name    string
		req     string
		allowed bool
	}{
		{"registered, own signature", request(t, server, alice.Public(), alice, "n0nce"), true},
		{"registered key, stranger's signature", request(t, server, alice.Public(), stranger, "n0nce"), false},
		{"unregistered", request(t, server, stranger.Public(), stranger, "n0nce"), false},
		{"no nonce", request(t, server, alice.Public(), alice, ""), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, _, err := svc.Answer([]byte(tt.req), "")
			if (err == nil) != tt.allowed {
				t.Fatalf("err = %v, allowed want %v", err, tt.allowed)
			}
			ar, derr := jwt.DecodeAuthorizationResponseClaims(string(resp))
			if derr != nil {
				t.Fatalf("answer does not decode: %v", derr)
			}
			if tt.allowed != (ar.Jwt != "") || tt.allowed == (ar.Error != "") {
				t.Fatalf("answer jwt=%q error=%q", ar.Jwt, ar.Error)
			}
			issuerPub, _ := issuer.PublicKey()
			if ar.Issuer != issuerPub {
				t.Fatalf("answer issued by %s", ar.Issuer)
			}
		})
	}
}

// TestSealedRequests: the precomputed-key sealing interoperates with nkeys'
// own Seal and Open, which nats-server uses.
func TestSealedRequests(t *testing.T) {
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	serverX, _ := nkeys.CreateCurveKeys()
	serverXPub, _ := serverX.PublicKey()
	ourX, _ := nkeys.CreateCurveKeys()
	ourXPub, _ := ourX.PublicKey()
	alice, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	users := cached(kez.HandleRecord{Handle: h, Primary: alice.Public()})
	svc, err := callout.New(callout.Config{Issuer: issuer, XKey: ourX, Account: "KEZ"}, users, streams.UserPermissions,
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the second and third use the cached shared key
		sealed, _ := serverX.Seal([]byte(request(t, server, alice.Public(), alice, fmt.Sprintf("nonce%d", i))), ourXPub)
		resp, _, err := svc.Answer(sealed, serverXPub)
		if err != nil {
			t.Fatalf("Answer: %v", err)
		}
		opened, err := serverX.Open(resp, ourXPub)
		if err != nil {
			t.Fatalf("server cannot open the answer: %v", err)
		}
		if ar, err := jwt.DecodeAuthorizationResponseClaims(string(opened)); err != nil || ar.Jwt == "" {
			t.Fatalf("answer %v %v", ar, err)
		}
		sealed[len(sealed)-1] ^= 1
		if _, _, err := svc.Answer(sealed, serverXPub); !errors.Is(err, callout.ErrMalformed) {
			t.Fatalf("tampered sealed request: %v", err)
		}
	}
}

// TestCacheMissAsksTheRegistry: a key this replica's cache has not seen yet
// (registered a moment ago through another replica) signs in, named after
// the handle the registry holds.
func TestCacheMissAsksTheRegistry(t *testing.T) {
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	alice, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	// An empty cache; the registry knows alice.
	users := &mock.Users{
		LookupKeyFn: func(kez.PublicKey) (kez.HandleRecord, bool) { return kez.HandleRecord{}, false },
		KeyHandleFn: func(context.Context, kez.PublicKey) (kez.Handle, error) { return h, nil },
	}
	svc, err := callout.New(callout.Config{Issuer: issuer, Account: "USERS"}, users, streams.UserPermissions,
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, key, err := svc.Answer([]byte(request(t, server, alice.Public(), alice, "nonce")), "")
	if err != nil || !key.Equal(alice.Public()) {
		t.Fatalf("Answer: %v", err)
	}
	ar, _ := jwt.DecodeAuthorizationResponseClaims(string(resp))
	uc, err := jwt.DecodeUserClaims(ar.Jwt)
	if err != nil || uc.Name != "alice@kez.test" {
		t.Fatalf("user JWT %+v, %v", uc, err)
	}
}

// TestUserJWTExpiryJitter: user JWTs expire within the last tenth of the
// TTL, spread out.
func TestUserJWTExpiryJitter(t *testing.T) {
	issuer, _ := nkeys.CreateAccount()
	server, _ := nkeys.CreateServer()
	alice, _ := kez.GenerateKey(nil)
	h, _ := kez.ParseHandle("alice", "kez.test")
	now := time.Unix(1_800_000_000, 0)
	svc, _ := callout.New(callout.Config{Issuer: issuer, Account: "USERS", TTL: time.Hour, Now: func() time.Time { return now }},
		cached(kez.HandleRecord{Handle: h, Primary: alice.Public()}), streams.UserPermissions,
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	seen := map[int64]bool{}
	for range 50 {
		resp, _, err := svc.Answer([]byte(request(t, server, alice.Public(), alice, "nonce")), "")
		if err != nil {
			t.Fatal(err)
		}
		ar, _ := jwt.DecodeAuthorizationResponseClaims(string(resp))
		uc, _ := jwt.DecodeUserClaims(ar.Jwt)
		if d := time.Unix(uc.Expires, 0).Sub(now); d < 54*time.Minute || d > time.Hour {
			t.Fatalf("expires after %v, want 54m to 1h", d)
		}
		seen[uc.Expires] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 JWTs expire at only %d distinct times", len(seen))
	}
}
