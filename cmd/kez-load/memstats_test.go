package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"runtime"
	rpprof "runtime/pprof"
	"strings"
	"testing"
)

// A heap profile written by this process in the form net/http/pprof
// serves holds the runtime's own figures.
func TestParseMemStatsOwnProfile(t *testing.T) {
	var buf bytes.Buffer
	if err := rpprof.Lookup("heap").WriteTo(&buf, 1); err != nil {
		t.Fatal(err)
	}
	m, err := parseMemStats(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if m.StackInuse == 0 || m.HeapInuse == 0 {
		t.Fatalf("parsed %+v from a live process's profile", m)
	}
	// The figures move between the two reads; they stay within a factor.
	if m.HeapInuse > 4*ms.HeapInuse || ms.HeapInuse > 4*m.HeapInuse {
		t.Errorf("HeapInuse %d parsed, %d read", m.HeapInuse, ms.HeapInuse)
	}
}

func TestParseMemStats(t *testing.T) {
	good := "heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# Alloc = 9\n# HeapInuse = 103268352\n# Stack = 103710720 / 103710720\n# MSpan = 1 / 2\n"
	m, err := parseMemStats([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if m != (MemStats{StackInuse: 103710720, HeapInuse: 103268352}) {
		t.Errorf("parsed %+v", m)
	}
	for name, in := range map[string]string{
		"empty":         "",
		"no stack":      "# HeapInuse = 5\n",
		"no heap":       "# Stack = 5 / 6\n",
		"not numbers":   "# HeapInuse = x\n# Stack = 5 / 6\n",
		"negative":      "# HeapInuse = -1\n# Stack = 5 / 6\n",
		"stack garbage": "# HeapInuse = 1\n# Stack = five / 6\n",
		"not comments":  "HeapInuse = 1\nStack = 5 / 6\n",
		"html":          "<html><body>404 page not found</body></html>",
	} {
		if m, err := parseMemStats([]byte(in)); err == nil {
			t.Errorf("%s: parsed %+v, want an error", name, m)
		}
	}
}

func TestFetchMemStats(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	m, err := fetchMemStats(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if m.StackInuse == 0 || m.HeapInuse == 0 {
		t.Errorf("fetched %+v", m)
	}
	if _, err := fetchMemStats(context.Background(), srv.Client(), srv.URL+"/nothing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a page that is not there: %v", err)
	}
}

func FuzzParseMemStats(f *testing.F) {
	f.Add([]byte("# HeapInuse = 103268352\n# Stack = 103710720 / 103710720\n"))
	f.Add([]byte("# Stack = 1 / 2\n# HeapInuse = 3\n# PauseNs = [1 2 3]\n"))
	f.Add([]byte("# Stack = 18446744073709551615 / 0\n# HeapInuse = 18446744073709551616\n"))
	f.Add([]byte("# Stack = \n# HeapInuse = \n"))
	f.Add([]byte("heap profile: 0: 0 [0: 0] @ heap/1048576\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMemStats(b)
		if err != nil && m != (MemStats{}) {
			t.Fatalf("error %v with figures %+v", err, m)
		}
		if err == nil && (!bytes.Contains(b, []byte("# Stack = ")) || !bytes.Contains(b, []byte("# HeapInuse = "))) {
			t.Fatalf("parsed %+v from input without both lines", m)
		}
	})
}
