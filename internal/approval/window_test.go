package approval

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var windowStart = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

func TestWindowReserve(t *testing.T) {
	tests := []struct {
		name     string
		limit    Limit
		reserved []time.Duration // offsets from windowStart of earlier reservations for the key
		at       time.Duration   // offset from windowStart of the reservation under test
		wantWait time.Duration
		wantHeld int // events recorded for the key afterwards
	}{
		{"disabled", Limit{Max: 0, Window: time.Hour}, []time.Duration{0, 0, 0}, time.Minute, 0, 0},
		{"empty", Limit{Max: 1, Window: time.Hour}, nil, 0, 0, 1},
		{"under_limit", Limit{Max: 2, Window: time.Hour}, []time.Duration{0}, 10 * time.Minute, 0, 2},
		// A refused reservation records nothing, so waiting does not push the wait further.
		{"at_limit", Limit{Max: 2, Window: time.Hour}, []time.Duration{0, 10 * time.Minute}, 20 * time.Minute, 40 * time.Minute, 2},
		{"limit_one", Limit{Max: 1, Window: time.Hour}, []time.Duration{15 * time.Minute}, 20 * time.Minute, 55 * time.Minute, 1},
		{"just_before_expiry", Limit{Max: 2, Window: time.Hour}, []time.Duration{0, 10 * time.Minute}, time.Hour - time.Nanosecond, time.Nanosecond, 2},
		{"oldest_expired", Limit{Max: 2, Window: time.Hour}, []time.Duration{0, 10 * time.Minute}, time.Hour, 0, 2},
		{"all_expired", Limit{Max: 1, Window: time.Hour}, []time.Duration{0}, 2 * time.Hour, 0, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow(tc.limit)
			for _, d := range tc.reserved {
				if wait, _ := w.reserve("node-a", windowStart.Add(d)); wait != 0 {
					t.Fatalf("reserve(+%v) = %v, want 0", d, wait)
				}
			}
			if got, _ := w.reserve("node-a", windowStart.Add(tc.at)); got != tc.wantWait {
				t.Errorf("reserve(+%v) = %v, want %v", tc.at, got, tc.wantWait)
			}
			if got := len(w.seen["node-a"]); got != tc.wantHeld {
				t.Errorf("window holds %d events, want %d", got, tc.wantHeld)
			}
		})
	}
}

func TestWindowRelease(t *testing.T) {
	limit := Limit{Max: 2, Window: time.Hour}
	t.Run("gives_the_slot_back", func(t *testing.T) {
		w := newWindow(limit)
		w.reserve("node-a", windowStart)
		_, release := w.reserve("node-a", windowStart)
		release()
		if wait, _ := w.reserve("node-a", windowStart); wait != 0 {
			t.Errorf("reserve after release = %v, want 0", wait)
		}
		if got := len(w.seen["node-a"]); got != 2 {
			t.Errorf("window holds %d events, want 2", got)
		}
	})
	t.Run("last_event_frees_the_key", func(t *testing.T) {
		w := newWindow(limit)
		_, release := w.reserve("node-a", windowStart)
		release()
		if _, ok := w.seen["node-a"]; ok {
			t.Errorf("window keeps node-a with no event: %v", w.seen)
		}
	})
	t.Run("refused_reservation_releases_nothing", func(t *testing.T) {
		w := newWindow(limit)
		w.reserve("node-a", windowStart)
		w.reserve("node-a", windowStart)
		wait, release := w.reserve("node-a", windowStart)
		release()
		if wait == 0 || len(w.seen["node-a"]) != 2 {
			t.Errorf("reserve at the limit = %v and release left %d events; want a wait and 2", wait, len(w.seen["node-a"]))
		}
	})
	t.Run("expired_event_releases_nothing", func(t *testing.T) {
		// A write that failed after its event left the window must not take a later one back.
		w := newWindow(Limit{Max: 1, Window: time.Hour})
		_, release := w.reserve("node-a", windowStart)
		w.reserve("node-a", windowStart.Add(time.Hour))
		release()
		if wait, _ := w.reserve("node-a", windowStart.Add(time.Hour)); wait != time.Hour {
			t.Errorf("reserve after a stale release = %v, want 1h", wait)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		w := newWindow(Limit{})
		_, release := w.reserve("node-a", windowStart)
		release()
		if len(w.seen) != 0 {
			t.Errorf("disabled window holds %v", w.seen)
		}
	})
}

func TestWindowKeysAreIndependent(t *testing.T) {
	w := newWindow(Limit{Max: 1, Window: time.Hour})
	w.reserve("node-a", windowStart)
	if got, _ := w.reserve("node-a", windowStart); got != time.Hour {
		t.Errorf("reserve(node-a) = %v, want 1h", got)
	}
	if got, _ := w.reserve("node-b", windowStart); got != 0 {
		t.Errorf("reserve(node-b) = %v, want 0", got)
	}
}

func TestWindowForgetsExpiredKeys(t *testing.T) {
	// Nodes come and go: one whose events all left the window takes no memory,
	// even if it never asks again.
	w := newWindow(Limit{Max: 3, Window: time.Hour})
	for i := range minSweep - 1 {
		w.reserve(fmt.Sprintf("gone-%d", i), windowStart)
	}
	w.reserve("node-a", windowStart.Add(30*time.Minute))
	// The window holds minSweep keys now: this reservation sweeps first.
	w.reserve("node-b", windowStart.Add(time.Hour))
	if got := len(w.seen); got != 2 {
		t.Errorf("window holds %d keys, want 2 (node-a, node-b)", got)
	}
	if w.sweepAt != minSweep {
		t.Errorf("next sweep at %d keys, want %d", w.sweepAt, minSweep)
	}
}

func TestWindowConcurrent(t *testing.T) {
	w := newWindow(Limit{Max: 500, Window: time.Hour})
	var mu sync.Mutex
	var granted []func()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if wait, release := w.reserve("node-a", windowStart); wait == 0 {
					mu.Lock()
					granted = append(granted, release)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	// Reserving checks and records under one lock: parallel workers never overshoot.
	if len(granted) != 500 || len(w.seen["node-a"]) != 500 {
		t.Fatalf("granted %d reservations, window holds %d events; want 500 and 500", len(granted), len(w.seen["node-a"]))
	}
	for _, release := range granted {
		wg.Go(release)
	}
	wg.Wait()
	if len(w.seen) != 0 {
		t.Errorf("after every release the window holds %d keys, want 0", len(w.seen))
	}
}
