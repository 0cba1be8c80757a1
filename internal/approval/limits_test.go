package approval

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// The reconciler's limits: the per-node rate limit and the global breaker
// hold approvals the policy allows; window_test.go tests the window itself.

func TestReconcileWriteErrorKeepsRateLimit(t *testing.T) {
	csr := csrtest.New(t)
	cfg := enforce()
	cfg.NodeLimit = Limit{Max: 1, Window: time.Hour}
	cfg.Breaker = Limit{Max: 1, Window: time.Hour}
	f := newFixture(t, cfg, nodeA(), csr)
	f.writer.err = apierrors.NewServerTimeout(schema.GroupResource{Group: certificatesv1.GroupName, Resource: "certificatesigningrequests"}, "update", 1)
	if _, err := f.reconcile(t, csr.Name); err == nil {
		t.Fatal("Reconcile() error = nil, want the write error")
	}

	// The failed write used up neither the node's nor the cluster's budget: the retry approves.
	f.writer.err = nil
	if diff := cmp.Diff(f.mustReconcile(t, csr.Name), ctrl.Result{}); diff != "" {
		t.Errorf("Reconcile() retry result mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Applied, writesHeader, `csrguard_csr_writes_total{verdict="approve"} 1
`)
}

func TestReconcileNodeRateLimit(t *testing.T) {
	// Each CSR of node-a is filed after the one before was approved, as
	// rotations are: each is the node's live one when it is decided.
	a1 := csrtest.New(t, csrtest.Name("csr-node-a-1"))
	a2 := csrtest.New(t, csrtest.Name("csr-node-a-2"), csrtest.CreatedAt(csrtest.Created.Add(time.Minute)))
	a3 := csrtest.New(t, csrtest.Name("csr-node-a-3"), csrtest.CreatedAt(csrtest.Created.Add(2*time.Minute)))
	b1 := csrtest.New(t, csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.11"))
	cfg := enforce()
	cfg.NodeLimit = Limit{Max: 2, Window: time.Hour}
	f := newFixture(t, cfg, nodeA(), nodeB(), a1, b1)

	f.mustReconcile(t, a1.Name)
	f.clock.Step(time.Minute)
	f.file(t, a2)
	f.mustReconcile(t, a2.Name)
	f.clock.Step(time.Minute)
	f.file(t, a3)

	// The third approval for node-a within the hour waits until the first leaves the window.
	if diff := cmp.Diff(f.mustReconcile(t, a3.Name), ctrl.Result{RequeueAfter: 58 * time.Minute}); diff != "" {
		t.Errorf("Reconcile(%q) result mismatch (-got +want):\n%s", a3.Name, diff)
	}
	held := policy.Decision{Reason: ReasonRateLimited, Message: `rate limit: node "node-a" had 2 approvals in the last 1h0m0s`}
	wantEvents := []string{csrEvent(corev1.EventTypeNormal, servingcsr.EventHeld, held), nodeEvent(corev1.EventTypeNormal, servingcsr.EventHeld, a3.Name, held)}
	if diff := cmp.Diff(f.events(), wantEvents); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	// Other nodes have their own budget.
	f.mustReconcile(t, b1.Name)

	f.clock.Step(58*time.Minute - time.Second)
	if diff := cmp.Diff(f.mustReconcile(t, a3.Name), ctrl.Result{RequeueAfter: time.Second}); diff != "" {
		t.Errorf("Reconcile(%q) 1s early: result mismatch (-got +want):\n%s", a3.Name, diff)
	}
	f.clock.Step(time.Second)
	if diff := cmp.Diff(f.mustReconcile(t, a3.Name), ctrl.Result{}); diff != "" {
		t.Errorf("Reconcile(%q) after the window: result mismatch (-got +want):\n%s", a3.Name, diff)
	}

	var got []string
	for _, w := range f.writer.written() {
		got = append(got, w.Name)
	}
	if diff := cmp.Diff(got, []string{a1.Name, a2.Name, b1.Name, a3.Name}); diff != "" {
		t.Errorf("approved CSRs mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(f.events(), []string(nil)); diff != "" {
		t.Errorf("events after the first hold mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Decisions, decisionsHeader, `csrguard_decisions_total{mode="enforce",reason="AllChecksPassed",verdict="approve"} 4
csrguard_decisions_total{mode="enforce",reason="RateLimited",verdict="hold"} 1
`)
}

func TestReconcileBreaker(t *testing.T) {
	a := csrtest.New(t)
	b := csrtest.New(t, csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.11"))
	c := csrtest.New(t, csrtest.Node("node-c"), csrtest.IPAddresses("10.0.0.12"))
	cfg := enforce()
	cfg.Breaker = Limit{Max: 2, Window: 10 * time.Minute}
	f := newFixture(t, cfg, nodeA(), nodeB(), nodeC(), a, b, c)

	f.mustReconcile(t, a.Name)
	f.clock.Step(time.Minute)
	f.mustReconcile(t, b.Name)
	compareMetric(t, f.metrics.BreakerOpen, breakerHeader, "csrguard_breaker_open 0\n")
	f.clock.Step(time.Minute)

	// Two approvals within 10 minutes cluster-wide: the third node's waits, however good.
	if diff := cmp.Diff(f.mustReconcile(t, c.Name), ctrl.Result{RequeueAfter: 8 * time.Minute}); diff != "" {
		t.Errorf("Reconcile(%q) result mismatch (-got +want):\n%s", c.Name, diff)
	}
	compareMetric(t, f.metrics.BreakerOpen, breakerHeader, "csrguard_breaker_open 1\n")
	held := policy.Decision{Reason: ReasonBreakerOpen, Message: "breaker: 2 approvals in the last 10m0s; approvals are held"}
	wantEvents := []string{csrEvent(corev1.EventTypeNormal, servingcsr.EventHeld, held), nodeEvent(corev1.EventTypeNormal, servingcsr.EventHeld, c.Name, held)}
	if diff := cmp.Diff(f.events(), wantEvents); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	if got := len(f.writer.written()); got != 2 {
		t.Errorf("got %d UpdateApproval calls with the breaker open, want 2", got)
	}

	// The gauge clears when the window passes, before anything is retried:
	// the held CSR may be gone by then, and the alert must not stay on.
	f.clock.Step(8*time.Minute - time.Second)
	compareMetric(t, f.metrics.BreakerOpen, breakerHeader, "csrguard_breaker_open 1\n")
	f.clock.Step(time.Second)
	compareMetric(t, f.metrics.BreakerOpen, breakerHeader, "csrguard_breaker_open 0\n")
	if diff := cmp.Diff(f.mustReconcile(t, c.Name), ctrl.Result{}); diff != "" {
		t.Errorf("Reconcile(%q) after the window: result mismatch (-got +want):\n%s", c.Name, diff)
	}
	compareMetric(t, f.metrics.BreakerOpen, breakerHeader, "csrguard_breaker_open 0\n")
	compareMetric(t, f.metrics.Decisions, decisionsHeader, `csrguard_decisions_total{mode="enforce",reason="AllChecksPassed",verdict="approve"} 3
csrguard_decisions_total{mode="enforce",reason="BreakerOpen",verdict="hold"} 1
`)
}
