package storm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
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

// parseSamples reads the samples of the named metrics from Prometheus text
// exposition; other lines are skipped unparsed.
func parseSamples(r io.Reader, names ...string) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		end := strings.IndexAny(line, "{ ")
		if end < 0 || strings.HasPrefix(line, "#") || !slices.Contains(names, line[:end]) {
			continue
		}
		s := sample{name: line[:end], labels: map[string]string{}}
		rest := line[end:]
		if strings.HasPrefix(rest, "{") {
			var err error
			if rest, err = parseLabels(rest[1:], s.labels); err != nil {
				return nil, fmt.Errorf("%q: %w", line, err)
			}
		}
		fields := strings.Fields(rest) // the value, then an optional timestamp
		if len(fields) == 0 {
			return nil, fmt.Errorf("%q: no value", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels reads `k="v",…}` into labels and returns what follows the brace.
func parseLabels(s string, labels map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, ", ")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		key, rest, ok := strings.Cut(s, `="`)
		if !ok {
			return "", errors.New("malformed labels")
		}
		var v strings.Builder
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				i++ // \\, \" and \n are the escapes
				if rest[i] == 'n' {
					v.WriteByte('\n')
					continue
				}
			}
			v.WriteByte(rest[i])
		}
		if i == len(rest) {
			return "", errors.New("unterminated label value")
		}
		labels[key] = v.String()
		s = rest[i+1:]
	}
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
