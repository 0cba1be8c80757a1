package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/csrguard/csrguard/test/controlplane"
)

// The back-pressure phase: csrguard, with its defaults (no client-side rate
// limit), against an API server whose Priority and Fairness gives it one
// seat. It must slow down without spinning (API requests per CSR bounded,
// 429s retried after the server's Retry-After, not at once) and without
// dropping a CSR (all approved in the end).

// throttleQueueLength is the queue of csrguard's priority level: requests
// beyond one executing and this many waiting are rejected with 429 at once.
const throttleQueueLength = 4

// maxRequestsPerCSR is what "does not spin" means: client-go makes at most
// 11 attempts of one request (10 retries after a 429 or a Retry-After), so an
// approver that writes each CSR once, reading from its cache, stays below
// this however often the server refuses it.
const maxRequestsPerCSR = 11

// backpressureResult is what the back-pressure phase measured.
type backpressureResult struct {
	n int
	r result
}

// benchBackpressure runs csrguard with its defaults on a fresh control plane
// whose Priority and Fairness throttles it (throttle), and checks that it
// neither dropped a CSR nor spun.
func benchBackpressure(ctx context.Context, o options) (*backpressureResult, error) {
	o.n, o.throttle = o.backpressureNodes, true
	o.dir = filepath.Join(o.dir, "backpressure")
	r, err := benchApprover(ctx, o, csrguardDefaults)
	if r == nil {
		return nil, err
	}
	b := &backpressureResult{n: o.n, r: *r}
	if err != nil {
		return b, err
	}
	switch {
	case r.server.rejected == 0 && r.throttled == 0:
		return b, fmt.Errorf("priority and fairness never rejected csrguard: the phase shows nothing; see %s", filepath.Join(o.dir, csrguardDefaults, "logs"))
	case r.reads+r.writes > maxRequestsPerCSR:
		return b, fmt.Errorf("csrguard made %.1f API requests per CSR, more than %d: it spins when throttled", r.reads+r.writes, maxRequestsPerCSR)
	}
	return b, nil
}

// printBackpressureTable writes the back-pressure phase's result as a
// Markdown table.
func printBackpressureTable(w io.Writer, b backpressureResult) {
	r := b.r
	fmt.Fprintf(w, "Back-pressure: csrguard with its defaults (no client-side limit) approving %d CSRs, its requests in a Priority and Fairness level of one seat and a queue of %d (FlowSchema and PriorityLevelConfiguration %s).\n\n",
		b.n, throttleQueueLength, controlplane.ThrottleLevel)
	fmt.Fprintln(w, "| CSRs | approved | denied | all approved after | latency p99 | API requests/CSR | 429s/CSR | rejected by the API server | API server CPU | server p99: approvals |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	perCSR := func(v float64) float64 {
		if r.approved == 0 {
			return 0
		}
		return v / float64(r.approved)
	}
	fmt.Fprintf(w, "| %d | %d | %d | %s | %s | %.3f | %.3f | %.0f | %.2f s | %s |\n",
		b.n, r.approved, r.denied, secs(r.total), ms(r.p99), r.reads+r.writes, perCSR(r.throttled), r.server.rejected,
		r.server.cpu.Seconds(), ms(r.server.approvals.quantile(0.99)))
	fmt.Fprintf(w, "\nAPI requests/CSR count every attempt, 429s and their retries included; \"does not spin\" is at most %d (one write, retried at most 10 times by client-go).\n", maxRequestsPerCSR)
}
