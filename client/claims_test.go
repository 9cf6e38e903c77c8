package client_test

import (
	"context"
	"errors"
	"testing"

	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/sigchain"
)

// TestClaims: claims are added, replaced, revoked in the own sigchain,
// and a contact sees them in the chain it verifies.
func TestClaims(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	gh := sigchain.Claim{Kind: "github", Value: "alice-gh", Proof: "https://gist.github.com/alice-gh/1"}
	if _, err := alice.AddClaim(ctx, gh); err != nil {
		t.Fatal(err)
	}
	gh.Proof = "https://gist.github.com/alice-gh/2"
	if _, err := alice.AddClaim(ctx, gh); err != nil {
		t.Fatal(err)
	}
	dns := sigchain.Claim{Kind: "dns", Value: "alice.example", Proof: "TXT kez=alice@kez.test"}
	if _, err := alice.AddClaim(ctx, dns); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddClaim(ctx, sigchain.Claim{Kind: "Git Hub", Value: "x", Proof: "y"}); !errors.Is(err, sigchain.ErrMalformed) {
		t.Errorf("a malformed claim: %v, want ErrMalformed", err)
	}
	cls, err := alice.Claims(ctx)
	if err != nil || len(cls) != 2 || cls[0] != gh || cls[1] != dns {
		t.Fatalf("claims = %+v, %v", cls, err)
	}
	ct, _, err := bob.Add(ctx, handle(t, "alice"))
	if err != nil || len(ct.Chain.Claims) != 2 {
		t.Fatalf("bob sees %+v, %v", ct.Chain.Claims, err)
	}
	if _, err := alice.RevokeClaim(ctx, "github", "alice-gh"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.RevokeClaim(ctx, "github", "alice-gh"); !errors.Is(err, client.ErrNoClaim) {
		t.Errorf("revoking twice: %v, want ErrNoClaim", err)
	}
	if ct, err = bob.Refresh(ctx, ct); err != nil || len(ct.Chain.Claims) != 1 || ct.Chain.Claims[0] != dns {
		t.Fatalf("after the revocation bob sees %+v, %v", ct.Chain.Claims, err)
	}
}
