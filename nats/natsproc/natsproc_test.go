package natsproc_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"kez.lat/kez/nats/natskeys"
	"kez.lat/kez/nats/natsproc"
)

// TestProc: a process starts with its environment and fd limit, writes
// to its log, is killed and started again.
func TestProc(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	p := &natsproc.Proc{Name: "sh", Path: "/bin/sh", NoFile: 123, Env: []string{"KEZ_TEST=hello"},
		Args: []string{"-c", `echo "$KEZ_TEST $(ulimit -Sn)" > ` + out + `; echo logged; exec sleep 60`},
		Log:  filepath.Join(dir, "log")}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err == nil {
		t.Error("a second Start of a running process succeeded")
	}
	pid := p.PID()
	if pid == 0 {
		t.Fatal("no pid")
	}
	var got []byte
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if got, _ = os.ReadFile(out); strings.HasSuffix(string(got), "\n") {
			break
		}
	}
	if string(got) != "hello 123\n" {
		t.Errorf("environment and fd limit seen by the process: %q, want %q", got, "hello 123\n")
	}
	p.Kill()
	if p.PID() != 0 {
		t.Error("pid after Kill")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("process %d still there after Kill", pid)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	var log []byte
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if log, _ = os.ReadFile(p.Log); strings.Count(string(log), "logged\n") == 2 {
			break
		}
	}
	p.Stop(5 * time.Second)
	if strings.Count(string(log), "logged\n") != 2 {
		t.Errorf("log of two runs: %q", log)
	}
}

func TestFreePorts(t *testing.T) {
	ports, err := natsproc.FreePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range ports {
		if p >= 32768 || i > 0 && p != ports[i-1]+1 {
			t.Fatalf("ports %v: want consecutive, below 32768", ports)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
}

// TestWaitHTTP: it waits through errors for a 200 and gives up at its
// bound with the last answer.
func TestWaitHTTP(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 || r.URL.Path == "/never" {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if err := natsproc.WaitHTTP(context.Background(), srv.URL+"/", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	err := natsproc.WaitHTTP(context.Background(), srv.URL+"/never", 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "503 not yet") {
		t.Fatalf("WaitHTTP of a 503 = %v, want an error with the answer", err)
	}
}

// TestStartProfile: with Profile, a node serves Go profiles on its own
// port of 127.0.0.1 (the runtime statistics kez-load reads).
func TestStartProfile(t *testing.T) {
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "nats-server"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%v: run `make tools`", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, profile := range []bool{false, true} {
		c, err := natsproc.Start(ctx, natsproc.Options{Bin: bin, Conf: []byte("max_payload: 1MB\n"), Dir: t.TempDir(), Profile: profile})
		if err != nil {
			t.Fatal(err)
		}
		n := c.Nodes[0]
		if !profile {
			if n.ProfileURL != "" {
				t.Errorf("ProfileURL %q without Profile", n.ProfileURL)
			}
			c.Kill()
			continue
		}
		if !strings.HasPrefix(n.ProfileURL, "http://127.0.0.1:") {
			c.Kill()
			t.Fatalf("ProfileURL %q", n.ProfileURL)
		}
		resp, err := http.Get(n.ProfileURL + "/debug/pprof/heap?debug=1")
		if err != nil {
			c.Kill()
			t.Fatal(err)
		}
		var body strings.Builder
		_, err = io.Copy(&body, resp.Body)
		resp.Body.Close()
		c.Kill()
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(body.String(), "\n# Stack = ") {
			t.Errorf("%s: %v %v, %d bytes without the runtime statistics", n.ProfileURL, resp.Status, err, body.Len())
		}
	}
}

// TestStartMonitoringOnLoopback: a node started from the shipped nats.conf
// (or from one that opens monitoring on every interface) serves monitoring
// on 127.0.0.1 only: /connz lists every user's key, address and
// subscriptions, with no credentials.
func TestStartMonitoringOnLoopback(t *testing.T) {
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "nats-server"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%v: run `make tools`", err)
	}
	shipped, err := os.ReadFile(filepath.Join("..", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tt := range []struct {
		name string
		conf []byte
	}{
		{"nats.conf", shipped},
		{"all interfaces", []byte("max_payload: 1MB\nhttp: \"0.0.0.0:8222\"\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := natskeys.EnsureKeys(filepath.Join(dir, "keys")); err != nil {
				t.Fatal(err)
			}
			c, err := natsproc.Start(ctx, natsproc.Options{Bin: bin, Conf: tt.conf, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Kill()
			resp, err := http.Get(c.Nodes[0].MonitorURL + "/varz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var varz struct {
				HTTPHost string `json:"http_host"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&varz); err != nil {
				t.Fatal(err)
			}
			if varz.HTTPHost != "127.0.0.1" {
				t.Errorf("monitoring listens on %q, want 127.0.0.1", varz.HTTPHost)
			}
		})
	}
}
