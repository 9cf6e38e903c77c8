package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"kez.lat/kez/client"
	"kez.lat/kez/client/clienttest"
	"kez.lat/kez/sigchain"
)

// TestChainRollbackRefusesSend: once a contact's sigchain tail is pinned,
// a server showing fewer events (or other ones) is caught, and sending is
// refused.
func TestChainRollbackRefusesSend(t *testing.T) {
	st := clienttest.Start(t)
	ctx := context.Background()
	alice, _ := newUser(t, st, "alice")
	bob, _ := newUser(t, st, "bob")
	bobKey, err := bob.Key()
	if err != nil {
		t.Fatal(err)
	}
	ct, _, err := alice.Add(ctx, handle(t, "bob"))
	if err != nil || ct.Chain.Tail.Seqno != 2 {
		t.Fatalf("add: %+v, %v", ct.Chain.Tail, err)
	}
	for _, tt := range []struct {
		name   string
		answer func(real []byte) []byte
		want   error
	}{
		{"rollback", func([]byte) []byte { return []byte("[]") }, sigchain.ErrRollback},
		{"rewritten", func(real []byte) []byte {
			// A fork signed by bob's own key: the same first event,
			// another second one.
			var events []sigchain.Event
			if err := json.Unmarshal(real, &events); err != nil || len(events) < 1 {
				t.Errorf("chain %s: %v", real, err)
				return real
			}
			fork, err := sigchain.Next(bobKey, &events[0], sigchain.TypeAddClaim,
				sigchain.Claim{Kind: "dns", Value: "fork.example", Proof: "TXT"}, time.Now())
			if err != nil {
				t.Error(err)
			}
			b, _ := json.Marshal([]sigchain.Event{events[0], fork})
			return b
		}, sigchain.ErrRewritten},
		{"garbage", func(real []byte) []byte {
			return bytes.Replace(real, []byte(`"payload":"`), []byte(`"payload":"x`), 1)
		}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sig := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				resp, err := http.Get(st.Sig.URL() + r.URL.Path) // the whole chain
				if err != nil {
					t.Error(err)
					return
				}
				real, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				w.Header().Set("Content-Type", "application/json")
				w.Write(tt.answer(real))
			}))
			defer sig.Close()
			home := rewritingHome(t, st.URL(), st.Sig.URL(), sig.URL)
			c := client.New(alice.Profile(), client.Config{Server: home.URL})
			defer c.Close()
			_, err := c.SendText(ctx, handle(t, "bob"), "hi")
			if err == nil {
				t.Fatal("sent despite a changed chain")
			}
			if tt.want != nil && (!errors.Is(err, client.ErrChainChanged) || !errors.Is(err, tt.want)) {
				t.Fatalf("send: %v", err)
			}
		})
	}
	// The pin is kept: the real server still passes.
	if _, err := alice.SendText(ctx, handle(t, "bob"), "hi"); err != nil {
		t.Fatal(err)
	}
}

// rewritingHome proxies the home server, pointing records' sigchain_url
// at another sig-server (the registration signature does not cover it).
func rewritingHome(t *testing.T, homeURL, from, to string) *httptest.Server {
	t.Helper()
	target, _ := url.Parse(homeURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		b = []byte(strings.ReplaceAll(string(b), from, to))
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Del("Content-Length")
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	return srv
}
