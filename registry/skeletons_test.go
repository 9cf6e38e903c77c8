package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez"
	"kez.lat/kez/keztest"
	"kez.lat/kez/registry"
)

// addLegacy adds a registration of name as a release before the
// look-alike fold fix stored it: its skeleton claim by the old fold.
func (l *fakeLog) addLegacy(t *testing.T, name string) kez.Handle {
	t.Helper()
	h := l.add(t, keztest.NewKey(t), name).Handle
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.skels, h.Skeleton())
	l.skels[kez.LegacySkeleton(h.Local())] = h
	return h
}

// awaitSkeletons waits for svc's skeleton migration.
func awaitSkeletons(t *testing.T, svc *registry.Service) {
	t.Helper()
	for start := time.Now(); svc.SkeletonsReady(context.Background()) != nil; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("skeleton migration not done")
		}
	}
}

// TestMigrateSkeletons: the migration at start claims the new skeleton of
// each old handle with a w or a vv, the earlier of a look-alike pair the
// old fold let through; look-alikes are then refused, the pair is served,
// nothing is damage, and a second pass claims nothing.
func TestMigrateSkeletons(t *testing.T) {
	log, rep := newLog(), &reports{}
	avw := log.addLegacy(t, "avw")
	bvw := log.addLegacy(t, "bvw")
	log.addLegacy(t, "bvvv")
	log.addLegacy(t, "carol")
	svc := start(t, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, rep, nil)
	awaitSkeletons(t, svc)
	for skel, want := range map[string]kez.Handle{"avvv": avw, "bvvv": bvw} {
		if got, err := log.SkeletonHandle(context.Background(), skel); err != nil || got != want {
			t.Errorf("claim on %s = %v, %v; want %v", skel, got, err, want)
		}
	}
	for _, name := range []string{"avvv", "awv", "bwv", "b_vvv"} {
		if err := register(t, svc, keztest.NewKey(t), name); !errors.Is(err, kez.ErrHandleTooSimilar) {
			t.Errorf("Register(%s) = %v, want ErrHandleTooSimilar", name, err)
		}
	}
	for _, name := range []string{"bvw", "bvvv"} {
		h, _ := kez.ParseHandle(name, domain)
		if _, err := svc.Lookup(context.Background(), h); err != nil {
			t.Errorf("Lookup(%s) = %v", name, err)
		}
	}
	if got := rep.got(); got != "" {
		t.Errorf("reported: %s", got)
	}
	if m, err := svc.MigrateSkeletons(context.Background()); err != nil || m != (registry.SkeletonMigration{Changed: 3, Held: 2, Shared: 1}) {
		t.Errorf("second pass = %+v, %v; want 3 changed, 2 held, 1 shared", m, err)
	}
}

// TestServedRegistrationsWaitForSkeletons: the home server serves HTTP
// before it Runs the registry. A registration arriving in between waits
// for the skeleton migration (here, until it gives up: nothing Runs the
// migration) instead of reaching the log with the look-alike claims of
// older handles unwritten and the cache empty.
func TestServedRegistrationsWaitForSkeletons(t *testing.T) {
	log := newLog()
	svc, err := registry.New(registry.Config{Domain: domain}, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, allow{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	handler := svc.Handler(registry.HTTPConfig{Inbox: func(kez.PublicKey) string { return "inbox" }}, prometheus.NewRegistry())
	h, _ := kez.ParseHandle("avvv", domain)
	body, _ := json.Marshal(kez.NewRegistrationRequest(keztest.NewKey(t), h, time.Now()))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/register", bytes.NewReader(body)))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"code":"unavailable"`) {
		t.Errorf("POST /v1/register before Run = %d %s, want 503: the skeleton migration is pending", w.Code, w.Body)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.appended != 0 {
		t.Error("a registration served before Run reached the log")
	}
}

// TestLostSkeletonClaimOfAPostFixHandle: a handle registered after the
// fold fix whose claim a damaged leader lost is damage, reported and
// refused, not claimed again as if the old release had registered it.
func TestLostSkeletonClaimOfAPostFixHandle(t *testing.T) {
	log, rep := newLog(), &reports{}
	ev := log.add(t, keztest.NewKey(t), "wendy") // claims kez.Skeleton: vvendy
	svc := start(t, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, rep, nil)
	awaitSkeletons(t, svc)
	log.mu.Lock()
	delete(log.skels, ev.Handle.Skeleton()) // the damaged leader lost it
	log.mu.Unlock()
	err := register(t, svc, keztest.NewKey(t), "vvendy")
	log.mu.Lock()
	_, reclaimed := log.skels["vvendy"]
	log.mu.Unlock()
	if !errors.Is(err, kez.ErrLogDamaged) || !strings.Contains(rep.got(), "no claim on skeleton") {
		t.Fatalf("Register(vvendy) = %v, reported %q, claim written again on the damaged leader: %v; want ErrLogDamaged, reported",
			err, rep.got(), reclaimed)
	}
}

// TestMigrateSkeletonsReportsALostClaim: a handle registered after the
// fold fix (it holds no claim of the old fold) whose claim on its
// skeleton the log lost is damage at the migration too: reported, the
// pass fails, and the claim is not written again.
func TestMigrateSkeletonsReportsALostClaim(t *testing.T) {
	log, rep := newLog(), &reports{}
	ev := log.add(t, keztest.NewKey(t), "wendy")
	log.mu.Lock()
	delete(log.skels, ev.Handle.Skeleton())
	log.mu.Unlock()
	svc := start(t, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, rep, nil)
	m, err := svc.MigrateSkeletons(context.Background())
	log.mu.Lock()
	_, reclaimed := log.skels["vvendy"]
	log.mu.Unlock()
	if !errors.Is(err, kez.ErrLogDamaged) || reclaimed {
		t.Errorf("MigrateSkeletons = %+v, %v, claim written again: %v; want ErrLogDamaged, none written", m, err, reclaimed)
	}
	if got := rep.got(); !strings.Contains(got, "the log has no claim on skeleton vvendy, which this replica's projection holds for wendy@"+domain) {
		t.Errorf("reported %q", got)
	}
	if svc.SkeletonsReady(context.Background()) == nil {
		t.Error("ready after a failed migration")
	}
}

// TestLookAlikePairAfterTheFix: two look-alike handles of which the one
// the skeleton claim does not name holds no claim of the old fold are no
// pair the old fold let through (the second registered after the fix,
// through a leader that lost the first's claim): damage, at the
// migration and at a registration of a third look-alike.
func TestLookAlikePairAfterTheFix(t *testing.T) {
	want := "the log's claim on skeleton avvv is by avw@" + domain + ", this replica's projection holds it for avvv@" + domain
	t.Run("migration", func(t *testing.T) {
		log, rep := newLog(), &reports{}
		avw := log.add(t, keztest.NewKey(t), "avw").Handle
		log.add(t, keztest.NewKey(t), "avvv")
		log.mu.Lock()
		log.skels["avvv"] = avw
		log.mu.Unlock()
		svc := start(t, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, rep, nil)
		if m, err := svc.MigrateSkeletons(context.Background()); !errors.Is(err, kez.ErrLogDamaged) {
			t.Errorf("MigrateSkeletons = %+v, %v; want ErrLogDamaged", m, err)
		}
		if got := rep.got(); !strings.Contains(got, want) {
			t.Errorf("reported %q", got)
		}
	})
	t.Run("registration", func(t *testing.T) {
		log, rep := newLog(), &reports{}
		log.addLegacy(t, "avw")
		avvv := log.addLegacy(t, "avvv")
		svc := start(t, log, &fakeProj{recs: map[string]kez.HandleRecord{}}, rep, nil)
		awaitSkeletons(t, svc)
		log.mu.Lock()
		delete(log.skels, kez.LegacySkeleton(avvv.Local())) // as if avvv came after the fix
		log.mu.Unlock()
		if err := register(t, svc, keztest.NewKey(t), "awv"); !errors.Is(err, kez.ErrLogDamaged) {
			t.Errorf("Register(awv) = %v, want ErrLogDamaged", err)
		}
		if got := rep.got(); !strings.Contains(got, want) {
			t.Errorf("reported %q", got)
		}
	})
}
