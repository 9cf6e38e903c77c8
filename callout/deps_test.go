package callout_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestTestsNeedNoHomeServer: callout's tests build without the home
// server or the client library, so that a change to either cannot break
// them (what needs the whole stack is in package integration).
func TestTestsNeedNoHomeServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps -test: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps -test listed %d packages: %q", len(deps), out)
	}
	for _, d := range deps {
		for _, bad := range []string{"kez.lat/kez/chatserver", "kez.lat/kez/client", "kez.lat/kez/door"} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("callout's tests build with %s", d)
			}
		}
	}
}
