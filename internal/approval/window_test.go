package approval

import (
	"testing"
	"time"
)

func TestWindowWait(t *testing.T) {
	t0 := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		limit Limit
		added []time.Duration // offsets from t0 of the events added for the key
		at    time.Duration   // offset from t0 of the wait call
		want  time.Duration
	}{
		{"disabled", Limit{Max: 0, Window: time.Hour}, []time.Duration{0, 0, 0}, time.Minute, 0},
		{"empty", Limit{Max: 1, Window: time.Hour}, nil, 0, 0},
		{"under_limit", Limit{Max: 2, Window: time.Hour}, []time.Duration{0}, 10 * time.Minute, 0},
		{"at_limit", Limit{Max: 2, Window: time.Hour}, []time.Duration{0, 10 * time.Minute}, 20 * time.Minute, 40 * time.Minute},
		{"limit_one", Limit{Max: 1, Window: time.Hour}, []time.Duration{15 * time.Minute}, 20 * time.Minute, 55 * time.Minute},
		{"just_before_expiry", Limit{Max: 2, Window: time.Hour}, []time.Duration{0, 10 * time.Minute}, time.Hour - time.Nanosecond, time.Nanosecond},
		{"oldest_expired", Limit{Max: 2, Window: time.Hour}, []time.Duration{0, 10 * time.Minute}, time.Hour, 0},
		{"all_expired", Limit{Max: 1, Window: time.Hour}, []time.Duration{0, time.Minute}, 2 * time.Hour, 0},
		// Concurrent approvals may overshoot the limit: wait until only Max-1 remain.
		{"over_limit", Limit{Max: 2, Window: time.Hour}, []time.Duration{0, 10 * time.Minute, 20 * time.Minute}, 30 * time.Minute, 40 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWindow(tc.limit)
			for _, d := range tc.added {
				w.add("node-a", t0.Add(d))
			}
			if got := w.wait("node-a", t0.Add(tc.at)); got != tc.want {
				t.Errorf("wait() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWindowKeysAreIndependent(t *testing.T) {
	t0 := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	w := newWindow(Limit{Max: 1, Window: time.Hour})
	w.add("node-a", t0)
	if got := w.wait("node-a", t0); got != time.Hour {
		t.Errorf("wait(node-a) = %v, want 1h", got)
	}
	if got := w.wait("node-b", t0); got != 0 {
		t.Errorf("wait(node-b) = %v, want 0", got)
	}
}

func TestWindowForgetsExpiredKeys(t *testing.T) {
	t0 := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	w := newWindow(Limit{Max: 3, Window: time.Hour})
	w.add("node-a", t0)
	w.add("node-b", t0.Add(30*time.Minute))
	// A key with no event left in the window takes no memory: nodes come and go.
	w.wait("node-a", t0.Add(time.Hour))
	w.add("node-b", t0.Add(2*time.Hour))
	if got := len(w.seen); got != 1 {
		t.Errorf("window holds %d keys, want 1 (node-b)", got)
	}
	if got := len(w.seen["node-b"]); got != 1 {
		t.Errorf("window holds %d events of node-b, want 1", got)
	}
}

func TestWindowConcurrent(t *testing.T) {
	t0 := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	w := newWindow(Limit{Max: 1000, Window: time.Hour})
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 100 {
				w.wait("node-a", t0)
				w.add("node-a", t0)
			}
		}()
	}
	for range 8 {
		<-done
	}
	if got := len(w.seen["node-a"]); got != 800 {
		t.Errorf("window holds %d events, want 800", got)
	}
}
