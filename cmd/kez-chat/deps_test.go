package main

import (
	"os/exec"
	"strings"
	"testing"
)

// serverPackages are the packages only the servers may link: the user's
// binary speaks to them through the wire contract at the module root.
var serverPackages = []string{
	"registry", "sigserver", "chatserver", "callout", "web", "webfinger",
	"relay", "streams", "door", "integrity",
}

// TestLinksNoServerPackage: kez-chat links no server package, nor the
// servers' metrics handler (libp2p links prometheus itself, not promhttp).
func TestLinksNoServerPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), out)
	}
	bad := map[string]bool{"github.com/prometheus/client_golang/prometheus/promhttp": true}
	for _, p := range serverPackages {
		bad["kez.lat/kez/"+p] = true
	}
	for _, d := range deps {
		if bad[d] {
			t.Errorf("kez-chat links %s", d)
		}
	}
}
