package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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
`
	got, err := parseMetrics(strings.NewReader(exposition))
	if err != nil {
		t.Fatal(err)
	}
	want := scrape{
		requests:  requestCounts{"GET": 42, "POST": 7, "PUT": 2000},
		queued:    histogram{sum: 2, count: 4},
		reconcile: histogram{sum: 0.5, count: 10},
	}
	if diff := cmp.Diff(got, want, cmp.AllowUnexported(scrape{}, histogram{})); diff != "" {
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
