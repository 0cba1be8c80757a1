package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// The back-pressure phase: csrguard, with its defaults (no client-side rate
// limit), against an API server whose Priority and Fairness gives it one
// seat. It must slow down without spinning (API requests per CSR bounded,
// 429s retried after the server's Retry-After, not at once) and without
// dropping a CSR (all approved in the end).

const (
	// throttleLevel is the priority level csrguard's requests are put in:
	// one seat, one short queue, nothing borrowed.
	throttleLevel = "bench-csrguard-tiny"
	// ballastLevel is a priority level no request uses. Its shares shrink
	// every other level's: this control plane has 3,000 seats
	// (--max-requests-inflight 2000 + --max-mutating-requests-inflight 1000,
	// for the benchmarks' bursts), which would give even a level of one
	// share 13 seats. With the ballast, throttleLevel gets one; the
	// suggested levels keep tens of seats each and may borrow every seat of
	// the ballast, which lends them all.
	ballastLevel  = "bench-ballast"
	ballastShares = 3000
	// throttleQueueLength is throttleLevel's queue: requests beyond one
	// executing and this many waiting are rejected with 429 at once.
	throttleQueueLength = 4
	// maxRequestsPerCSR is what "does not spin" means: client-go makes at
	// most 11 attempts of one request (10 retries after a 429 or a
	// Retry-After), so an approver that writes each CSR once, reading from
	// its cache, stays below this however often the server refuses it.
	maxRequestsPerCSR = 11
)

// throttle installs the priority levels and the FlowSchema that put
// approverUser at throttleLevel.
func throttle(ctx context.Context, admin kubernetes.Interface) error {
	fc := admin.FlowcontrolV1()
	levels := []*flowcontrolv1.PriorityLevelConfiguration{
		{
			ObjectMeta: metav1.ObjectMeta{Name: throttleLevel},
			Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
				Type: flowcontrolv1.PriorityLevelEnablementLimited,
				Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
					NominalConcurrencyShares: ptr.To[int32](1),
					LendablePercent:          ptr.To[int32](0),
					BorrowingLimitPercent:    ptr.To[int32](0),
					LimitResponse: flowcontrolv1.LimitResponse{
						Type: flowcontrolv1.LimitResponseTypeQueue,
						Queuing: &flowcontrolv1.QueuingConfiguration{
							Queues: 1, HandSize: 1, QueueLengthLimit: throttleQueueLength,
						},
					},
				},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: ballastLevel},
			Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
				Type: flowcontrolv1.PriorityLevelEnablementLimited,
				Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
					NominalConcurrencyShares: ptr.To[int32](ballastShares),
					LendablePercent:          ptr.To[int32](100),
					LimitResponse:            flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject},
				},
			},
		},
	}
	for _, pl := range levels {
		if _, err := fc.PriorityLevelConfigurations().Create(ctx, pl, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create priority level %s: %w", pl.Name, err)
		}
	}
	fs := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: throttleLevel},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: throttleLevel},
			// Before the suggested service-accounts schema (9000).
			MatchingPrecedence:  100,
			DistinguisherMethod: &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindUser, User: &flowcontrolv1.UserSubject{Name: approverUser}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{
					Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"},
					Namespaces: []string{"*"}, ClusterScope: true,
				}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
			}},
		},
	}
	if _, err := fc.FlowSchemas().Create(ctx, fs, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create flow schema %s: %w", fs.Name, err)
	}
	return nil
}

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
		b.n, throttleQueueLength, throttleLevel)
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
