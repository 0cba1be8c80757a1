package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/test/netns"
)

func TestParseMetrics(t *testing.T) {
	const exposition = `# HELP rest_client_requests_total Number of HTTP requests, partitioned by status code, method, and host.
# TYPE rest_client_requests_total counter
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="GET"} 41
rest_client_requests_total{code="404",host="127.0.0.1:6443",method="GET"} 1
rest_client_requests_total{code="201",host="127.0.0.1:6443",method="POST"} 7 1700000000000
rest_client_requests_total{code="200",host="127.0.0.1:6443",method="PUT"} 2e+03
rest_client_requests_totally_different{method="GET"} 99
workqueue_queue_duration_seconds_bucket{controller="c",name="c",le="+Inf"} 4
workqueue_queue_duration_seconds_sum{controller="c",name="c"} 2
workqueue_queue_duration_seconds_count{controller="c",name="c"} 4
controller_runtime_reconcile_time_seconds_sum{controller="c"} 0.5
controller_runtime_reconcile_time_seconds_count{controller="c"} 10
go_goroutines 42
process_weird{x="y"} not-a-number
csrguard_kubelet_probe_sweep_duration_seconds 1.5
csrguard_kubelet_probe_sweep_timestamp_seconds 1.7e+09
csrguard_kubelet_probe_duration_seconds_bucket{le="0.001"} 1
csrguard_kubelet_probe_duration_seconds_sum 0.012
csrguard_kubelet_probe_duration_seconds_count 4
csrguard_kubelet_probe_result{node="node-00000",result="ok"} 1
csrguard_kubelet_probe_result{node="node-00001",result="ok"} 1
csrguard_kubelet_probe_result{node="node-00002",result="timeout"} 1
csrguard_kubelet_probe_result{node="node-00003",result="refused"} 0
csrguard_kubelet_serving_cert_sans_match{node="node-00000"} 1
csrguard_kubelet_serving_cert_sans_match{node="node-00001"} 0
`
	got, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	want := scrape{
		requests:  requestCounts{"GET": 42, "POST": 7, "PUT": 2000},
		queued:    histogram{sum: 2, count: 4},
		reconcile: histogram{sum: 0.5, count: 10},
		probe: probeScrape{
			sweepDuration: 1500 * time.Millisecond,
			sweepEnd:      1.7e9,
			probes:        histogram{sum: 0.012, count: 4},
			results:       map[string]int{"ok": 2, "timeout": 1},
			sansMatch:     1,
		},
	}
	if diff := cmp.Diff(got, want, cmp.AllowUnexported(scrape{}, histogram{}, probeScrape{})); diff != "" {
		t.Errorf("parseMetrics (-got +want):\n%s", diff)
	}
	reads, writes := got.requests.sub(requestCounts{"GET": 40, "PUT": 1000})
	if reads != 2 || writes != 1007 {
		t.Errorf("sub = %v reads, %v writes; want 2, 1007", reads, writes)
	}
	if d := got.reconcile.meanSince(histogram{}); d != 50*time.Millisecond {
		t.Errorf("reconcile mean = %v, want 50ms", d)
	}
}

func TestParseMetricsWithoutRequests(t *testing.T) {
	if _, err := parseMetrics(strings.NewReader("workqueue_adds_total 1\n")); err == nil {
		t.Error("parseMetrics without rest_client_requests_total: got nil error")
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name string
		d    []time.Duration
		q    float64
		want time.Duration
	}{
		{"empty", nil, 0.5, 0},
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median_of_unsorted", ms(5, 1, 4, 2, 3), 0.5, 3 * time.Millisecond},
		{"p99_of_hundred", ms(seq(100)...), 0.99, 99 * time.Millisecond},
		{"p50_of_even", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.d, tt.q); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.d, tt.q, got, tt.want)
			}
		})
	}
}

func TestNodeAddrUnique(t *testing.T) {
	seen := map[string]int{}
	for _, i := range []int{0, 1, 254, 255, 256, 65534, 65535, 65536, maxNodes - 1} {
		a := nodeAddr(i)
		if prev, dup := seen[a.String()]; dup {
			t.Fatalf("nodeAddr(%d) = nodeAddr(%d) = %s", i, prev, a)
		}
		seen[a.String()] = i
		if b := a.As4(); b[0] != 10 || b[1] < 128 || a == nodeAddr(-1) {
			t.Errorf("nodeAddr(%d) = %s, want inside 10.128.0.0/9 and not 10.128.0.0", i, a)
		}
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

func TestStandInAddr(t *testing.T) {
	seen := map[netip.Addr]int{}
	for i := range maxProbeNodes {
		a := standInAddr(i)
		if prev, dup := seen[a]; dup {
			t.Fatalf("standInAddr(%d) = standInAddr(%d) = %s", i, prev, a)
		}
		seen[a] = i
		// Inside the benchmarking range, neither its first nor its last address.
		if !netns.Bench.Contains(a) || a == netns.Bench.Addr() || a == netip.MustParseAddr("198.19.255.255") {
			t.Fatalf("standInAddr(%d) = %s, want a host address in %s", i, a, netns.Bench)
		}
	}
}

func TestSoftFileLimit(t *testing.T) {
	tests := []struct {
		name            string
		cur, hard, need uint64
		want            uint64
		wantErr         bool
	}{
		{name: "enough", cur: 20000, hard: 20000, need: 5088, want: 20000},
		{name: "raise_to_need", cur: 1024, hard: 1 << 20, need: 5088, want: 5088},
		{name: "exactly_hard", cur: 1024, hard: 5088, need: 5088, want: 5088},
		{name: "hard_too_low", cur: 1024, hard: 4096, need: 5088, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := softFileLimit(tt.cur, tt.hard, tt.need)
			if (err != nil) != tt.wantErr {
				t.Fatalf("softFileLimit(%d, %d, %d) error = %v, want error %v", tt.cur, tt.hard, tt.need, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("softFileLimit(%d, %d, %d) = %d, want %d", tt.cur, tt.hard, tt.need, got, tt.want)
			}
		})
	}
}

func TestProbeResult(t *testing.T) {
	r := probeResult{
		nodes: 2000, concurrency: 32, interval: 30 * time.Second,
		sweeps: []time.Duration{4 * time.Second, 6 * time.Second, 5 * time.Second},
		// Two sweeps of 2,000 probes between the first and the last end.
		cpu:       2 * time.Second,
		probes:    histogram{sum: 8, count: 4000},
		results:   map[string]int{"ok": 2000},
		peakRSSMB: 61.4,
	}
	if got, want := r.maxSweep(), 6*time.Second; got != want {
		t.Errorf("maxSweep = %v, want %v", got, want)
	}
	if got, want := r.sweepRatio(), 0.2; got != want {
		t.Errorf("sweepRatio = %v, want %v", got, want)
	}
	if got, want := r.cpuPerProbe(), 500*time.Microsecond; got != want {
		t.Errorf("cpuPerProbe = %v, want %v", got, want)
	}
	if got, want := r.cpuPerSweep(), time.Second; got != want {
		t.Errorf("cpuPerSweep = %v, want %v", got, want)
	}
	if got := (probeResult{}).cpuPerProbe(); got != 0 {
		t.Errorf("cpuPerProbe without probes = %v, want 0", got)
	}

	var b strings.Builder
	printProbeTable(&b, r)
	const row = "| 2000 | 2000/2000 | 30s | 32 | 6.00 s | 0.200 | 1.00 s | 0.500 ms | 2.00 ms | 61 MB |\n"
	if !strings.Contains(b.String(), "sweep duration (max of 3)") {
		t.Errorf("printProbeTable header does not say how many sweeps:\n%s", b.String())
	}
	if !strings.Contains(b.String(), row) {
		t.Errorf("printProbeTable lacks the row\n%s\ngot:\n%s", row, b.String())
	}
}

func TestMedianF(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := medianF(tc.in); got != tc.want {
			t.Errorf("medianF(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
