package storm

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The series read from csrguard.
const (
	// leaderMetric is client-go's leader election status, 1 on the leader,
	// which controller-runtime exports for every manager.
	leaderMetric = "leader_election_master_status"
	// writeErrorsMetric with stage="write" counts decision writes that failed
	// and are retried (internal/metrics).
	writeErrorsMetric = "csrguard_errors_total"
)

// sample is one series' value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseSamples reads the counter, gauge and untyped samples of the named
// metrics from Prometheus text exposition (expfmt, as test/promtest does).
func parseSamples(r io.Reader, names ...string) ([]sample, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	var out []sample
	for _, name := range names {
		for _, m := range families[name].GetMetric() {
			s := sample{name: name, labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			default:
				s.value = m.GetUntyped().GetValue()
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// sum adds the values of the samples named name whose labels include want.
func sum(samples []sample, name string, want map[string]string) float64 {
	var total float64
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			total += s.value
		}
	}
	return total
}

// replicaState is what the last successful scrape of a replica said.
type replicaState struct {
	leads       bool
	writeErrors float64
	at          time.Time // when it was scraped; zero before the first
}

// replicaWatch scrapes every replica's /metrics every 250 ms, keeping the last
// answer of each: who leads, and its count of failed decision writes (the
// last count of a replica that died stays counted).
type replicaWatch struct {
	replicas []Replica
	cancel   context.CancelFunc
	done     chan struct{}

	mu    sync.Mutex
	state []replicaState
}

func watchReplicas(ctx context.Context, replicas []Replica) *replicaWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &replicaWatch{replicas: replicas, cancel: cancel, done: make(chan struct{}), state: make([]replicaState, len(replicas))}
	go func() {
		defer close(w.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			var wg sync.WaitGroup
			for i := range replicas {
				wg.Go(func() { w.scrape(ctx, i) })
			}
			wg.Wait()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *replicaWatch) scrape(ctx context.Context, i int) {
	ctx, cancel := context.WithTimeout(ctx, time.Second) // a paused replica does not answer
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.replicas[i].Metrics, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	samples, err := parseSamples(resp.Body, leaderMetric, writeErrorsMetric)
	if err != nil || resp.StatusCode != http.StatusOK {
		return
	}
	s := replicaState{
		leads:       sum(samples, leaderMetric, nil) > 0,
		writeErrors: sum(samples, writeErrorsMetric, map[string]string{"stage": "write"}),
		at:          time.Now(),
	}
	w.mu.Lock()
	w.state[i] = s
	w.mu.Unlock()
}

// leader returns the index of the replica that said last, within the last
// second, that it leads, if exactly one did.
func (w *replicaWatch) leader() (int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	found := -1
	for i, s := range w.state {
		if s.leads && time.Since(s.at) < time.Second {
			if found >= 0 {
				return -1, false
			}
			found = i
		}
	}
	return found, found >= 0
}

// writeErrors sums the replicas' last counts of failed decision writes.
func (w *replicaWatch) writeErrors() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var total float64
	for _, s := range w.state {
		total += s.writeErrors
	}
	return total
}

func (w *replicaWatch) stop() {
	w.cancel()
	<-w.done
}
