package chatcmd

import (
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/sigchain"
)

// TestServerOf: the default home server applies until the profile holds
// an account, also to a profile holding only the key of a registration
// that stopped before the account was saved (running register again
// finishes it there); the flag always wins.
func TestServerOf(t *testing.T) {
	p, err := client.OpenProfile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p.KeyStore = client.KeyStoreFile
	const def = "https://" + kez.DefaultDomain
	if got := serverOf(p, ""); got != def {
		t.Errorf("empty profile: serverOf = %q, want %q", got, def)
	}
	k, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.SaveKey(k); err != nil {
		t.Fatal(err)
	}
	if got := serverOf(p, ""); got != def {
		t.Errorf("key, no account: serverOf = %q, want %q", got, def)
	}
	if got := serverOf(p, "http://127.0.0.1:8080"); got != "http://127.0.0.1:8080" {
		t.Errorf("flag: serverOf = %q", got)
	}
	if err := p.SaveAccount(client.Account{Primary: k.Public(), Server: "https://home.example", Chain: sigchain.State{Key: k.Public()}}); err != nil {
		t.Fatal(err)
	}
	if got := serverOf(p, ""); got != "" {
		t.Errorf("account: serverOf = %q, want the account's (\"\")", got)
	}
}
