package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// requestCounts are an approver's rest_client_requests_total summed over
// status codes and hosts, by HTTP method.
type requestCounts map[string]float64

// histogram is the sum and count of a Prometheus histogram, summed over its
// label values.
type histogram struct{ sum, count float64 }

// meanSince is the mean of the observations made since before.
func (h histogram) meanSince(before histogram) time.Duration {
	if h.count == before.count {
		return 0
	}
	return time.Duration((h.sum - before.sum) / (h.count - before.count) * float64(time.Second))
}

// scrape is what the benchmark reads from an approver's controller-runtime
// /metrics endpoint, which serves client-go's request counter and the
// controller and workqueue histograms for every manager.
type scrape struct {
	requests requestCounts
	// throttled counts the requests the API server answered 429 Too Many
	// Requests (Priority and Fairness rejecting them); client-go retries
	// them after the Retry-After the server sent, each retry counted again.
	throttled float64
	// queued is how long CSRs waited in the controller's workqueue,
	// reconcile how long the reconciler took: together they say whether a
	// slow approval was waiting for a worker or being worked on.
	queued, reconcile histogram
	// probe is csrguard's kubelet monitor; empty for the no-check approver.
	probe probeScrape
}

// probeScrape is what csrguard's kubelet monitor exports about its sweeps.
type probeScrape struct {
	// sweepDuration and sweepEnd (Unix seconds, whole) describe the last
	// sweep; sweepEnd is 0 until the first sweep has finished.
	sweepDuration time.Duration
	sweepEnd      float64
	// probes are the TLS probes so far, one observation per node per sweep.
	probes histogram
	// results counts nodes by their latest probe result (ok, refused, …);
	// sansMatch counts nodes whose certificate carries exactly their SANs.
	results   map[string]int
	sansMatch int
}

// The metrics read, and the prefixes of the histograms' series.
const (
	requestsMetric  = "rest_client_requests_total"
	queuedMetric    = "workqueue_queue_duration_seconds"
	reconcileMetric = "controller_runtime_reconcile_time_seconds"

	sweepDurationMetric = "csrguard_kubelet_probe_sweep_duration_seconds"
	sweepEndMetric      = "csrguard_kubelet_probe_sweep_timestamp_seconds"
	probeMetric         = "csrguard_kubelet_probe_duration_seconds"
	probeResultMetric   = "csrguard_kubelet_probe_result"
	sansMatchMetric     = "csrguard_kubelet_serving_cert_sans_match"
)

func scrapeMetrics(ctx context.Context, url string) (scrape, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return scrape{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return scrape{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return scrape{}, fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	s, err := parseMetrics(resp.Body)
	if err != nil {
		return scrape{}, fmt.Errorf("parse %s: %w", url, err)
	}
	return s, nil
}

// parseMetrics reads a scrape from Prometheus text exposition. It reads only
// the series above, whose label values (status codes, host:port, HTTP
// methods, controller names, node names, probe results, histogram bounds)
// never hold quotes or commas, so a full exposition parser — and the module
// dependency it would bring — is not needed.
func parseMetrics(r io.Reader) (scrape, error) {
	s := scrape{requests: requestCounts{}, probe: probeScrape{results: map[string]int{}}}
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		var labels, value string
		if strings.Contains(name, " ") { // no labels: "name value"
			name, value, _ = strings.Cut(line, " ")
		} else {
			var ok bool
			if labels, value, ok = strings.Cut(rest, "}"); !ok {
				return scrape{}, fmt.Errorf("malformed sample %q", line)
			}
		}
		switch name {
		case requestsMetric, queuedMetric + "_sum", queuedMetric + "_count", reconcileMetric + "_sum", reconcileMetric + "_count",
			sweepDurationMetric, sweepEndMetric, probeMetric + "_sum", probeMetric + "_count", probeResultMetric, sansMatchMetric:
		default:
			continue
		}
		fields := strings.Fields(value) // the value, then an optional timestamp
		if len(fields) == 0 {
			return scrape{}, fmt.Errorf("malformed sample %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return scrape{}, fmt.Errorf("value of %q: %w", line, err)
		}
		switch name {
		case requestsMetric:
			found = true
			s.requests[label(labels, "method")] += v
			if label(labels, "code") == "429" {
				s.throttled += v
			}
		case queuedMetric + "_sum":
			s.queued.sum += v
		case queuedMetric + "_count":
			s.queued.count += v
		case reconcileMetric + "_sum":
			s.reconcile.sum += v
		case reconcileMetric + "_count":
			s.reconcile.count += v
		case sweepDurationMetric:
			s.probe.sweepDuration = time.Duration(v * float64(time.Second))
		case sweepEndMetric:
			s.probe.sweepEnd = v
		case probeMetric + "_sum":
			s.probe.probes.sum += v
		case probeMetric + "_count":
			s.probe.probes.count += v
		case probeResultMetric:
			// Each node has one series, set to 1, for its latest result.
			if v == 1 {
				s.probe.results[label(labels, "result")]++
			}
		case sansMatchMetric:
			if v == 1 {
				s.probe.sansMatch++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return scrape{}, err
	}
	if !found {
		return scrape{}, fmt.Errorf("no %s samples", requestsMetric)
	}
	return s, nil
}

// label returns the value of label name in labels (`a="x",b="y"`).
func label(labels, name string) string {
	for l := range strings.SplitSeq(labels, ",") {
		if v, ok := strings.CutPrefix(l, name+`="`); ok {
			return strings.TrimSuffix(v, `"`)
		}
	}
	return ""
}

// sub returns the reads (GET) and writes (every other method) made between
// before and c.
func (c requestCounts) sub(before requestCounts) (reads, writes float64) {
	for method, v := range c {
		d := v - before[method]
		if method == http.MethodGet {
			reads += d
		} else {
			writes += d
		}
	}
	return reads, writes
}

// delta lists the requests made between before and c by method, e.g.
// "GET 12, PUT 2000".
func (c requestCounts) delta(before requestCounts) string {
	var parts []string
	for _, method := range slices.Sorted(maps.Keys(c)) {
		if d := c[method] - before[method]; d != 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", method, d))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// procUsage is a process's resource use so far.
type procUsage struct {
	peakRSSMB float64
	cpu       time.Duration
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports; reading it properly needs
// sysconf and so cgo.
const clockTicks = 100

// readProcUsage reads peak RSS (VmHWM) and user+system CPU time of a live
// process from /proc.
func readProcUsage(pid int) (procUsage, error) {
	var u procUsage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return u, fmt.Errorf("parse VmHWM %q: %w", v, err)
			}
			u.peakRSSMB = kb / 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// The command name in field 2 may hold spaces and parentheses; fields are
	// counted from after its closing parenthesis, where field 3 is index 0.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return u, fmt.Errorf("short /proc/%d/stat: %q", pid, s)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime (field 14) and stime (field 15)
		t, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return u, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
		}
		ticks += t
	}
	u.cpu = time.Duration(ticks) * time.Second / clockTicks
	return u, nil
}

// percentile returns the nearest-rank q-quantile of d, or 0 for none.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// printTable writes the results as a Markdown table. When the ceiling ran,
// the "× ceiling" column divides each approver's headline number, total
// time, by the ceiling's, and a last row per csrguard variant divides each
// of its numbers by the ceiling's.
func printTable(w io.Writer, o options, results []result) {
	ceiling := find(results, nocheck)
	fmt.Fprintf(w, "%d kubelet-serving CSRs, one per node, created in a burst by %d clients; approvers run with --workers=%d as a ServiceAccount; %d CPUs shared by the control plane, the approver and the load generator.\n\n",
		o.n, o.clients, o.workers, runtime.NumCPU())
	fmt.Fprintln(w, "| approver | approved | denied | burst created in | all approved after | × ceiling | drained after burst | latency p50 | latency p99 | API reads/CSR | API writes/CSR | 429s | peak RSS | CPU time | API server CPU | server p99: approvals / others |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		ratio := "—"
		if ceiling != nil && ceiling.total > 0 {
			ratio = fmt.Sprintf("%.2f×", r.total.Seconds()/ceiling.total.Seconds())
		}
		fmt.Fprintf(w, "| %s | %d/%d | %d | %s | %s | %s | %s | %s | %s | %.3f | %.3f | %.0f | %.0f MB | %.2f s | %.2f s | %s / %s |\n",
			describe(r.approver), r.approved, o.n, r.denied, secs(r.burst), secs(r.total), ratio, secs(r.drain()),
			ms(r.p50), ms(r.p99), r.reads, r.writes, r.throttled, r.peakRSSMB, r.cpu.Seconds(),
			r.server.cpu.Seconds(), ms(r.server.approvals.quantile(0.99)), ms(r.server.others.quantile(0.99)))
	}
	if ceiling != nil {
		for _, name := range csrguardVariants {
			if g := find(results, name); g != nil {
				ratioRow(w, g, ceiling)
			}
		}
	}
	fmt.Fprintln(w, "\nAPI reads are GET requests (lists and watches included); writes are POST/PUT/PATCH/DELETE, e.g. approvals and Events; 429s are the approver's requests the API server's Priority and Fairness rejected (retries included).")
	fmt.Fprintln(w, "Latency is approval seen by an admin watch − CSR create returned; totals run from the first create.")
	fmt.Fprintln(w, "Drained after burst is all approved after − burst created in: the approver's own lag, less sensitive than the total to how fast this machine let the burst be created.")
	fmt.Fprintln(w, "API server CPU and the server p99s (apiserver_request_duration_seconds; approvals are PUT certificatesigningrequests/approval, others every other request but WATCH and CONNECT, chiefly the nodes' CSR creates) run from the first create to the last approval.")
}

// find returns the result of approver, or nil.
func find(results []result, approver string) *result {
	for i := range results {
		if results[i].approver == approver {
			return &results[i]
		}
	}
	return nil
}

// ratioRow divides each of a csrguard variant's numbers by the ceiling's.
func ratioRow(w io.Writer, guard, ceiling *result) {
	div := func(a, b float64) string {
		if b == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	// A handful of requests in the whole run (a re-list, a periodic
	// discovery) is no per-CSR cost; a ratio of them would only be noise.
	perCSR := func(a, b float64) string {
		if a < 0.01 && b < 0.01 {
			return "—"
		}
		return div(a, b)
	}
	fmt.Fprintf(w, "| %s ÷ ceiling | | | %s | %s | | %s | %s | %s | %s | %s | | %s | %s | %s | %s / %s |\n", guard.approver,
		div(guard.burst.Seconds(), ceiling.burst.Seconds()),
		div(guard.total.Seconds(), ceiling.total.Seconds()),
		div(guard.drain().Seconds(), ceiling.drain().Seconds()),
		div(guard.p50.Seconds(), ceiling.p50.Seconds()),
		div(guard.p99.Seconds(), ceiling.p99.Seconds()),
		perCSR(guard.reads, ceiling.reads), perCSR(guard.writes, ceiling.writes),
		div(guard.peakRSSMB, ceiling.peakRSSMB), div(guard.cpu.Seconds(), ceiling.cpu.Seconds()),
		div(guard.server.cpu.Seconds(), ceiling.server.cpu.Seconds()),
		div(guard.server.approvals.quantile(0.99).Seconds(), ceiling.server.approvals.quantile(0.99).Seconds()),
		div(guard.server.others.quantile(0.99).Seconds(), ceiling.server.others.quantile(0.99).Seconds()))
}

func describe(approver string) string {
	switch approver {
	case nocheck:
		return "no-check approver (ceiling, no client-side limit)"
	case csrguardUnlimited, csrguardCapped:
		return "csrguard, " + strings.Join(variantFlags[approver], " ")
	}
	return "csrguard, defaults"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// probeResult is what the probe phase measured.
type probeResult struct {
	nodes, concurrency int
	interval           time.Duration
	// sweeps are the durations csrguard reported for each sweep seen to end.
	sweeps []time.Duration
	// cpu is csrguard's CPU time, and probes its probe-duration histogram,
	// between the first and the last sweep seen to end: whole sweeps only,
	// with everything else csrguard did meanwhile.
	cpu    time.Duration
	probes histogram
	// results and sansMatch are from the last sweep.
	results   map[string]int
	sansMatch int
	peakRSSMB float64
	// scrapes is how often the benchmark scraped csrguard within the CPU
	// window, and scrapeCPU what one scrape costs csrguard.
	scrapes   int
	scrapeCPU time.Duration
	// doctor* describe one `csrguard doctor` run against the same cluster.
	doctorTime                time.Duration
	doctorProgress            bool
	doctorNodes, doctorProbed int
}

// maxSweep is the longest sweep seen.
func (r probeResult) maxSweep() (m time.Duration) {
	for _, d := range r.sweeps {
		m = max(m, d)
	}
	return m
}

// sweepRatio is the longest sweep over the interval: below 1, every node is
// probed again before its last result is an interval old.
func (r probeResult) sweepRatio() float64 { return r.maxSweep().Seconds() / r.interval.Seconds() }

// cpuPerProbe is csrguard's CPU time per node probed, sweep overhead
// (listing Nodes and CSRs, exporting per-node series) included.
func (r probeResult) cpuPerProbe() time.Duration {
	if r.probes.count == 0 {
		return 0
	}
	return time.Duration(float64(r.cpu) / r.probes.count)
}

// cpuPerSweep is cpuPerProbe for every node.
func (r probeResult) cpuPerSweep() time.Duration { return r.cpuPerProbe() * time.Duration(r.nodes) }

// printProbeTable writes the probe phase's result as a Markdown table.
func printProbeTable(w io.Writer, r probeResult) {
	fmt.Fprintf(w, "csrguard's kubelet monitor probing %d nodes every --probe-interval=%s (production default 3m; short here to see %d sweeps quickly), --probe-concurrency=%d; %d CPUs shared by the control plane, csrguard and the kubelet stand-ins.\n\n",
		r.nodes, r.interval, len(r.sweeps), r.concurrency, runtime.NumCPU())
	fmt.Fprintf(w, "| nodes | probes ok | probe interval | concurrency | sweep duration (max of %d) | sweep ÷ interval | CPU per sweep | CPU per node probe | mean handshake | peak RSS |\n", len(r.sweeps))
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %d | %d/%d | %s | %d | %s | %.3f | %s | %.3f ms | %.2f ms | %.0f MB |\n",
		r.nodes, r.results["ok"], r.nodes, r.interval, r.concurrency, secs(r.maxSweep()), r.sweepRatio(),
		secs(r.cpuPerSweep()), float64(r.cpuPerProbe())/float64(time.Millisecond),
		float64(r.probes.meanSince(histogram{}))/float64(time.Millisecond), r.peakRSSMB)
	fmt.Fprintf(w, "\nSweeps as csrguard timed them: %s.\n", joinSecs(r.sweeps))
	fmt.Fprintln(w, "The kubelets are stand-ins in the benchmark process: one TLS listener per node at its own InternalIP in 198.18.0.0/15 (in a private network namespace) and port 10250, each with its own ECDSA P-256 certificate (CN system:node:NAME, SANs the Node's) from a throwaway CA. They complete the TLS handshake and nothing else, which is all of a kubelet the probe exercises; their half of every handshake runs on the same CPUs as csrguard, so sweeps here are slower than against remote kubelets.")
	fmt.Fprintf(w, "CPU per node probe is csrguard's CPU time (utime+stime) from the end of the first sweep seen to the end of the last, over the probes in between: the whole sweep (listing Nodes and CSRs from the cache, exporting per-node series) included, and the benchmark's %d /metrics scrapes to see the sweeps end (%.1f ms CPU each, %s of the total).\n",
		r.scrapes, float64(r.scrapeCPU)/float64(time.Millisecond), secs(r.scrapeCPU*time.Duration(r.scrapes)))
	fmt.Fprintln(w, "Mean handshake is csrguard's own probe histogram over the same sweeps: dial and TLS handshake, waits for a CPU included.")
	if r.doctorTime > 0 {
		progress := "no"
		if r.doctorProgress {
			progress = "yes"
		}
		fmt.Fprintf(w, "\n`csrguard doctor -o json` on the same cluster (listing %d nodes and their CSRs, probing %d kubelets from the benchmark host, concurrency 64): %s; probe progress shown on stderr: %s.\n",
			r.doctorNodes, r.doctorProbed, secs(r.doctorTime), progress)
	}
}

// joinSecs formats durations as "1.23 s, 4.56 s".
func joinSecs(d []time.Duration) string {
	s := make([]string, len(d))
	for i, x := range d {
		s[i] = secs(x)
	}
	return strings.Join(s, ", ")
}

// printMedians summarises several rounds: per approver the medians of the
// headline numbers, and per csrguard variant the median of its per-round
// ratios to the ceiling.
func printMedians(w io.Writer, rounds [][]result) {
	per := map[string][]result{}
	for _, results := range rounds {
		for _, r := range results {
			per[r.approver] = append(per[r.approver], r)
		}
	}
	fmt.Fprintf(w, "\nMedians over %d rounds:\n\n", len(rounds))
	fmt.Fprintln(w, "| approver | all approved after | drained after burst | latency p99 | peak RSS | API writes/CSR | 429s | API server CPU | server p99: approvals / others |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, name := range append(slices.Clone(csrguardVariants), nocheck) {
		rs := per[name]
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.0f MB | %.3f | %.0f | %s | %s / %s |\n", describe(name),
			secs(medianDur(rs, func(r result) time.Duration { return r.total })),
			secs(medianDur(rs, func(r result) time.Duration { return r.drain() })),
			ms(medianDur(rs, func(r result) time.Duration { return r.p99 })),
			median(rs, func(r result) float64 { return r.peakRSSMB }),
			median(rs, func(r result) float64 { return r.writes }),
			median(rs, func(r result) float64 { return r.throttled }),
			secs(medianDur(rs, func(r result) time.Duration { return r.server.cpu })),
			ms(medianDur(rs, func(r result) time.Duration { return r.server.approvals.quantile(0.99) })),
			ms(medianDur(rs, func(r result) time.Duration { return r.server.others.quantile(0.99) })))
	}
	fmt.Fprintln(w)
	for _, name := range csrguardVariants {
		total, drain := ceilingRatios(rounds, name)
		if len(total) > 0 {
			fmt.Fprintf(w, "%s ÷ ceiling, all approved after: median %.2f× (rounds: %s); drained after burst: median %.2f×.\n",
				describe(name), medianF(total), joinRatios(total), medianF(drain))
		}
	}
}

// ceilingRatios returns, for each round where both approver and the ceiling
// ran, approver's "all approved after" and "drained after burst" divided by
// the ceiling's.
func ceilingRatios(rounds [][]result, approver string) (total, drain []float64) {
	for _, results := range rounds {
		g, c := find(results, approver), find(results, nocheck)
		if g != nil && c != nil && c.total > 0 && c.drain() > 0 {
			total = append(total, g.total.Seconds()/c.total.Seconds())
			drain = append(drain, g.drain().Seconds()/c.drain().Seconds())
		}
	}
	return total, drain
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianF(v)
}

func medianDur(rs []result, f func(result) time.Duration) time.Duration {
	return time.Duration(median(rs, func(r result) float64 { return float64(f(r)) }))
}

func joinRatios(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f×", x)
	}
	return strings.Join(s, ", ")
}
