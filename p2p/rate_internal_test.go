package p2p

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type name string

func (n name) String() string { return string(n) }

// TestPacer: the deadline is FirstByte after the request until a byte
// moves, then the first time the sliding window holds fewer than Bytes.
func TestPacer(t *testing.T) {
	rate := MinRate{FirstByte: 10 * time.Second, Bytes: 1000, Window: 16 * time.Second}
	t0 := time.Unix(1_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	p := newPacer(rate, t0)
	if got := p.deadline(); !got.Equal(at(10)) {
		t.Fatalf("deadline before the first byte: %s, want +10s", got.Sub(t0))
	}
	if err := p.stalled(name("peer1"), "sent", at(10)); !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "peer1 sent no byte within 10s") {
		t.Fatalf("stalled before the first byte: %v", err)
	}
	for _, tt := range []struct {
		at   float64 // seconds after t0
		n    int
		want float64 // deadline, seconds after t0
	}{
		{2, 10, 18},        // under Bytes: a window after the first byte
		{3, 2000, 19},      // count(t-16) > 1010 once t-16 reaches 3
		{10, 500, 19},      // > 1510: still 3
		{12, 1000, 28},     // > 2510: 12 (at 11, 1000 moved in (11, 27])
		{27, 1, 28},        // one byte does not make a window
		{27.5, 1000, 43.5}, // over a second after the mark before the last (12): a new mark
		{27.8, 1, 43.8},    // within a second of the mark at 27: moves the last to 27.8
		{28.6, 600, 43.8},  // over a second after 27 (if not after 27.8): a new mark
	} {
		p.add(at(tt.at), tt.n)
		if got := p.deadline(); !got.Equal(at(tt.want)) {
			t.Fatalf("after %d bytes at +%gs: deadline +%s, want +%gs", tt.n, tt.at, got.Sub(t0), tt.want)
		}
	}
	if len(p.marks) > 2*markParts+1 {
		t.Errorf("%d marks kept", len(p.marks))
	}
	err := p.stalled(name("peer1"), "sent", at(44.6))
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "peer1 sent 0 bytes in the last 16s") {
		t.Fatalf("stalled: %v", err)
	}
}

// TestPacerSteady: a transfer at twice the minimum rate, a byte count
// every 10 ms, never has a deadline behind it, and keeps few marks; one
// at half the minimum stalls a window after it started.
func TestPacerSteady(t *testing.T) {
	rate := MinRate{FirstByte: time.Second, Bytes: 1000, Window: time.Second}
	t0 := time.Unix(1_000_000, 0)
	p := newPacer(rate, t0)
	now := t0
	for range 1000 {
		now = now.Add(10 * time.Millisecond)
		p.add(now, 20) // 2000 bytes a second
		if !now.Before(p.deadline()) {
			t.Fatalf("steady transfer stalled at +%s", now.Sub(t0))
		}
	}
	if len(p.marks) > 2*markParts+1 {
		t.Errorf("%d marks kept", len(p.marks))
	}
	p = newPacer(rate, t0)
	now = t0
	for range 1000 {
		now = now.Add(10 * time.Millisecond)
		if !now.Before(p.deadline()) {
			break
		}
		p.add(now, 5) // 500 bytes a second
	}
	if took := now.Sub(t0); took < time.Second || took > 1100*time.Millisecond {
		t.Fatalf("slow transfer stalled at +%s, want about 1s", took)
	}
}

func TestMinRateDefaults(t *testing.T) {
	if got := (MinRate{Bytes: 5}).orDefault(); got != (MinRate{FirstByte: DefaultMinRate.FirstByte, Bytes: 5, Window: DefaultMinRate.Window}) {
		t.Fatalf("orDefault = %+v", got)
	}
	if err := (MinRate{Window: -1}).Validate(); err == nil {
		t.Fatal("a negative window validates")
	}
	if err := (Config{Key: nil}).Validate(); err == nil {
		t.Fatal("no key validates")
	}
}

// TestPacerTrickle: a peer that moves Bytes at once, then a byte at
// intervals shorter than Window/markParts, stalls about a window after
// its burst: reads close together do not push one mark forward for
// ever, and the marks kept stay few.
func TestPacerTrickle(t *testing.T) {
	rate := MinRate{FirstByte: time.Second, Bytes: 64 << 10, Window: 32 * time.Second}
	t0 := time.Unix(1_000_000, 0)
	p := newPacer(rate, t0)
	now := t0
	p.add(now, 64<<10)
	for range 10000 { // 10000 s, a byte a second
		now = now.Add(time.Second)
		if !now.Before(p.deadline()) {
			break
		}
		p.add(now, 1)
		if len(p.marks) > 2*markParts+1 {
			t.Fatalf("%d marks kept at +%s", len(p.marks), now.Sub(t0))
		}
	}
	if now.Before(p.deadline()) {
		t.Fatalf("a byte a second after a burst of 64 KiB never stalled in %s; marks %v", now.Sub(t0), p.marks)
	}
	// The burst counts as moved at most Window/markParts late.
	if took, most := now.Sub(t0), rate.Window+rate.Window/markParts; took < rate.Window || took > most {
		t.Fatalf("a byte a second after a burst of 64 KiB stalled at +%s, want within [%s, %s]", took, rate.Window, most)
	}
}
