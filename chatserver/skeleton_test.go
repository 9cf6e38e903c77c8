package chatserver_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"kez.lat/kez"
	"kez.lat/kez/chatserver"
	"kez.lat/kez/keztest"
	"kez.lat/kez/nats/natstest"
	"kez.lat/kez/streams"
	"kez.lat/kez/web/webtest"
)

// TestLookAlikeVWRefused: "avvv" reads like "avw" and is refused once
// "avw" is registered, and so are the other spellings of the same
// reading. The fold before the fix gave "avvv" and "awv" skeletons of
// their own.
func TestLookAlikeVWRefused(t *testing.T) {
	ns := natstest.Start(t)
	srv := startServer(t, testConfig(ns))
	awaitSkeletons(t, srv)
	if a := register(t, srv.URL(), regBody(t, keztest.NewKey(t), "avw")); a.Status != http.StatusCreated {
		t.Fatalf("avw: %d %s", a.Status, a.Body)
	}
	for _, local := range []string{"avvv", "awv", "av_vv", "avv_v"} {
		if a := register(t, srv.URL(), regBody(t, keztest.NewKey(t), local)); a.Status != http.StatusConflict {
			t.Errorf("%s after avw: %d %s, want 409", local, a.Status, a.Body)
		}
	}
}

// appendLegacy writes a registration of local as a release before the
// look-alike fold fix did: its claims (the skeleton's by
// kez.LegacySkeleton) and its event, each with the expected last subject
// sequence 0.
func appendLegacy(t *testing.T, js jetstream.JetStream, local string) {
	t.Helper()
	k := keztest.NewKey(t)
	h, err := kez.ParseHandle(local, domain)
	if err != nil {
		t.Fatal(err)
	}
	req := kez.NewRegistrationRequest(k, h, time.Now())
	ev, _ := json.Marshal(kez.RegistryEvent{Type: kez.EventHandleRegistered, Handle: h, Primary: k.Public(),
		RegisteredAt: req.Timestamp, RegistrationSig: req.RegistrationSig})
	claim, _ := json.Marshal(map[string]kez.Handle{"handle": h})
	for _, m := range []struct {
		subject string
		data    []byte
	}{
		{"kez.registry.key." + k.Public().Hex(), claim},
		{"kez.registry.skeleton." + kez.LegacySkeleton(local), claim},
		{"kez.registry.handle." + local, ev},
	} {
		msg := nats.NewMsg(m.subject)
		msg.Data = m.data
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatalf("legacy registration of %s: %s: %v", local, m.subject, err)
		}
	}
}

// awaitSkeletons waits for srv's skeleton migration.
func awaitSkeletons(t *testing.T, srv *chatserver.Server) {
	t.Helper()
	for start := time.Now(); srv.Registry.SkeletonsReady(context.Background()) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			t.Fatal("skeleton migration not done within 20 s")
		}
	}
}

// skeletonClaims returns the claims stored on the subject of skeleton
// skel, and the handle the first names.
func skeletonClaims(t *testing.T, js jetstream.JetStream, skel string) (uint64, string) {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, streams.RegistryStream)
	if err != nil {
		t.Fatal(err)
	}
	subject := "kez.registry.skeleton." + skel
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	n := info.State.Subjects[subject]
	if n == 0 {
		return 0, ""
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Handle kez.Handle `json:"handle"`
	}
	json.Unmarshal(m.Data, &c)
	return n, c.Handle.Local()
}

// TestSkeletonMigration: a log written by a release before the fold fix
// (avw; bvw and bvvv, a look-alike pair the old fold let through) is
// migrated by two replicas starting at once: one claim per new skeleton,
// both of the pair registered, new look-alikes refused, the scrub clean
// before and after; a third replica stores nothing more; and a handle an
// old replica registers after the migration has its skeleton claimed
// when a look-alike asks for it.
func TestSkeletonMigration(t *testing.T) {
	cfg, js := setUpStreams(t)
	ctx := context.Background()
	for _, local := range []string{"carol", "avw", "bvw", "bvvv"} {
		appendLegacy(t, js, local)
	}
	// Not migrated yet: noted, not damage.
	res, err := chatserver.Scrub(ctx, js, chatserver.ScrubOptions{})
	if err != nil || !res.OK {
		t.Fatalf("scrub of the old log = %+v, %v", res, err)
	}
	if notes := strings.Join(res.Streams[0].Notes, "\n"); !strings.Contains(notes, "avw@"+domain+" (sequence 6), registered before the look-alike fold fix, has no claim") {
		t.Errorf("scrub notes of the old log:\n%s", notes)
	}

	// Two replicas start, and migrate, at once.
	servers := make([]*chatserver.Server, 2)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Go(func() {
			srv, err := chatserver.Start(ctx, cfg, webtest.Logger(t))
			if err != nil {
				t.Errorf("Start: %v", err)
				return
			}
			servers[i] = srv
		})
	}
	wg.Wait()
	for _, srv := range servers {
		if srv == nil {
			t.FailNow()
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Close(ctx)
		})
	}
	for _, srv := range servers {
		awaitSkeletons(t, srv)
	}
	for skel, want := range map[string]string{"avvv": "avw", "bvvv": "bvw"} {
		if n, h := skeletonClaims(t, js, skel); n != 1 || h != want {
			t.Errorf("claims on skeleton %s: %d, for %q; want 1, for %q", skel, n, h, want)
		}
	}
	for i, srv := range servers {
		for _, local := range []string{"avvv", "awv", "bwv", "b_vvv"} {
			if a := register(t, srv.URL(), regBody(t, keztest.NewKey(t), local)); a.Status != http.StatusConflict {
				t.Errorf("replica %d: %s: %d %s, want 409", i, local, a.Status, a.Body)
			}
		}
		for _, local := range []string{"carol", "avw", "bvw", "bvvv"} {
			if a := webtest.Do(t, http.MethodGet, srv.URL()+"/v1/u/"+local, nil); a.Status != http.StatusOK {
				t.Errorf("replica %d: look-up of %s: %d %s", i, local, a.Status, a.Body)
			}
		}
		if a := register(t, srv.URL(), regBody(t, keztest.NewKey(t), "dvw"+string(rune('a'+i)))); a.Status != http.StatusCreated {
			t.Errorf("replica %d: a new handle: %d %s", i, a.Status, a.Body)
		}
		if err := srv.Integrity.Err(); err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}

	// A later start finds every claim and stores nothing.
	st, _ := js.Stream(ctx, streams.RegistryStream)
	before := st.CachedInfo().State.LastSeq
	third := startServer(t, cfg)
	awaitSkeletons(t, third)
	if info, err := st.Info(ctx); err != nil || info.State.LastSeq != before {
		t.Errorf("after a third replica's migration the log ends at %d, want %d (%v)", info.State.LastSeq, before, err)
	}

	// An old replica registers evw after the migration: a look-alike
	// asking has its skeleton claimed and is refused.
	appendLegacy(t, js, "evw")
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := servers[0].Registry.Cache().Lookup("evw"); ok {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("evw not projected")
		}
	}
	if a := register(t, servers[0].URL(), regBody(t, keztest.NewKey(t), "evvv")); a.Status != http.StatusConflict {
		t.Errorf("evvv after an old replica's evw: %d %s, want 409", a.Status, a.Body)
	}
	if n, h := skeletonClaims(t, js, "evvv"); n != 1 || h != "evw" {
		t.Errorf("claims on skeleton evvv: %d, for %q; want 1, for evw", n, h)
	}
	if a := register(t, servers[1].URL(), regBody(t, keztest.NewKey(t), "ewv")); a.Status != http.StatusConflict {
		t.Errorf("ewv on the other replica: %d %s, want 409", a.Status, a.Body)
	}
	for _, srv := range append(servers, third) {
		if err := srv.Integrity.Err(); err != nil {
			t.Errorf("%v", err)
		}
	}

	res, err = chatserver.Scrub(ctx, js, chatserver.ScrubOptions{})
	if err != nil || !res.OK {
		t.Fatalf("scrub after the migration = %+v, %v", res, err)
	}
	notes := strings.Join(res.Streams[0].Notes, "\n")
	if !strings.Contains(notes, "handles bvvv@"+domain+" and bvw@"+domain+", registered before the look-alike fold fix, read alike") ||
		strings.Contains(notes, "has no claim") {
		t.Errorf("scrub notes after the migration:\n%s", notes)
	}
}
