package approval

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// backlog returns n pending CSRs of node-a, one a second from csrtest.Created: what a kubelet
// leaves behind while nobody approves (it files a new one every 15 minutes).
func backlog(t *testing.T, n int, opts ...csrtest.Option) []*certificatesv1.CertificateSigningRequest {
	var out []*certificatesv1.CertificateSigningRequest
	for i := range n {
		o := append([]csrtest.Option{csrtest.Name("csr-node-a-" + string(rune('a'+i))), csrtest.CreatedAt(csrtest.Created.Add(time.Duration(i) * time.Second))}, opts...)
		out = append(out, csrtest.New(t, o...))
	}
	return out
}

// supersededCondition is the condition the reconciler writes to deny a CSR superseded by the
// approved or issued CSR by, at now.
func supersededCondition(by string, now time.Time) certificatesv1.CertificateSigningRequestCondition {
	return certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "Superseded",
		Message:        `csrguard: superseded: node "node-a" has the newer CSR ` + by + " approved; its kubelet waits only for its newest CSR",
		LastUpdateTime: metav1.NewTime(now),
	}
}

// markApproved writes the Approved condition the reconciler sent for name into the cache, as the
// watch would deliver it.
func (f *fixture) markApproved(t *testing.T, name string) {
	t.Helper()
	var csr certificatesv1.CertificateSigningRequest
	if err := f.cache.Get(t.Context(), client.ObjectKey{Name: name}, &csr); err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = append(csr.Status.Conditions, approvedCondition(f.clock.Now()))
	if err := f.cache.Status().Update(t.Context(), &csr); err != nil {
		t.Fatal(err)
	}
}

func objects(csrs []*certificatesv1.CertificateSigningRequest, extra ...client.Object) []client.Object {
	for _, c := range csrs {
		extra = append(extra, c)
	}
	return extra
}

func TestReconcileSuperseded(t *testing.T) {
	csrs := backlog(t, 3)
	old, mid, newest := csrs[0], csrs[1], csrs[2]
	cfg := enforce()
	// One approval per hour: a recovery needs one per node, and a superseded CSR uses none.
	cfg.NodeLimit = Limit{Max: 1, Window: time.Hour}
	f := newFixture(t, cfg, objects(csrs, nodeA())...)

	// While the newest is pending, the older ones wait for it: no write, no Event.
	if diff := cmp.Diff(f.mustReconcile(t, old.Name), ctrl.Result{}); diff != "" {
		t.Errorf("Reconcile(old) result mismatch (-got +want):\n%s", diff)
	}
	f.mustReconcile(t, mid.Name)
	if diff := cmp.Diff(f.mustReconcile(t, newest.Name), ctrl.Result{}); diff != "" {
		t.Errorf("Reconcile(newest) result mismatch (-got +want):\n%s", diff)
	}
	// The newest is approved, within the limit of one.
	f.markApproved(t, newest.Name)
	// Then the older ones are denied as superseded, each once.
	f.mustReconcile(t, old.Name)
	f.mustReconcile(t, mid.Name)
	now := f.clock.Now()
	want := []written{
		{Name: newest.Name, FieldManager: "csrguard", Conditions: []certificatesv1.CertificateSigningRequestCondition{approvedCondition(now)}},
		{Name: old.Name, FieldManager: "csrguard", Conditions: []certificatesv1.CertificateSigningRequestCondition{supersededCondition(newest.Name, now)}},
		{Name: mid.Name, FieldManager: "csrguard", Conditions: []certificatesv1.CertificateSigningRequestCondition{supersededCondition(newest.Name, now)}},
	}
	if diff := cmp.Diff(f.writer.written(), want); diff != "" {
		t.Errorf("UpdateApproval calls mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(f.events(), []string(nil)); diff != "" {
		t.Errorf("events mismatch (-got +want):\n%s", diff)
	}
	compareMetric(t, f.metrics.Decisions, decisionsHeader, `csrguard_decisions_total{mode="enforce",reason="AllChecksPassed",verdict="approve"} 1
csrguard_decisions_total{mode="enforce",reason="Superseded",verdict="supersede"} 2
`)
	compareMetric(t, f.metrics.Applied, writesHeader, `csrguard_csr_writes_total{verdict="approve"} 1
csrguard_csr_writes_total{verdict="supersede"} 2
`)
}

func TestReconcileSupersededOutcomes(t *testing.T) {
	hold := ctrl.Result{RequeueAfter: 30 * time.Second}
	tests := []struct {
		name string
		mode Mode
		// opts build the older CSR; the newer one is valid.
		opts []csrtest.Option
		// newer is the state of the newer CSR: Pending, Approved, Denied, or "" for deleted.
		newer      servingcsr.State
		wantResult ctrl.Result
		// wantWrite is the reason of the condition written on the older CSR: "" for none.
		wantWrite string
		// wantDecision is the verdict/reason counted.
		wantDecision string
	}{
		{name: "newer_pending_waits", mode: Enforce, newer: servingcsr.Pending, wantDecision: "supersede/Superseded"},
		{name: "newer_approved_denies", mode: Enforce, newer: servingcsr.Approved, wantWrite: "Superseded", wantDecision: "supersede/Superseded"},
		// A denial of the newer CSR (which its node's kubelet may not have filed) strands
		// nothing: the older one is live again.
		{name: "newer_denied_older_live", mode: Enforce, newer: servingcsr.Denied, wantWrite: servingcsr.ApprovedReason, wantDecision: "approve/AllChecksPassed"},
		{name: "newer_deleted_older_live", mode: Enforce, newer: "", wantWrite: servingcsr.ApprovedReason, wantDecision: "approve/AllChecksPassed"},
		// Superseding only sets an approval aside: what the policy denies is denied for its own
		// reason, so a node cannot hide a hostile CSR behind a newer one.
		{name: "policy_deny_wins", mode: Enforce, opts: []csrtest.Option{csrtest.DNSNames("node-a", "kubernetes.default.svc")}, newer: servingcsr.Approved, wantWrite: string(policy.ReservedName), wantDecision: "deny/ReservedName"},
		{name: "policy_hold_wins", mode: Enforce, opts: []csrtest.Option{csrtest.IPAddresses("10.0.0.99")}, newer: servingcsr.Approved, wantResult: hold, wantDecision: "hold/SANNotOnNode"},
		// While the newer CSR is pending, the older one waits undecided, hostile or not: it is
		// evaluated once the newer one is decided.
		{name: "hostile_waits_for_newer", mode: Enforce, opts: []csrtest.Option{csrtest.DNSNames("node-a", "kubernetes.default.svc")}, newer: servingcsr.Pending, wantDecision: "supersede/Superseded"},
		{name: "no_deny_leaves_pending", mode: NoDeny, newer: servingcsr.Approved, wantDecision: "supersede/Superseded"},
		{name: "dry_run_leaves_pending", mode: DryRun, newer: servingcsr.Approved, wantDecision: "supersede/Superseded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			older := csrtest.New(t, append([]csrtest.Option{csrtest.Name("csr-older")}, tc.opts...)...)
			newer := csrtest.New(t, csrtest.Name("csr-newer"), csrtest.CreatedAt(csrtest.Created.Add(time.Second)))
			switch tc.newer {
			case servingcsr.Approved:
				newer.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
			case servingcsr.Denied:
				newer.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
			}
			objs := []client.Object{nodeA(), older}
			if tc.newer != "" {
				objs = append(objs, newer)
			}
			cfg := enforce()
			cfg.Mode = tc.mode
			f := newFixture(t, cfg, objs...)
			if diff := cmp.Diff(f.mustReconcile(t, older.Name), tc.wantResult); diff != "" {
				t.Errorf("Reconcile() result mismatch (-got +want):\n%s", diff)
			}
			var got string
			if w := f.writer.written(); len(w) == 1 {
				got = w[0].Conditions[0].Reason
			} else if len(w) > 1 {
				t.Fatalf("%d writes, want at most 1: %+v", len(w), w)
			}
			if got != tc.wantWrite {
				t.Errorf("wrote reason %q, want %q", got, tc.wantWrite)
			}
			verdict, reason, _ := strings.Cut(tc.wantDecision, "/")
			compareMetric(t, f.metrics.Decisions, decisionsHeader, fmt.Sprintf("csrguard_decisions_total{mode=%q,reason=%q,verdict=%q} 1\n", tc.mode, reason, verdict))
		})
	}
}

func TestSupersededStaysSupersededWithoutDenying(t *testing.T) {
	// In no-deny mode a superseded CSR stays pending; when the newer one is deleted (an hour
	// after its approval) it must not become the node's live CSR and be approved.
	older := csrtest.New(t, csrtest.Name("csr-older"))
	newer := csrtest.New(t, csrtest.Name("csr-newer"), csrtest.CreatedAt(csrtest.Created.Add(time.Second)))
	newer.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	cfg := enforce()
	cfg.Mode = NoDeny
	f := newFixture(t, cfg, nodeA(), older, newer)
	f.mustReconcile(t, older.Name)
	if err := f.cache.Delete(t.Context(), newer); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(time.Hour)
	f.mustReconcile(t, older.Name)
	if w := f.writer.written(); len(w) != 0 {
		t.Errorf("wrote %+v, want nothing", w)
	}
	compareMetric(t, f.metrics.Decisions, decisionsHeader, `csrguard_decisions_total{mode="no-deny",reason="Superseded",verdict="supersede"} 1
`)
}

func TestOlderPending(t *testing.T) {
	csrs := backlog(t, 3)
	approvedB := csrtest.New(t, csrtest.Node("node-b"), csrtest.Name("csr-node-b-old"))
	f := newFixture(t, enforce(), objects(csrs, nodeA(), approvedB, csrtest.New(t, csrtest.Node("node-b"), csrtest.Name("csr-node-b-new"), csrtest.CreatedAt(csrtest.Created.Add(time.Hour))))...)
	request := func(name string) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}
	}
	with := func(c *certificatesv1.CertificateSigningRequest, typ certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
		c = c.DeepCopy()
		c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: typ, Status: corev1.ConditionTrue}}
		return c
	}
	denied := func(c *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
		return with(c, certificatesv1.CertificateDenied)
	}
	approved := func(c *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
		return with(c, certificatesv1.CertificateApproved)
	}
	tests := []struct {
		name    string
		changed *certificatesv1.CertificateSigningRequest
		want    []reconcile.Request
	}{
		// Denied or deleted, the newest makes only the next one live; approved, it finally
		// supersedes every older one.
		{"newest_denied", denied(csrs[2]), []reconcile.Request{request(csrs[1].Name)}},
		{"newest_approved", approved(csrs[2]), []reconcile.Request{request(csrs[0].Name), request(csrs[1].Name)}},
		{"newest_deleted", csrs[2], []reconcile.Request{request(csrs[1].Name)}},
		{"middle_decided", csrs[1], []reconcile.Request{request(csrs[0].Name)}},
		{"oldest_decided", csrs[0], nil},
		// Its newer approved CSR superseded every older one already.
		{"denied_as_superseded", func() *certificatesv1.CertificateSigningRequest {
			c := csrs[2].DeepCopy()
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{supersededCondition("csr-newer", csrtest.Created)}
			return c
		}(), nil},
		// Another node's CSRs are never touched.
		{"other_node", approvedB, nil},
		{"not_a_node", csrtest.New(t, csrtest.Username("alice")), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := f.r.olderPending(t.Context(), tc.changed)
			slices.SortFunc(got, func(a, b reconcile.Request) int { return strings.Compare(a.Name, b.Name) })
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("olderPending(%s) mismatch (-got +want):\n%s", tc.changed.Name, diff)
			}
		})
	}
}

func TestDecided(t *testing.T) {
	pending := csrtest.New(t)
	approved := pending.DeepCopy()
	approved.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	issued := approved.DeepCopy()
	issued.Status.Certificate = []byte("cert")
	p := decided()
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"create", p.Create(event.CreateEvent{Object: pending}), false},
		{"pending_to_approved", p.Update(event.UpdateEvent{ObjectOld: pending, ObjectNew: approved}), true},
		{"approved_to_issued", p.Update(event.UpdateEvent{ObjectOld: approved, ObjectNew: issued}), false},
		{"pending_relabelled", p.Update(event.UpdateEvent{ObjectOld: pending, ObjectNew: pending}), false},
		{"delete_pending", p.Delete(event.DeleteEvent{Object: pending}), true},
		{"delete_final", p.Delete(event.DeleteEvent{Object: issued}), false},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: predicate = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestSupersedeCascadeIsLinear is an attack: a node files n CSRs the policy denies, all pending
// at once. Each is decided newest first, and each decision must requeue only the CSR it can make
// live, not every older one: else the n decisions cost n²/2 reconciles, each listing the node's n
// CSRs (n³ work from one node's credentials).
func TestSupersedeCascadeIsLinear(t *testing.T) {
	const n = 40 // two Events per denial: the fixture's recorder holds 100
	hostile := csrtest.New(t, csrtest.DNSNames("node-a", "kubernetes.default.svc"))
	var csrs []*certificatesv1.CertificateSigningRequest
	for i := range n {
		c := hostile.DeepCopy()
		c.Name = fmt.Sprintf("csr-hostile-%03d", i)
		c.CreationTimestamp = metav1.NewTime(csrtest.Created.Add(time.Duration(i) * time.Second))
		csrs = append(csrs, c)
	}
	f := newFixture(t, enforce(), objects(csrs, nodeA())...)
	// A workqueue: FIFO, an item queued once until it is processed; the initial list queues all.
	var queue []string
	queued := map[string]bool{}
	push := func(name string) {
		if !queued[name] {
			queued[name] = true
			queue = append(queue, name)
		}
	}
	for _, c := range csrs {
		push(c.Name)
	}
	reconciles := 0
	for len(queue) > 0 {
		name := queue[0]
		queue, queued[name] = queue[1:], false
		before := len(f.writer.written())
		f.mustReconcile(t, name)
		reconciles++
		if reconciles > 10*n*n {
			t.Fatalf("no end after %d reconciles; queue %v", reconciles, queue)
		}
		w := f.writer.written()
		if len(w) == before {
			continue
		}
		// The watch delivers the write; decided() passes it to olderPending.
		var csr certificatesv1.CertificateSigningRequest
		if err := f.cache.Get(t.Context(), client.ObjectKey{Name: name}, &csr); err != nil {
			t.Fatal(err)
		}
		csr.Status.Conditions = w[len(w)-1].Conditions
		if err := f.cache.Status().Update(t.Context(), &csr); err != nil {
			t.Fatal(err)
		}
		for _, req := range f.r.olderPending(t.Context(), &csr) {
			push(req.Name)
		}
	}
	if got := len(f.writer.written()); got != n {
		t.Errorf("%d writes, want %d (every hostile CSR denied)", got, n)
	}
	if reconciles > 3*n {
		t.Errorf("%d reconciles to decide %d CSRs of one node, want at most %d", reconciles, n, 3*n)
	}
}

// TestWaitingCostsNoRetries is an attack: a node files n CSRs the policy holds. The newest is
// held and retried; the n-1 older ones wait for it, and must not be retried on a timer too: each
// retry lists the node's n CSRs, n² work every HoldRetry from one node's credentials. The newer
// CSR's decision or deletion requeues them (olderPending).
func TestWaitingCostsNoRetries(t *testing.T) {
	const n = 20
	csrs := backlog(t, n, csrtest.IPAddresses("10.0.0.99"))
	for _, mode := range []Mode{Enforce, NoDeny, DryRun} {
		cfg := enforce()
		cfg.Mode = mode
		f := newFixture(t, cfg, objects(csrs, nodeA())...)
		retried := 0
		for _, c := range csrs {
			if f.mustReconcile(t, c.Name).RequeueAfter > 0 {
				retried++
			}
		}
		if retried != 1 {
			t.Errorf("%s: %d of a node's %d held CSRs retried on a timer, want 1 (the newest)", mode, retried, n)
		}
	}
}

// TestSupersededIsPerCSRNotPerName is an attack: a CSR remembered as superseded (no-deny) is
// deleted and another node's CSR of the same name created before the deletion is reconciled (the
// workqueue merges both events into one request). The new CSR must be decided on its own.
func TestSupersededIsPerCSRNotPerName(t *testing.T) {
	older := csrtest.New(t, csrtest.Name("csr-reused"))
	older.UID = "uid-old"
	newer := csrtest.New(t, csrtest.Name("csr-newer"), csrtest.CreatedAt(csrtest.Created.Add(time.Second)))
	newer.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	cfg := enforce()
	cfg.Mode = NoDeny
	f := newFixture(t, cfg, nodeA(), nodeB(), older, newer)
	f.mustReconcile(t, older.Name)
	if err := f.cache.Delete(t.Context(), older); err != nil {
		t.Fatal(err)
	}
	reused := csrtest.New(t, csrtest.Node("node-b"), csrtest.IPAddresses("10.0.0.11"), csrtest.Name("csr-reused"))
	reused.UID = "uid-new"
	if err := f.cache.Create(t.Context(), reused); err != nil {
		t.Fatal(err)
	}
	f.mustReconcile(t, reused.Name)
	if w := f.writer.written(); len(w) != 1 || w[0].Conditions[0].Reason != servingcsr.ApprovedReason {
		t.Errorf("wrote %+v, want node-b's CSR approved", w)
	}
}

// TestImpostorSupersedesNothing is an attack: a requester named system:node:node-a that is not in
// system:nodes (an authenticator other than the node's) files CSRs newer than the kubelet's. The
// policy denies them; in no-deny and dry-run they stay pending, and must not make the kubelet's
// CSR wait for them forever.
func TestImpostorSupersedesNothing(t *testing.T) {
	kubeletCSR := csrtest.New(t, csrtest.Name("csr-kubelet"))
	impostor := csrtest.New(t, csrtest.Name("csr-impostor"), csrtest.CreatedAt(csrtest.Created.Add(time.Second)),
		csrtest.Groups("system:authenticated"))
	for _, mode := range []Mode{Enforce, NoDeny, DryRun} {
		cfg := enforce()
		cfg.Mode = mode
		f := newFixture(t, cfg, nodeA(), kubeletCSR, impostor)
		f.mustReconcile(t, kubeletCSR.Name)
		compareMetric(t, f.metrics.Decisions, decisionsHeader, fmt.Sprintf("csrguard_decisions_total{mode=%q,reason=\"AllChecksPassed\",verdict=\"approve\"} 1\n", mode))
	}
}

// listCounter counts the List calls of a reader.
type listCounter struct {
	client.Reader
	lists int
}

func (l *listCounter) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	l.lists++
	return l.Reader.List(ctx, list, opts...)
}

// TestDryRunJudgesApprovedWithoutListing: a dry-run judging CSRs another approver approved (which
// may be thousands of one node's, held and retried for the hour they are kept) lists no node's
// CSRs for them: a final CSR is never superseded.
func TestDryRunJudgesApprovedWithoutListing(t *testing.T) {
	approved := csrtest.New(t, csrtest.IPAddresses("10.0.0.99")) // held: SANNotOnNode
	approved.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "AutoApproved"}}
	cfg := enforce()
	cfg.Mode = DryRun
	f := newFixture(t, cfg, nodeA(), approved)
	counter := &listCounter{Reader: f.r.reader}
	f.r.reader = counter
	if diff := cmp.Diff(f.mustReconcile(t, approved.Name), ctrl.Result{RequeueAfter: 30 * time.Second}); diff != "" {
		t.Errorf("Reconcile() result mismatch (-got +want):\n%s", diff)
	}
	if counter.lists != 0 {
		t.Errorf("%d List calls, want 0", counter.lists)
	}
	if w := f.writer.written(); len(w) != 0 {
		t.Errorf("wrote %+v, want nothing", w)
	}
}
