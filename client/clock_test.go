package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
)

// TestRegisterClockSkew: a registration refused as stale says how far and
// which way this computer's clock is off (from the server's Date header)
// and how to fix it.
func TestRegisterClockSkew(t *testing.T) {
	st := clienttest.Start(t)
	for _, tt := range []struct {
		skew time.Duration
		want string
	}{
		{7 * time.Minute, `clock is 7m[01]s ahead of the home server's`},
		{-2 * time.Hour, `clock is 1h59m5[89]s behind the home server's|clock is 2h0m[01]s behind the home server's`},
	} {
		p, err := client.OpenProfile(filepath.Join(t.TempDir(), "profile"))
		if err != nil {
			t.Fatal(err)
		}
		c := client.New(p, client.Config{Server: st.URL(), Domain: clienttest.Domain,
			Now: func() time.Time { return time.Now().Add(tt.skew) }})
		defer c.Close()
		key, _, err := c.NewBackup()
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = c.Register(context.Background(), handle(t, "skewed"), key)
		if !errors.Is(err, kez.ErrStaleTimestamp) {
			t.Fatalf("skew %v: %v, want ErrStaleTimestamp", tt.skew, err)
		}
		if !regexp.MustCompile(tt.want).MatchString(err.Error()) {
			t.Errorf("skew %v: %q does not match %q", tt.skew, err, tt.want)
		}
		hints := strings.Join(client.Hints(err), "\n")
		for _, want := range []string{"the server's time was", "timedatectl set-ntp true"} {
			if !strings.Contains(hints, want) {
				t.Errorf("skew %v: hints %q lack %q", tt.skew, hints, want)
			}
		}
	}
}

// TestRegisterStoreUnavailable: a 503 store_unavailable says the home
// server cannot store and nothing was stored, with the server's
// Retry-After, and is not mistaken for an unreachable server.
func TestRegisterStoreUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"cannot store right now; nothing was stored","code":"store_unavailable"}`))
	}))
	defer srv.Close()
	p, err := client.OpenProfile(filepath.Join(t.TempDir(), "profile"))
	if err != nil {
		t.Fatal(err)
	}
	c := client.New(p, client.Config{Server: srv.URL, Domain: clienttest.Domain})
	defer c.Close()
	key, _, err := c.NewBackup()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Register(context.Background(), handle(t, "alice"), key)
	if !errors.Is(err, kez.ErrStoreUnavailable) {
		t.Fatalf("register: %v, want ErrStoreUnavailable", err)
	}
	if !strings.Contains(err.Error(), "the home server cannot store right now; nothing was stored") {
		t.Errorf("error %q", err)
	}
	hints := strings.Join(client.Hints(err), "\n")
	if !strings.Contains(hints, "again in 5s") || strings.Contains(hints, "is the home server running") {
		t.Errorf("hints %q", hints)
	}
}
