package approval

import (
	"slices"
	"sync"
	"time"
)

// window counts events per key in a sliding time window, for the per-node
// rate limit and the global breaker. A zero Limit allows everything.
type window struct {
	limit Limit
	mu    sync.Mutex
	seen  map[string][]time.Time
	// sweepAt is the number of keys at which reserve next drops the keys
	// whose events all left the window.
	sweepAt int
}

// minSweep is the fewest keys a window holds before it sweeps.
const minSweep = 64

func newWindow(l Limit) *window {
	return &window{limit: l, seen: map[string][]time.Time{}, sweepAt: minSweep}
}

// reserve records an event for key at now if the limit allows it, all under
// one lock. It returns how long to wait when it does not (and records
// nothing), and a function that takes a recorded event back.
func (w *window) reserve(key string, now time.Time) (time.Duration, func()) {
	if w.limit.Max <= 0 {
		return 0, func() {}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sweep(now)
	ts := w.prune(key, now)
	if len(ts) >= w.limit.Max {
		return ts[len(ts)-w.limit.Max].Add(w.limit.Window).Sub(now), func() {}
	}
	w.seen[key] = append(ts, now)
	return 0, func() { w.release(key, now) }
}

// release removes one event recorded for key at t.
func (w *window) release(key string, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ts := w.seen[key]
	for i, seen := range slices.Backward(ts) {
		if seen.Equal(t) {
			w.seen[key] = append(ts[:i:i], ts[i+1:]...)
			break
		}
	}
	if len(w.seen[key]) == 0 {
		delete(w.seen, key)
	}
}

// sweep drops every key whose events all left the window, once there are
// twice as many keys as after the last sweep: a node that is gone takes no
// memory, and the cost per reservation stays constant on average.
func (w *window) sweep(now time.Time) {
	if len(w.seen) < w.sweepAt {
		return
	}
	for key := range w.seen {
		w.prune(key, now)
	}
	w.sweepAt = max(2*len(w.seen), minSweep)
}

// prune drops key's events older than the window and returns the rest.
func (w *window) prune(key string, now time.Time) []time.Time {
	ts := w.seen[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= w.limit.Window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(w.seen, key)
		return nil
	}
	w.seen[key] = ts
	return ts
}
