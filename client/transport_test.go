package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"kez.lat/kez"
	"kez.lat/kez/client"
)

// TestPlaintextRefused: without Insecure, no request leaves over plaintext
// HTTP to a host other than this machine, redirects included; loopback
// needs no TLS.
func TestPlaintextRefused(t *testing.T) {
	var hits int
	remote := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer remote.Close()
	// A loopback server that redirects to a remote plaintext URL.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://192.0.2.1/v1/healthz", http.StatusFound)
	}))
	defer redirect.Close()
	key, err := kez.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := kez.ParseHandle("alice", "kez.test")
	register := func(server string, insecure bool) error {
		p, err := client.OpenProfile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		c := client.New(p, client.Config{Server: server, Domain: "kez.test", Insecure: insecure})
		defer c.Close()
		_, _, err = c.Register(context.Background(), h, key)
		return err
	}
	for _, server := range []string{"http://192.0.2.1:8080", "http://example.org", "HTTP://10.0.0.1", redirect.URL} {
		err := register(server, false)
		if !errors.Is(err, client.ErrInsecure) {
			t.Errorf("register at %s: %v, want ErrInsecure", server, err)
		}
		if len(client.Hints(err)) == 0 {
			t.Errorf("register at %s: no hint", server)
		}
	}
	// Loopback is plaintext and fine: the request reaches the server.
	if err := register(remote.URL, false); errors.Is(err, client.ErrInsecure) || hits == 0 {
		t.Errorf("register at loopback %s: %v, %d requests", remote.URL, err, hits)
	}
	// Insecure lets a remote plaintext URL be tried (and fail otherwise).
	if err := register(redirect.URL, true); errors.Is(err, client.ErrInsecure) {
		t.Errorf("with Insecure: %v", err)
	}
}

func TestCheckNATSURLs(t *testing.T) {
	for _, tt := range []struct {
		urls string
		ok   bool
	}{
		{"nats://127.0.0.1:4222", true},
		{"nats://localhost:4222,nats://[::1]:4223", true},
		{"127.0.0.1:4222", true},
		{"tls://nats.example.org:4222", true},
		{"tls://a.example:4222,tls://b.example:4222", true},
		{"nats://nats.example.org:4222", false},
		{"nats.example.org:4222", false},
		{"tls://a.example:4222,nats://b.example:4222", false},
		{"ws://nats.example.org:80", false},
		{"nats://10.0.0.1:4222", false},
	} {
		err := client.CheckNATSURLs(tt.urls)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, client.ErrInsecure)) {
			t.Errorf("checkNATSURLs(%q) = %v, want ok=%v", tt.urls, err, tt.ok)
		}
	}
}
