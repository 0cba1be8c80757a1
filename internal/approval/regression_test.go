package approval

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// Regression tests for bugs found in review; each names what went wrong.

func TestLimitHoldsUnderParallelWorkers(t *testing.T) {
	// Only one CSR of a node is live at a time (servingcsr.Supersede), so the
	// race on a shared window is between nodes: the breaker's, whose reserve
	// is the per-node limit's.
	cfg := enforce()
	cfg.Breaker = Limit{Max: 1, Window: time.Hour}
	var csrs []string
	var objs []client.Object
	for i := range 8 {
		name, ip := fmt.Sprintf("node-p%d", i), fmt.Sprintf("10.0.1.%d", i+1)
		objs = append(objs, node(name, "Hostname="+name, "InternalIP="+ip))
		c := csrtest.New(t, csrtest.Node(name), csrtest.IPAddresses(ip))
		objs = append(objs, c)
		csrs = append(csrs, c.Name)
	}
	f := newFixture(t, cfg, objs...)
	var wg sync.WaitGroup
	for _, name := range csrs {
		wg.Go(func() { _, _ = f.reconcile(t, name) })
	}
	wg.Wait()
	if n := len(f.writer.written()); n != 1 {
		t.Errorf("parallel workers approved %d CSRs, want 1 under --breaker-max-approvals=1", n)
	}
}

func TestDeletedCSRIsNotCountedAsApproved(t *testing.T) {
	cfg := enforce()
	cfg.NodeLimit = Limit{Max: 1, Window: time.Hour}
	a1 := csrtest.New(t, csrtest.Name("csr-gone"))
	a2 := csrtest.New(t, csrtest.Name("csr-next"), csrtest.CreatedAt(csrtest.Created.Add(time.Second)))
	f := newFixture(t, cfg, nodeA(), a1)
	f.writer.err = apierrors.NewNotFound(schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}, a1.Name)
	f.mustReconcile(t, a1.Name)
	if n := testutil.CollectAndCount(f.metrics.Applied); n != 0 {
		t.Errorf("a CSR deleted before its approval was written counts as %d writes, want 0", n)
	}
	// The node's budget was given back: its next CSR is approved at once.
	if err := f.cache.Delete(t.Context(), a1); err != nil {
		t.Fatal(err)
	}
	f.file(t, a2)
	f.writer.err = nil
	if res := f.mustReconcile(t, a2.Name); res.RequeueAfter != 0 {
		t.Errorf("next CSR held for %s after a deleted one; the deleted one must not use up the limit", res.RequeueAfter)
	}
}

func TestDryRunReportsApprovalOnce(t *testing.T) {
	cfg := enforce()
	cfg.Mode = DryRun
	a := csrtest.New(t)
	f := newFixture(t, cfg, nodeA(), a)
	f.mustReconcile(t, a.Name)
	f.mustReconcile(t, a.Name)
	if got := len(f.events()); got != 1 {
		t.Errorf("dry run reconciled twice recorded %d events, want 1", got)
	}
	if got := testutil.ToFloat64(f.metrics.Decisions.WithLabelValues("approve", "AllChecksPassed", "dry-run")); got != 1 {
		t.Errorf("dry run reconciled twice counted %v decisions, want 1", got)
	}
}

func TestDenyCountedOnceAcrossRetries(t *testing.T) {
	bad := csrtest.New(t, csrtest.DNSNames("kubernetes.default.svc"))
	f := newFixture(t, enforce(), nodeA(), bad)
	f.writer.err = apierrors.NewServerTimeout(schema.GroupResource{Resource: "certificatesigningrequests"}, "update", 1)
	if _, err := f.reconcile(t, bad.Name); err == nil {
		t.Fatal("Reconcile with a failing write returned no error")
	}
	f.writer.err = nil
	f.mustReconcile(t, bad.Name)
	if got := testutil.ToFloat64(f.metrics.Decisions.WithLabelValues("deny", "ReservedName", "enforce")); got != 1 {
		t.Errorf("one denial after a failed write counted %v times, want 1", got)
	}
}

func TestEventNoteIsNotAFormat(t *testing.T) {
	bad := csrtest.New(t, csrtest.DNSNames("kubernetes.default.svc"), csrtest.Username("system:node:%s%d"))
	f := newFixture(t, enforce(), nodeA(), bad)
	f.mustReconcile(t, bad.Name)
	for _, e := range f.events() {
		if strings.Contains(e, "%!") {
			t.Errorf("event note was used as a format string: %q", e)
		}
	}
}
