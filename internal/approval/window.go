package approval

import (
	"sync"
	"time"
)

// window counts events per key in a sliding time window, for the per-node
// rate limit and the global breaker. A zero Limit allows everything.
type window struct {
	limit Limit
	mu    sync.Mutex
	seen  map[string][]time.Time
}

func newWindow(l Limit) *window { return &window{limit: l, seen: map[string][]time.Time{}} }

// wait returns how long until key may have one more event; 0 means now.
func (w *window) wait(key string, now time.Time) time.Duration {
	if w.limit.Max <= 0 {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	ts := w.prune(key, now)
	if len(ts) < w.limit.Max {
		return 0
	}
	return ts[len(ts)-w.limit.Max].Add(w.limit.Window).Sub(now)
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
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].Equal(t) {
			w.seen[key] = append(ts[:i:i], ts[i+1:]...)
			break
		}
	}
	if len(w.seen[key]) == 0 {
		delete(w.seen, key)
	}
}

// add records an event for key at now.
func (w *window) add(key string, now time.Time) {
	if w.limit.Max <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[key] = append(w.prune(key, now), now)
}

// prune drops events older than the window and returns the rest.
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
