package main

import (
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

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

func TestParseMetricsThrottled(t *testing.T) {
	const exposition = `rest_client_requests_total{code="200",host="h:6443",method="PUT"} 10
rest_client_requests_total{code="429",host="h:6443",method="PUT"} 3
rest_client_requests_total{code="429",host="h:6443",method="GET"} 1
`
	got, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if got.throttled != 4 {
		t.Errorf("throttled = %v, want 4", got.throttled)
	}
}

func TestParseAPIServerMetrics(t *testing.T) {
	const exposition = `# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="approval",verb="PUT",version="v1",le="0.005"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="approval",verb="PUT",version="v1",le="0.01"} 90
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="approval",verb="PUT",version="v1",le="+Inf"} 100
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="approval",verb="PUT",version="v1"} 0.8
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="approval",verb="PUT",version="v1"} 100
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="",verb="POST",version="v1",le="0.005"} 4
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="",verb="POST",version="v1",le="0.01"} 4
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="",verb="POST",version="v1",le="+Inf"} 5
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="",verb="POST",version="v1"} 0.1
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="certificates.k8s.io",resource="certificatesigningrequests",scope="resource",subresource="",verb="POST",version="v1"} 5
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="WATCH",version="v1",le="+Inf"} 7
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="PUT",version="v1",le="0.005"} 1
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="PUT",version="v1",le="0.01"} 1
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="PUT",version="v1",le="+Inf"} 1
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="PUT",version="v1"} 0.001
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="PUT",version="v1"} 1
apiserver_request_duration_seconds_bucketeer{verb="PUT"} 99
apiserver_flowcontrol_rejected_requests_total{flow_schema="service-accounts",priority_level="workload-low",reason="queue-full"} 3
apiserver_flowcontrol_rejected_requests_total{flow_schema="service-accounts",priority_level="workload-low",reason="time-out"} 2
`
	got, err := parseAPIServerMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	inf := math.Inf(1)
	want := apiserverScrape{
		approvals: bucketHistogram{buckets: map[float64]float64{0.005: 10, 0.01: 90, inf: 100}, sum: 0.8, count: 100},
		others:    bucketHistogram{buckets: map[float64]float64{0.005: 5, 0.01: 5, inf: 6}, sum: 0.101, count: 6},
		rejected:  map[string]float64{"workload-low": 5},
	}
	if diff := cmp.Diff(got, want, cmp.AllowUnexported(apiserverScrape{}, bucketHistogram{}), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("parseAPIServerMetrics (-got +want):\n%s", diff)
	}
	if _, err := parseAPIServerMetrics(strings.NewReader("go_goroutines 3\n")); err == nil {
		t.Error("parseAPIServerMetrics without request durations: got nil error")
	}
}

func TestBucketHistogram(t *testing.T) {
	inf := math.Inf(1)
	h := bucketHistogram{buckets: map[float64]float64{0.005: 10, 0.01: 90, 0.1: 99, inf: 100}, sum: 1, count: 100}
	tests := []struct {
		name string
		h    bucketHistogram
		q    float64
		want time.Duration
	}{
		// Rank 50 lies in (0.005, 0.01], 40 of its 80: 5 ms + 5 ms × 0.5.
		{"p50_interpolated", h, 0.5, 7500 * time.Microsecond},
		// Rank 5 lies in the first bucket, whose lower bound is taken as 0.
		{"p05_first_bucket", h, 0.05, 2500 * time.Microsecond},
		{"p99_at_bound", h, 0.99, 100 * time.Millisecond},
		// Rank 99.5 lies in +Inf: the highest finite bound.
		{"p995_in_inf", h, 0.995, 100 * time.Millisecond},
		{"empty", bucketHistogram{buckets: map[float64]float64{inf: 0}}, 0.99, 0},
		{"no_buckets", bucketHistogram{}, 0.99, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.quantile(tc.q); got != tc.want {
				t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}

	before := bucketHistogram{buckets: map[float64]float64{0.005: 10, 0.01: 10, 0.1: 10, inf: 10}, sum: 0.05, count: 10}
	d := h.sub(before)
	want := bucketHistogram{buckets: map[float64]float64{0.005: 0, 0.01: 80, 0.1: 89, inf: 90}, sum: 0.95, count: 90}
	if diff := cmp.Diff(d, want, cmp.AllowUnexported(bucketHistogram{}), cmpopts.EquateApprox(0, 1e-9)); diff != "" {
		t.Errorf("sub (-got +want):\n%s", diff)
	}
	if got, want := h.mean(), 10*time.Millisecond; got != want {
		t.Errorf("mean = %v, want %v", got, want)
	}
	if got := (bucketHistogram{}).mean(); got != 0 {
		t.Errorf("mean of nothing = %v, want 0", got)
	}
}

func TestAPIServerCostSince(t *testing.T) {
	before := apiserverSample{
		metrics: apiserverScrape{rejected: map[string]float64{"workload-low": 2}},
		usage:   procUsage{cpu: time.Second},
	}
	after := apiserverSample{
		metrics: apiserverScrape{rejected: map[string]float64{"workload-low": 5, "bench-tiny": 7}},
		usage:   procUsage{cpu: 3500 * time.Millisecond},
	}
	c := after.since(before)
	if c.cpu != 2500*time.Millisecond || c.rejected != 10 {
		t.Errorf("since = cpu %v, rejected %v; want 2.5s, 10", c.cpu, c.rejected)
	}
}

func TestSizesSet(t *testing.T) {
	tests := []struct {
		in      string
		want    sizes
		wantErr bool
	}{
		{in: "2000", want: sizes{2000}},
		{in: "2000,10000", want: sizes{2000, 10000}},
		{in: " 10000, 2000 ", want: sizes{10000, 2000}},
		{in: "0", wantErr: true},
		{in: "2000,", wantErr: true},
		{in: "2k", wantErr: true},
		{in: "2000,2000", wantErr: true},
	}
	for _, tc := range tests {
		var s sizes
		err := s.Set(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("Set(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(s, tc.want); diff != "" {
			t.Errorf("Set(%q) (-got +want):\n%s", tc.in, diff)
		}
		if !tc.wantErr && s.String() != strings.ReplaceAll(strings.TrimSpace(tc.in), " ", "") {
			t.Errorf("String() = %q after Set(%q)", s.String(), tc.in)
		}
	}
}

func TestSummary(t *testing.T) {
	round := func(guardTotal, cappedTotal, ceilingTotal time.Duration, rss float64) []result {
		return []result{
			{approver: csrguardDefaults, total: guardTotal, burst: guardTotal / 2, p99: guardTotal / 4, peakRSSMB: rss},
			{approver: csrguardCapped, total: cappedTotal, burst: cappedTotal / 4},
			{approver: nocheck, total: ceilingTotal, burst: ceilingTotal / 2},
		}
	}
	small := sizeSummary{n: 2000, rounds: [][]result{
		round(10*time.Second, 15*time.Second, 10*time.Second, 60),
		round(11*time.Second, 14*time.Second, 10*time.Second, 62),
		round(12*time.Second, 20*time.Second, 10*time.Second, 61),
	}}
	large := sizeSummary{n: 10000, rounds: [][]result{
		round(40*time.Second, 80*time.Second, 40*time.Second, 80),
		round(44*time.Second, 88*time.Second, 40*time.Second, 81),
		round(40*time.Second, 84*time.Second, 40*time.Second, 82),
	}, probes: &probeResult{nodes: 10000, interval: 30 * time.Second, sweeps: []time.Duration{9 * time.Second}, doctorTime: 12 * time.Second}}

	if got, want := small.ratio(csrguardDefaults), 1.1; math.Abs(got-want) > 1e-9 {
		t.Errorf("ratio = %v, want %v", got, want)
	}
	// (81 − 61) MB over 8,000 nodes.
	if got, ok := rssPerNodeKiB(small, large); !ok || math.Abs(got-20*1024/8000.0) > 1e-9 {
		t.Errorf("rssPerNodeKiB = %v, %v; want %v, true", got, ok, 20*1024/8000.0)
	}
	if _, ok := rssPerNodeKiB(small, small); ok {
		t.Error("rssPerNodeKiB of a size with itself: ok")
	}

	var b strings.Builder
	printSummary(&b, []sizeSummary{small, large})
	for _, want := range []string{
		"| N | csrguard, defaults ÷ ceiling | csrguard, --kube-api-qps=300 --kube-api-burst=600 ÷ ceiling | latency p99 |",
		"| 2000 | 1.10× | 1.50× | 2750 ms | 61 MB | — | — | — |\n",
		"| 10000 | 1.00× | 2.10× | 10000 ms | 81 MB | 2.56 KiB (from N=2000) | 9.00 s ÷ 30s = 0.300 (10000 kubelets) | 12.00 s |\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printSummary lacks\n%s\ngot:\n%s", want, b.String())
		}
	}
}
