package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"kez.lat/kez"
	"kez.lat/kez/client"
	"kez.lat/kez/keztest"
	"kez.lat/kez/sigchain"
)

// TestChainAnswerBounded: a hostile sig-server cannot make the client
// hold more than a chain can sensibly be before anything verifies: a
// page of more events than a page holds is refused, and so are pages
// that follow each other properly but add up past the client's bound
// (the server paging events of the largest size for ever).
func TestChainAnswerBounded(t *testing.T) {
	k := keztest.NewKey(t)
	t0 := time.Unix(1_800_000_000, 0)
	big := strings.Repeat("x", 4096) // the largest proof
	var chain []sigchain.Event
	for i := range sigchain.MaxPage + 1 {
		var prev *sigchain.Event
		if i > 0 {
			prev = &chain[i-1]
		}
		e, err := sigchain.Next(k, prev, sigchain.TypeAddClaim, sigchain.Claim{Kind: "dns", Value: "x.example", Proof: big}, t0)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, e)
	}
	for _, tc := range []struct {
		name string
		page func(since uint64) ([]sigchain.Event, uint64) // events, next since
		want error
	}{
		{"one page over MaxPage events", func(uint64) ([]sigchain.Event, uint64) { return chain, 0 }, sigchain.ErrMalformed},
		{"pages without end", func(since uint64) ([]sigchain.Event, uint64) {
			page := chain[:sigchain.MaxPage]
			return page, max(since, 1) + uint64(len(page))
		}, sigchain.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pages := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				pages++
				since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
				events, next := tc.page(since)
				if next != 0 {
					w.Header().Set(kez.NextPageHeader, strconv.FormatUint(next, 10))
				}
				json.NewEncoder(w).Encode(events)
			}))
			defer srv.Close()
			c := &client.Sigchains{BaseURL: srv.URL}
			_, err := c.Events(context.Background(), k.Public(), 0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Events = %v, want %v", err, tc.want)
			}
			if pages > 40 {
				t.Errorf("%d pages read before giving up", pages)
			}
		})
	}
}
