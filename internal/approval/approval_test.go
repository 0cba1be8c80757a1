package approval

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/csrguard/csrguard/internal/kube/kubetest"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// Exposition headers of the metrics the tests compare.
const (
	decisionsHeader = `# HELP csrguard_decisions_total Decisions taken on kubelet-serving CSRs, by verdict (approve, deny, hold, supersede), reason code and mode.
# TYPE csrguard_decisions_total counter
`
	writesHeader = `# HELP csrguard_csr_writes_total Approvals and denials written to the API server, by verdict (approve, deny, supersede: a denial of a superseded CSR).
# TYPE csrguard_csr_writes_total counter
`
	errorsHeader = `# HELP csrguard_errors_total Errors that kept a CSR from being decided or its decision from being written; each is retried. Stage is facts or write.
# TYPE csrguard_errors_total counter
`
	breakerHeader = `# HELP csrguard_breaker_open 1 while the global approval breaker is open and approvals are held, else 0.
# TYPE csrguard_breaker_open gauge
`
)

// compareMetric fails the test unless c exposes exactly the samples of want (without the header).
// An empty want means c exposes no sample at all.
func compareMetric(t *testing.T, c prometheus.Collector, header, want string) {
	t.Helper()
	if want == "" {
		if n := testutil.CollectAndCount(c); n != 0 {
			t.Errorf("collector exposes %d samples, want none", n)
		}
		return
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(header+want)); err != nil {
		t.Error(err)
	}
}

func TestReconcileApprove(t *testing.T) {
	csr := csrtest.New(t)
	f := newFixture(t, enforce(), nodeA(), csr)

	res, err := f.reconcile(t, csr.Name)
	if err != nil {
		t.Fatalf("Reconcile() error = %v", err)
	}
	if diff := cmp.Diff(res, ctrl.Result{}); diff != "" {
		t.Errorf("Reconcile() result mismatch (-got +want):\n%s", diff)
	}
	want := []written{{Name: csr.Name, FieldManager: "csrguard", Conditions: []certificatesv1.CertificateSigningRequestCondition{approvedCondition(f.clock.Now())}}}
	if diff := cmp.Diff(f.writer.written(), want); diff != "" {
		t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
	}
	// The Approved condition is the record; an approval records no Event.
	if diff := cmp.Diff(f.events(), []string(nil)); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Decisions, decisionsHeader, `csrguard_decisions_total{mode="enforce",reason="AllChecksPassed",verdict="approve"} 1
`)
	compareMetric(t, f.metrics.Applied, writesHeader, `csrguard_csr_writes_total{verdict="approve"} 1
`)
	compareMetric(t, f.metrics.Errors, errorsHeader, "")
	// The CSR was approved 5s after its creation.
	if err := testutil.CollectAndCompare(f.metrics.ApprovalLatency, strings.NewReader(`# HELP csrguard_approval_latency_seconds Time from a kubelet-serving CSR's creation to its approval by csrguard.
# TYPE csrguard_approval_latency_seconds histogram
csrguard_approval_latency_seconds_bucket{le="0.05"} 0
csrguard_approval_latency_seconds_bucket{le="0.1"} 0
csrguard_approval_latency_seconds_bucket{le="0.25"} 0
csrguard_approval_latency_seconds_bucket{le="0.5"} 0
csrguard_approval_latency_seconds_bucket{le="1"} 0
csrguard_approval_latency_seconds_bucket{le="2.5"} 0
csrguard_approval_latency_seconds_bucket{le="5"} 1
csrguard_approval_latency_seconds_bucket{le="10"} 1
csrguard_approval_latency_seconds_bucket{le="30"} 1
csrguard_approval_latency_seconds_bucket{le="60"} 1
csrguard_approval_latency_seconds_bucket{le="300"} 1
csrguard_approval_latency_seconds_bucket{le="900"} 1
csrguard_approval_latency_seconds_bucket{le="3600"} 1
csrguard_approval_latency_seconds_bucket{le="+Inf"} 1
csrguard_approval_latency_seconds_sum 5
csrguard_approval_latency_seconds_count 1
`)); err != nil {
		t.Error(err)
	}
}

func TestReconcileDeny(t *testing.T) {
	tests := []struct {
		name       string
		opts       []csrtest.Option
		wantReason policy.Reason
	}{
		{"api_server_cluster_ip", []csrtest.Option{csrtest.IPAddresses(kubetest.APIServerClusterIP)}, policy.ReservedAddress},
		// A worker claiming an API server endpoint is held for the settle time
		// (an installer may still label it control-plane), then denied.
		{"api_server_endpoint", []csrtest.Option{csrtest.IPAddresses(kubetest.APIServerEndpoint), csrtest.CreatedAt(csrtest.Created.Add(-time.Hour))}, policy.ReservedAddress},
		{"service_ip", []csrtest.Option{csrtest.IPAddresses("10.96.200.3")}, policy.ReservedAddress},
		{"reserved_name", []csrtest.Option{csrtest.DNSNames("node-a", "kubernetes.default.svc")}, policy.ReservedName},
		{"expiration_too_long", []csrtest.Option{csrtest.ExpirationSeconds(2 * 8760 * 3600)}, policy.ExpirationTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr := csrtest.New(t, tc.opts...)
			f := newFixture(t, enforce(), nodeA(), csr)
			d := f.decide(t, csr)
			if d.Verdict != policy.Deny || d.Reason != tc.wantReason {
				t.Fatalf("policy decided %v %s, want Deny %s", d.Verdict, d.Reason, tc.wantReason)
			}

			res, err := f.reconcile(t, csr.Name)
			if err != nil {
				t.Fatalf("Reconcile() error = %v", err)
			}
			if diff := cmp.Diff(res, ctrl.Result{}); diff != "" {
				t.Errorf("Reconcile() result mismatch (-got +want):\n%s", diff)
			}
			want := []written{{Name: csr.Name, FieldManager: "csrguard", Conditions: []certificatesv1.CertificateSigningRequestCondition{deniedCondition(d, f.clock.Now())}}}
			if diff := cmp.Diff(f.writer.written(), want); diff != "" {
				t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
			}
			wantEvents := []string{csrEvent(corev1.EventTypeWarning, servingcsr.EventDenied, d), nodeEvent(corev1.EventTypeWarning, servingcsr.EventDenied, csr.Name, d)}
			if diff := cmp.Diff(f.events(), wantEvents); diff != "" {
				t.Errorf("events mismatch (-got +want):\n%s", diff)
			}
			compareMetric(t, f.metrics.Decisions, decisionsHeader, `csrguard_decisions_total{mode="enforce",reason="`+string(tc.wantReason)+`",verdict="deny"} 1
`)
			compareMetric(t, f.metrics.Applied, writesHeader, `csrguard_csr_writes_total{verdict="deny"} 1
`)
		})
	}
}

func TestReconcileNoDeny(t *testing.T) {
	good := csrtest.New(t)
	bad := csrtest.New(t, csrtest.Node("node-b"), csrtest.IPAddresses(kubetest.APIServerClusterIP))
	cfg := enforce()
	cfg.Mode = NoDeny
	f := newFixture(t, cfg, nodeA(), nodeB(), good, bad)
	d := f.decide(t, bad)

	// Reconciled twice, as a resync or a Node update would: the CSR stays pending and the
	// would-be denial is announced once.
	for range 2 {
		if diff := cmp.Diff(f.mustReconcile(t, bad.Name), ctrl.Result{}); diff != "" {
			t.Errorf("Reconcile(%q) result mismatch (-got +want):\n%s", bad.Name, diff)
		}
	}
	f.mustReconcile(t, good.Name)

	want := []written{{Name: good.Name, FieldManager: "csrguard", Conditions: []certificatesv1.CertificateSigningRequestCondition{approvedCondition(f.clock.Now())}}}
	if diff := cmp.Diff(f.writer.written(), want); diff != "" {
		t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
	}
	wantEvents := []string{csrEvent(corev1.EventTypeWarning, servingcsr.EventWouldDeny, d), nodeEvent(corev1.EventTypeWarning, servingcsr.EventWouldDeny, bad.Name, d)}
	if diff := cmp.Diff(f.events(), wantEvents); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Applied, writesHeader, `csrguard_csr_writes_total{verdict="approve"} 1
`)
}

func TestReconcileDryRun(t *testing.T) {
	good := csrtest.New(t)
	bad := csrtest.New(t, csrtest.Node("node-b"), csrtest.IPAddresses(kubetest.APIServerClusterIP))
	cfg := enforce()
	cfg.Mode = DryRun
	f := newFixture(t, cfg, nodeA(), nodeB(), good, bad)
	d := f.decide(t, bad)

	for _, name := range []string{good.Name, bad.Name} {
		if diff := cmp.Diff(f.mustReconcile(t, name), ctrl.Result{}); diff != "" {
			t.Errorf("Reconcile(%q) result mismatch (-got +want):\n%s", name, diff)
		}
	}

	if diff := cmp.Diff(f.writer.written(), []written(nil)); diff != "" {
		t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
	}
	wantEvents := []string{
		"Normal WouldApprove AllChecksPassed: all checks passed",
		csrEvent(corev1.EventTypeWarning, servingcsr.EventWouldDeny, d),
		nodeEvent(corev1.EventTypeWarning, servingcsr.EventWouldDeny, bad.Name, d),
	}
	if diff := cmp.Diff(f.events(), wantEvents); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Decisions, decisionsHeader, `csrguard_decisions_total{mode="dry-run",reason="AllChecksPassed",verdict="approve"} 1
csrguard_decisions_total{mode="dry-run",reason="ReservedAddress",verdict="deny"} 1
`)
	compareMetric(t, f.metrics.Applied, writesHeader, "")
}

func TestReconcileHoldNodeNotFound(t *testing.T) {
	csr := csrtest.New(t)
	f := newFixture(t, enforce(), csr)
	d := f.decide(t, csr)
	if d.Reason != policy.NodeNotFound {
		t.Fatalf("policy decided %v %s, want Hold NodeNotFound", d.Verdict, d.Reason)
	}

	for i := range 2 {
		res, err := f.reconcile(t, csr.Name)
		if err != nil {
			t.Fatalf("Reconcile() #%d error = %v", i+1, err)
		}
		// No watch resolves most holds, so the CSR comes back after HoldRetry.
		if diff := cmp.Diff(res, ctrl.Result{RequeueAfter: 30 * time.Second}); diff != "" {
			t.Errorf("Reconcile() #%d result mismatch (-got +want):\n%s", i+1, diff)
		}
	}
	if diff := cmp.Diff(f.writer.written(), []written(nil)); diff != "" {
		t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
	}
	// One Event for the hold, on the CSR only: there is no Node to put it on.
	if diff := cmp.Diff(f.events(), []string{csrEvent(corev1.EventTypeNormal, servingcsr.EventHeld, d)}); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Decisions, decisionsHeader, `csrguard_decisions_total{mode="enforce",reason="NodeNotFound",verdict="hold"} 1
`)

	// Once the Node appears, the next reconcile approves.
	if err := f.nodes.Add(nodeA()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.mustReconcile(t, csr.Name), ctrl.Result{}); diff != "" {
		t.Errorf("Reconcile() after the Node appeared: result mismatch (-got +want):\n%s", diff)
	}
	if got := len(f.writer.written()); got != 1 {
		t.Errorf("got %d UpdateApproval calls after the Node appeared, want 1", got)
	}
}

// TestReconcileHoldRecreated: a held CSR deleted and created again under the same name, its
// deletion and creation merged into one Reconcile, is a new CSR: its hold is reported again.
func TestReconcileHoldRecreated(t *testing.T) {
	csr := csrtest.New(t)
	csr.UID = "first"
	f := newFixture(t, enforce(), csr)
	d := f.decide(t, csr)
	f.mustReconcile(t, csr.Name)
	f.mustReconcile(t, csr.Name) // a requeue: reported once
	if err := f.cache.Delete(t.Context(), csr); err != nil {
		t.Fatal(err)
	}
	again := csrtest.New(t)
	again.UID = "second"
	if err := f.cache.Create(t.Context(), again); err != nil {
		t.Fatal(err)
	}
	f.mustReconcile(t, csr.Name)
	held := csrEvent(corev1.EventTypeNormal, servingcsr.EventHeld, d)
	if diff := cmp.Diff(f.events(), []string{held, held}); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
}

func TestReconcileSettleTime(t *testing.T) {
	tests := []struct {
		name       string
		nodes      []client.Object
		wantReason policy.Reason
	}{
		{
			name:       "san_not_on_node",
			nodes:      []client.Object{node("node-a", "Hostname=node-a", "InternalIP=10.0.0.99")},
			wantReason: policy.SANNotOnNode,
		},
		{
			name:       "san_of_other_node",
			nodes:      []client.Object{nodeA(), node("node-b", "Hostname=node-b", "InternalIP=10.0.0.10")},
			wantReason: policy.SANOfOtherNode,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr := csrtest.New(t)
			f := newFixture(t, enforce(), append(tc.nodes, csr)...)
			// 45s into the default 1m settle time.
			f.clock.SetTime(csrtest.Created.Add(45 * time.Second))
			held := f.decide(t, csr)
			if held.Verdict != policy.Hold || held.Reason != tc.wantReason {
				t.Fatalf("policy decided %v %s, want Hold %s", held.Verdict, held.Reason, tc.wantReason)
			}

			res := f.mustReconcile(t, csr.Name)
			// Back just after the settle time ends, not after the 30s HoldRetry.
			if diff := cmp.Diff(res, ctrl.Result{RequeueAfter: 15*time.Second + 100*time.Millisecond}); diff != "" {
				t.Errorf("Reconcile() result mismatch (-got +want):\n%s", diff)
			}
			if got := len(f.writer.written()); got != 0 {
				t.Errorf("got %d UpdateApproval calls while settling, want 0", got)
			}
			wantEvents := []string{csrEvent(corev1.EventTypeNormal, servingcsr.EventHeld, held), nodeEvent(corev1.EventTypeNormal, servingcsr.EventHeld, csr.Name, held)}
			if diff := cmp.Diff(f.events(), wantEvents); diff != "" {
				t.Errorf("events while settling mismatch (-got +want):\n%s", diff)
			}

			f.clock.Step(res.RequeueAfter)
			denied := f.decide(t, csr)
			if diff := cmp.Diff(f.mustReconcile(t, csr.Name), ctrl.Result{}); diff != "" {
				t.Errorf("Reconcile() after settling: result mismatch (-got +want):\n%s", diff)
			}
			want := []written{{Name: csr.Name, FieldManager: "csrguard", Conditions: []certificatesv1.CertificateSigningRequestCondition{deniedCondition(denied, f.clock.Now())}}}
			if diff := cmp.Diff(f.writer.written(), want); diff != "" {
				t.Errorf("UpdateApproval calls after settling mismatch (-got +want):\n%s", diff)
			}
			if denied.Reason != tc.wantReason {
				t.Errorf("denied with reason %s, want %s", denied.Reason, tc.wantReason)
			}
		})
	}
}

func TestHoldRetry(t *testing.T) {
	tests := []struct {
		name  string
		until time.Duration // from now; 0 for a hold with no known end
		want  time.Duration
	}{
		{"ends_after_hold_retry", 55 * time.Second, 30 * time.Second},
		{"ends_within_hold_retry", 15 * time.Second, 15*time.Second + 100*time.Millisecond},
		{"ends_in_a_second", time.Second, time.Second + 100*time.Millisecond},
		{"ended_while_deciding", -time.Millisecond, 100 * time.Millisecond},
		{"no_known_end", 0, 30 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, enforce())
			d := policy.Decision{Verdict: policy.Hold, Reason: policy.SANNotOnNode}
			if tc.until != 0 {
				d.Until = f.clock.Now().Add(tc.until)
			}
			if got := f.r.holdRetry(d, f.clock.Now()); got != tc.want {
				t.Errorf("holdRetry() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReconcileDryRunApprovedByOther: beside another approver, dry-run judges the CSRs that one
// approved before csrguard looked, and writes nothing; enforce leaves them alone, like any final
// CSR, as does dry-run one that csrguard itself approved.
func TestReconcileDryRunApprovedByOther(t *testing.T) {
	approvedBy := func(reason string, opts ...csrtest.Option) *certificatesv1.CertificateSigningRequest {
		csr := csrtest.New(t, opts...)
		csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: reason}}
		return csr
	}
	good := approvedBy("AutoApproved")
	bad := approvedBy("AutoApproved", csrtest.Node("node-b"), csrtest.IPAddresses(kubetest.APIServerClusterIP))
	bad.Status.Certificate = []byte("-----BEGIN CERTIFICATE-----\n") // issued: the harm is done
	ours := approvedBy(servingcsr.ApprovedReason, csrtest.Node("node-c"))
	dryRun := enforce()
	dryRun.Mode = DryRun

	for _, tc := range []struct {
		name       string
		cfg        Config
		wantEvents func(d policy.Decision) []string
		wantCount  string
	}{
		{name: "dry_run", cfg: dryRun, wantEvents: func(d policy.Decision) []string {
			return []string{
				"Normal WouldApprove AllChecksPassed: all checks passed",
				csrEvent(corev1.EventTypeWarning, servingcsr.EventWouldDeny, d),
				nodeEvent(corev1.EventTypeWarning, servingcsr.EventWouldDeny, bad.Name, d),
			}
		}, wantCount: `csrguard_decisions_total{mode="dry-run",reason="AllChecksPassed",verdict="approve"} 1
csrguard_decisions_total{mode="dry-run",reason="ReservedAddress",verdict="deny"} 1
`},
		{name: "enforce", cfg: enforce(), wantEvents: func(policy.Decision) []string { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cfg, nodeA(), nodeB(), nodeC(), good.DeepCopy(), bad.DeepCopy(), ours.DeepCopy())
			d := f.decide(t, bad)
			for _, name := range []string{good.Name, bad.Name, ours.Name} {
				if diff := cmp.Diff(f.mustReconcile(t, name), ctrl.Result{}); diff != "" {
					t.Errorf("Reconcile(%q) result mismatch (-got +want):\n%s", name, diff)
				}
			}
			if diff := cmp.Diff(f.writer.written(), []written(nil)); diff != "" {
				t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(f.events(), tc.wantEvents(d)); diff != "" {
				t.Errorf("events mismatch (-got +want):\n%s", diff)
			}
			compareMetric(t, f.metrics.Decisions, decisionsHeader, tc.wantCount)
			compareMetric(t, f.metrics.Applied, writesHeader, "")
		})
	}
}

func TestReconcileSkipsFinal(t *testing.T) {
	condition := func(typ certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
		csr := csrtest.New(t)
		csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: typ, Status: corev1.ConditionTrue}}
		return csr
	}
	issued := condition(certificatesv1.CertificateApproved)
	issued.Status.Certificate = []byte("-----BEGIN CERTIFICATE-----\n")
	tests := []struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest // nil: not in the cache
	}{
		{"approved", condition(certificatesv1.CertificateApproved)},
		{"denied", condition(certificatesv1.CertificateDenied)},
		{"failed", condition(certificatesv1.CertificateFailed)},
		{"issued", issued},
		{"other_signer", csrtest.New(t, csrtest.SignerName(certificatesv1.KubeAPIServerClientKubeletSignerName))},
		{"deleted", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := []client.Object{nodeA()}
			if tc.csr != nil {
				objs = append(objs, tc.csr)
			}
			f := newFixture(t, enforce(), objs...)
			res, err := f.reconcile(t, "csr-node-a")
			if err != nil {
				t.Fatalf("Reconcile() error = %v", err)
			}
			if diff := cmp.Diff(res, ctrl.Result{}); diff != "" {
				t.Errorf("Reconcile() result mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(f.writer.written(), []written(nil)); diff != "" {
				t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(f.events(), []string(nil)); diff != "" {
				t.Errorf("events mismatch (-got +want):\n%s", diff)
			}
			compareMetric(t, f.metrics.Decisions, decisionsHeader, "")
		})
	}
}

func TestReconcileWriteError(t *testing.T) {
	gr := schema.GroupResource{Group: certificatesv1.GroupName, Resource: "certificatesigningrequests"}
	tests := []struct {
		name       string
		err        error
		wantErr    bool
		wantErrors string
	}{
		{
			name:       "conflict",
			err:        apierrors.NewConflict(gr, "csr-node-a", errors.New("the object has been modified")),
			wantErr:    true,
			wantErrors: "csrguard_errors_total{stage=\"write\"} 1\n",
		},
		{
			name:       "server_timeout",
			err:        apierrors.NewServerTimeout(gr, "update", 1),
			wantErr:    true,
			wantErrors: "csrguard_errors_total{stage=\"write\"} 1\n",
		},
		{
			// Deleted meanwhile: nothing left to decide, nothing to retry.
			name: "not_found",
			err:  apierrors.NewNotFound(gr, "csr-node-a"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			csr := csrtest.New(t)
			f := newFixture(t, enforce(), nodeA(), csr)
			f.writer.err = tc.err

			res, err := f.reconcile(t, csr.Name)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("Reconcile() error = %v, want error: %t", err, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(err, tc.err) {
				t.Errorf("Reconcile() error = %v, want it to wrap %v", err, tc.err)
			}
			if diff := cmp.Diff(res, ctrl.Result{}); diff != "" {
				t.Errorf("Reconcile() result mismatch (-got +want):\n%s", diff)
			}
			if got := len(f.writer.written()); got != 1 {
				t.Errorf("got %d UpdateApproval calls, want 1", got)
			}
			compareMetric(t, f.metrics.Errors, errorsHeader, tc.wantErrors)
			if tc.wantErr {
				// A write that failed is not an approval.
				compareMetric(t, f.metrics.Applied, writesHeader, "")
				compareMetric(t, f.metrics.Decisions, decisionsHeader, "")
			}
		})
	}
}

func TestReconcileDenyWriteError(t *testing.T) {
	csr := csrtest.New(t, csrtest.IPAddresses(kubetest.APIServerClusterIP))
	f := newFixture(t, enforce(), nodeA(), csr)
	f.writer.err = apierrors.NewServerTimeout(schema.GroupResource{Group: certificatesv1.GroupName, Resource: "certificatesigningrequests"}, "update", 1)

	if _, err := f.reconcile(t, csr.Name); err == nil {
		t.Fatal("Reconcile() error = nil, want the write error")
	}
	// No Event may claim a denial that was not written.
	if diff := cmp.Diff(f.events(), []string(nil)); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Applied, writesHeader, "")
	compareMetric(t, f.metrics.Errors, errorsHeader, "csrguard_errors_total{stage=\"write\"} 1\n")
}

func TestReconcileClusterNotDiscovered(t *testing.T) {
	csr := csrtest.New(t)
	f := newFixture(t, enforce(), nodeA(), csr)
	// A discovery that never read the cluster.
	pending := newDiscovery(fake.NewClientBuilder().WithObjects(kubetest.ClusterObjects()...).Build(), policy.Cluster{}, 0)
	f.r = NewReconciler(f.cache, f.writer, f.recorder, f.metrics, f.clock, NewCacheFacts(f.cache, f.nodes, pending, claimsOf(nodeA())), enforce())

	_, err := f.reconcile(t, csr.Name)
	if err == nil || !strings.Contains(err.Error(), "not discovered yet") {
		t.Fatalf("Reconcile() error = %v, want the discovery pending", err)
	}
	if diff := cmp.Diff(f.writer.written(), []written(nil)); diff != "" {
		t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(f.events(), []string(nil)); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Errors, errorsHeader, "csrguard_errors_total{stage=\"facts\"} 1\n")
	compareMetric(t, f.metrics.Decisions, decisionsHeader, "")
}

func TestNewReconcilerDefaults(t *testing.T) {
	r := NewReconciler(nil, nil, nil, nil, nil, nil, Config{})
	if r.cfg.Mode != Enforce {
		t.Errorf("default Mode = %q, want %q", r.cfg.Mode, Enforce)
	}
	if r.cfg.HoldRetry != 30*time.Second {
		t.Errorf("default HoldRetry = %v, want 30s", r.cfg.HoldRetry)
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"enforce", Enforce, false},
		{"no-deny", NoDeny, false},
		{"dry-run", DryRun, false},
		{"Dry-Run", DryRun, false},
		{"", "", true},
		{"yolo", "", true},
		{"dryrun", "", true},
	}
	for _, tc := range tests {
		name := strings.ReplaceAll(tc.in, "-", "_")
		if name == "" {
			name = "empty"
		}
		t.Run(name, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("ParseMode(%q) error = %v, want error: %t", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ParseMode(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"shorter", "abc", 5, "abc"},
		{"exact", "abcde", 5, "abcde"},
		{"longer", "abcdef", 5, "ab…"}, // "…" is 3 bytes: the result is at most n bytes
		{"rune_boundary", "aéééé", 5, "a…"},
		{"event_note_limit", strings.Repeat("x", 2000), maxNote, strings.Repeat("x", maxNote-3) + "…"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := truncate(tc.in, tc.n); got != tc.want {
				t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}
