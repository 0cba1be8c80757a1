package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/csrguard/csrguard/test/controlplane"
)

// The API server's side of a run: what an approver's requests cost the
// server, and how long the server took to answer them and everyone else.
// This is what a client-side rate limit would protect, so the bench measures
// it in the same run as the approvers.

// bucketHistogram is a Prometheus histogram with its buckets: cumulative
// counts by upper bound, summed over the series read.
type bucketHistogram struct {
	buckets    map[float64]float64
	sum, count float64
}

// sub returns the observations made between before and h.
func (h bucketHistogram) sub(before bucketHistogram) bucketHistogram {
	d := bucketHistogram{buckets: map[float64]float64{}, sum: h.sum - before.sum, count: h.count - before.count}
	for le, c := range h.buckets {
		d.buckets[le] = c - before.buckets[le]
	}
	return d
}

// mean is the mean observation, 0 for none.
func (h bucketHistogram) mean() time.Duration {
	if h.count == 0 {
		return 0
	}
	return time.Duration(h.sum / h.count * float64(time.Second))
}

// quantile estimates the q-quantile as Prometheus's histogram_quantile does:
// linear interpolation inside the bucket that holds it, the lower bound of
// the first bucket taken as 0, and the highest finite bound for a quantile
// in the +Inf bucket. It is 0 for no observations.
func (h bucketHistogram) quantile(q float64) time.Duration {
	bounds := slices.Sorted(func(yield func(float64) bool) {
		for le := range h.buckets {
			if !yield(le) {
				return
			}
		}
	})
	if len(bounds) == 0 {
		return 0
	}
	total := h.buckets[bounds[len(bounds)-1]]
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		c := h.buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return seconds(lower)
			}
			if c == below {
				return seconds(le)
			}
			return seconds(lower + (le-lower)*(rank-below)/(c-below))
		}
		lower, below = le, c
	}
	return seconds(lower)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// apiserverScrape is what the bench reads from kube-apiserver's /metrics.
type apiserverScrape struct {
	// approvals are the latencies of writes to the CSR approval subresource
	// (PUT certificatesigningrequests/approval): the approvers' one write
	// per CSR. others are every other request but long-running ones
	// (WATCH, CONNECT), chiefly the nodes' CSR creates in a burst: the
	// latency other clients see while an approver runs.
	approvals, others bucketHistogram
	// rejected counts requests Priority and Fairness rejected (429), by
	// priority level.
	rejected map[string]float64
}

// The API server metrics read.
const (
	apiLatencyMetric  = "apiserver_request_duration_seconds"
	apfRejectedMetric = "apiserver_flowcontrol_rejected_requests_total"
)

// parseAPIServerMetrics reads an apiserverScrape from Prometheus text
// exposition. Like parseMetrics it reads only series whose label values hold
// no quotes or commas (verbs, resources, group names, bucket bounds, priority
// levels).
func parseAPIServerMetrics(r io.Reader) (apiserverScrape, error) {
	s := apiserverScrape{
		approvals: bucketHistogram{buckets: map[float64]float64{}},
		others:    bucketHistogram{buckets: map[float64]float64{}},
		rejected:  map[string]float64{},
	}
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, apiLatencyMetric) && !strings.HasPrefix(line, apfRejectedMetric) {
			continue
		}
		name, rest, ok := strings.Cut(line, "{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "}")
		if !ok {
			return s, fmt.Errorf("malformed sample %q", line)
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			return s, fmt.Errorf("malformed sample %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return s, fmt.Errorf("value of %q: %w", line, err)
		}
		if name == apfRejectedMetric {
			s.rejected[label(labels, "priority_level")] += v
			continue
		}
		var h *bucketHistogram
		switch verb := label(labels, "verb"); {
		case verb == "PUT" && label(labels, "resource") == "certificatesigningrequests" && label(labels, "subresource") == "approval":
			h = &s.approvals
		case verb == "WATCH" || verb == "CONNECT":
			continue
		default:
			h = &s.others
		}
		switch name {
		case apiLatencyMetric + "_bucket":
			found = true
			le, err := strconv.ParseFloat(label(labels, "le"), 64)
			if err != nil {
				return s, fmt.Errorf("bucket bound of %q: %w", line, err)
			}
			h.buckets[le] += v
		case apiLatencyMetric + "_sum":
			h.sum += v
		case apiLatencyMetric + "_count":
			h.count += v
		}
	}
	if err := sc.Err(); err != nil {
		return s, err
	}
	if !found {
		return s, fmt.Errorf("no %s samples", apiLatencyMetric)
	}
	return s, nil
}

// apiserverSample is the API server's state at one moment of a run.
type apiserverSample struct {
	metrics apiserverScrape
	usage   procUsage
}

// sampleAPIServer scrapes kube-apiserver's /metrics as an administrator and
// reads its CPU time from /proc. A scrape costs the server tens of
// milliseconds of CPU, so the sample opening a window (start) reads the CPU
// time after scraping and the one closing it before, leaving both scrapes
// out of the window.
func sampleAPIServer(ctx context.Context, cp *controlplane.ControlPlane, admin kubernetes.Interface, start bool) (apiserverSample, error) {
	var s apiserverSample
	readCPU := func() error {
		pid := cp.PID("kube-apiserver")
		if pid == 0 {
			return errors.New("kube-apiserver is not running")
		}
		u, err := readProcUsage(pid)
		if err != nil {
			return fmt.Errorf("read kube-apiserver resource usage: %w", err)
		}
		s.usage = u
		return nil
	}
	if !start {
		if err := readCPU(); err != nil {
			return s, err
		}
	}
	raw, err := admin.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return s, fmt.Errorf("scrape kube-apiserver metrics: %w", err)
	}
	if s.metrics, err = parseAPIServerMetrics(bytes.NewReader(raw)); err != nil {
		return s, fmt.Errorf("parse kube-apiserver metrics: %w", err)
	}
	if start {
		if err := readCPU(); err != nil {
			return s, err
		}
	}
	return s, nil
}

// apiserverCost is what the API server spent between two samples.
type apiserverCost struct {
	cpu               time.Duration
	approvals, others bucketHistogram
	rejected          float64
}

func (after apiserverSample) since(before apiserverSample) apiserverCost {
	c := apiserverCost{
		cpu:       after.usage.cpu - before.usage.cpu,
		approvals: after.metrics.approvals.sub(before.metrics.approvals),
		others:    after.metrics.others.sub(before.metrics.others),
	}
	for pl, v := range after.metrics.rejected {
		c.rejected += v - before.metrics.rejected[pl]
	}
	return c
}
