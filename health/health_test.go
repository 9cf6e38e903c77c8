package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kez.lat/kez/health"
)

func TestReadyNamesFailingChecks(t *testing.T) {
	reg := prometheus.NewRegistry()
	var broken atomic.Bool
	broken.Store(true)
	c := health.New(health.Config{MaxAge: time.Nanosecond, Timeout: 200 * time.Millisecond}, []health.Check{
		{Name: "good", Fn: func(context.Context) error { return nil }},
		{Name: "store", Fn: func(context.Context) error {
			if broken.Load() {
				return errors.New("store full")
			}
			return nil
		}},
		{Name: "hangs", Fn: func(ctx context.Context) error {
			if broken.Load() {
				time.Sleep(time.Hour) // ignores ctx: the checker must not wait
			}
			return nil
		}},
	}, reg, slog.New(slog.DiscardHandler))

	start := time.Now()
	rec := httptest.NewRecorder()
	c.ServeReady(rec, httptest.NewRequest("GET", "/v1/readyz", nil))
	if took := time.Since(start); took > time.Second {
		t.Errorf("readiness took %v with a hanging check, want about the 200ms timeout", took)
	}
	var rep health.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || rep.Status != "unavailable" ||
		strings.Join(rep.Failing, ",") != "hangs,store" || rep.Checks["store"] != "store full" || rep.Checks["good"] != "ok" {
		t.Errorf("broken: %d %+v", rec.Code, rep)
	}
	if v := gauge(t, reg, "store"); v != 0 {
		t.Errorf("kez_ready{check=store} = %v, want 0", v)
	}

	broken.Store(false)
	rec = httptest.NewRecorder()
	c.ServeReady(rec, httptest.NewRequest("GET", "/v1/readyz", nil))
	rep = health.Report{}
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || !rep.OK() || rep.Status != "ok" || len(rep.Checks) != 3 {
		t.Errorf("fixed: %d %+v", rec.Code, rep)
	}
	if v := gauge(t, reg, "store"); v != 1 {
		t.Errorf("kez_ready{check=store} = %v, want 1", v)
	}
}

// TestReadyShared: callers within MaxAge, or while a run is in flight,
// share one run of the checks.
func TestReadyShared(t *testing.T) {
	var runs atomic.Int32
	release := make(chan struct{})
	c := health.New(health.Config{MaxAge: time.Hour}, []health.Check{
		{Name: "slow", Fn: func(context.Context) error { runs.Add(1); <-release; return nil }},
	}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	done := make(chan health.Report, 8)
	for range 8 {
		go func() { done <- c.Ready(context.Background()) }()
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	for range 8 {
		if rep := <-done; !rep.OK() {
			t.Errorf("report %+v", rep)
		}
	}
	c.Ready(context.Background())
	if n := runs.Load(); n != 1 {
		t.Errorf("checks ran %d times, want 1", n)
	}
}

func TestServeLive(t *testing.T) {
	rec := httptest.NewRecorder()
	health.ServeLive(rec, httptest.NewRequest("GET", "/v1/livez", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ok"`) {
		t.Errorf("livez: %d %s", rec.Code, rec.Body)
	}
}

// gauge returns the value of kez_ready{check=check} in reg.
func gauge(t *testing.T, reg *prometheus.Registry, check string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == "kez_ready" && l.GetName() == "check" && l.GetValue() == check {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no kez_ready{check=%q}", check)
	return 0
}
