package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// MemStats is what kez-load reads of a Go process's runtime.MemStats.
type MemStats struct {
	StackInuse uint64 // bytes of goroutine stacks
	HeapInuse  uint64 // bytes of heap spans in use
}

// maxHeapProfile bounds the heap profile read from a node (its text form
// lists allocation sites, then the runtime statistics).
const maxHeapProfile = 64 << 20

// fetchMemStats reads the runtime statistics at the end of the text heap
// profile of the process whose net/http/pprof listens at base.
func fetchMemStats(ctx context.Context, hc *http.Client, base string) (MemStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/pprof/heap?debug=1", nil)
	if err != nil {
		return MemStats{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return MemStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return MemStats{}, fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHeapProfile+1))
	if err != nil {
		return MemStats{}, fmt.Errorf("%s: %w", req.URL, err)
	}
	if len(b) > maxHeapProfile {
		// The runtime statistics come last: they were cut off.
		return MemStats{}, fmt.Errorf("%s: heap profile longer than %d MiB", req.URL, maxHeapProfile>>20)
	}
	m, err := parseMemStats(b)
	if err != nil {
		return MemStats{}, fmt.Errorf("%s: %w", req.URL, err)
	}
	return m, nil
}

// parseMemStats takes StackInuse and HeapInuse from the "# Name = value"
// lines that runtime/pprof writes after a text heap profile
// ("# Stack = inuse / sys", "# HeapInuse = n"). Both must be there.
func parseMemStats(b []byte) (MemStats, error) {
	var m MemStats
	var stack, heap bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "# ")
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(line, " = ")
		if !ok {
			continue
		}
		switch name {
		case "Stack":
			inuse, _, _ := strings.Cut(value, " / ")
			n, err := strconv.ParseUint(inuse, 10, 64)
			if err != nil {
				return MemStats{}, fmt.Errorf("runtime statistics: Stack %q: %w", value, err)
			}
			m.StackInuse, stack = n, true
		case "HeapInuse":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return MemStats{}, fmt.Errorf("runtime statistics: HeapInuse %q: %w", value, err)
			}
			m.HeapInuse, heap = n, true
		}
	}
	if err := sc.Err(); err != nil {
		return MemStats{}, fmt.Errorf("runtime statistics: %w", err)
	}
	if !stack || !heap {
		return MemStats{}, errors.New("runtime statistics: no Stack or HeapInuse line (not a Go heap profile with debug=1?)")
	}
	return m, nil
}
