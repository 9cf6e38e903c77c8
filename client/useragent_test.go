package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"kez.lat/kez/client"
	"kez.lat/kez/mnemonic"
)

// TestUserAgent: every request of the client names its build.
func TestUserAgent(t *testing.T) {
	var mu sync.Mutex
	var agents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		agents = append(agents, r.UserAgent())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"no such key","code":"not_found"}`))
	}))
	defer srv.Close()
	p, err := client.OpenProfile(filepath.Join(t.TempDir(), "p"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(p, client.Config{Server: srv.URL})
	defer c.Close()
	words, _ := mnemonic.FromSeed(make([]byte, 32))
	if _, _, err := c.Recover(context.Background(), strings.Join(words, " ")); err == nil {
		t.Fatal("recover of an unregistered key succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	// go test binaries carry no VCS information: "(devel)", "unknown".
	want := regexp.MustCompile(`^kez-chat/\S+ \(commit \S+; go\S+; \w+/\w+\)$`)
	if len(agents) == 0 {
		t.Fatal("no request reached the server")
	}
	for _, ua := range agents {
		if !want.MatchString(ua) {
			t.Errorf("User-Agent %q, want %v", ua, want)
		}
	}
}
