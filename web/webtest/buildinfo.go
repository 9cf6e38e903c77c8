package webtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"kez.lat/kez/buildinfo"
)

// BuildInfo checks that a server's health answer carries this binary's
// build under "build" and that its metrics have kez_build_info with the
// same labels.
func BuildInfo(t testing.TB, health, metrics []byte) {
	t.Helper()
	in := buildinfo.Get()
	var h struct {
		Build *buildinfo.Info `json:"build"`
	}
	if err := json.Unmarshal(health, &h); err != nil || h.Build == nil || *h.Build != in {
		t.Errorf("health answer has build %+v (%v), want %+v: %s", h.Build, err, in, health)
	}
	want := fmt.Sprintf(`kez_build_info{go=%q,revision=%q,version=%q} 1`, in.Go, in.Revision, in.Version)
	if !strings.Contains(string(metrics), want) {
		t.Errorf("metrics lack %s", want)
	}
}
