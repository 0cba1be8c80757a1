package approval

import (
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

func TestPendingCSRsOf(t *testing.T) {
	final := func(name string, typ certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
		csr := csrtest.New(t, csrtest.Name(name))
		csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: typ, Status: corev1.ConditionTrue}}
		return csr
	}
	cache := newCache(
		csrtest.New(t, csrtest.Name("csr-node-a-1")),
		csrtest.New(t, csrtest.Name("csr-node-a-2")),
		final("csr-node-a-approved", certificatesv1.CertificateApproved),
		final("csr-node-a-denied", certificatesv1.CertificateDenied),
		csrtest.New(t, csrtest.Node("node-b")),
		csrtest.New(t, csrtest.Name("csr-not-a-node"), csrtest.Username("system:serviceaccount:default:node-a")),
	)
	r := NewReconciler(cache, nil, nil, nil, nil, nil, enforce())
	request := func(name string) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}
	}
	tests := []struct {
		name string
		node string
		want []reconcile.Request
	}{
		{"pending_only", "node-a", []reconcile.Request{request("csr-node-a-1"), request("csr-node-a-2")}},
		{"other_node", "node-b", []reconcile.Request{request("csr-node-b")}},
		{"no_csrs", "node-c", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := r.pendingCSRsOf(t.Context(), tc.node)
			slices.SortFunc(got, func(a, b reconcile.Request) int { return strings.Compare(a.Name, b.Name) })
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("pendingCSRsOf(%s) mismatch (-got +want):\n%s", tc.node, diff)
			}
		})
	}
}

func TestPendingCSRsOfListError(t *testing.T) {
	// Without the index, List fails; the map function can only drop the
	// event, and counts the error.
	m := metrics.New()
	r := NewReconciler(fake.NewClientBuilder().WithObjects(csrtest.New(t)).Build(), nil, nil, m, nil, nil, enforce())
	if got := r.pendingCSRsOf(t.Context(), "node-a"); got != nil {
		t.Errorf("pendingCSRsOf() = %v, want nil", got)
	}
	compareMetric(t, m.Errors, errorsHeader, "csrguard_errors_total{stage=\"facts\"} 1\n")
}

func TestNodeChanged(t *testing.T) {
	r := NewReconciler(nil, nil, nil, nil, nil, nil, enforce())
	keys := enforce().Policy.ControlPlaneLabelKeys()
	kept := func(n *corev1.Node) *nodes.Node { return nodes.FromAPI(n, keys) }
	labelled := func(l map[string]string) *corev1.Node { n := nodeA(); n.Labels = l; return n }
	tests := []struct {
		name     string
		old, cur *nodes.Node
		want     bool
	}{
		{"create", nil, kept(nodeA()), true},
		{"delete", kept(nodeA()), nil, false},
		{"update_unchanged", kept(nodeA()), kept(nodeA()), false},
		{"update_address_added", kept(node("node-a", "Hostname=node-a")), kept(nodeA()), true},
		{"update_address_changed", kept(nodeA()), kept(node("node-a", "Hostname=node-a", "InternalIP=10.0.0.99")), true},
		{"update_address_type_changed", kept(nodeA()), kept(node("node-a", "Hostname=node-a", "ExternalIP=10.0.0.10")), true},
		{"update_address_removed", kept(nodeA()), kept(node("node-a")), true},
		{"update_labelled_control_plane", kept(nodeA()), kept(labelled(map[string]string{policy.ControlPlaneLabel: ""})), true},
		{"update_other_label", kept(nodeA()), kept(labelled(map[string]string{"topology.kubernetes.io/zone": "a"})), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.nodeChanged(tc.old, tc.cur); got != tc.want {
				t.Errorf("nodeChanged = %t, want %t", got, tc.want)
			}
		})
	}
}

func TestCacheOptions(t *testing.T) {
	opts := CacheOptions()
	for obj, byObject := range opts.ByObject {
		if _, ok := obj.(*certificatesv1.CertificateSigningRequest); !ok {
			continue
		}
		// Only kubelet-serving CSRs are listed, so the cache stays small on busy clusters.
		if byObject.Field == nil {
			t.Fatal("CSR cache has no field selector")
		}
		if got, want := byObject.Field.String(), "spec.signerName="+certificatesv1.KubeletServingSignerName; got != want {
			t.Errorf("CSR field selector = %q, want %q", got, want)
		}
		return
	}
	t.Errorf("CacheOptions().ByObject has no CSR entry")
}

// TestClientOptions: a Node read through the manager's client goes to the API server, never to
// a second, whole-Node informer behind the nodes.Store.
func TestClientOptions(t *testing.T) {
	opts := ClientOptions()
	if opts.Cache == nil || !slices.ContainsFunc(opts.Cache.DisableFor, func(o client.Object) bool { _, ok := o.(*corev1.Node); return ok }) {
		t.Errorf("ClientOptions().Cache = %+v, want Nodes uncached", opts.Cache)
	}
}

func TestTrimCSR(t *testing.T) {
	created := metav1.NewTime(csrtest.Created)
	decided := metav1.NewTime(csrtest.Created.Add(time.Minute))
	der := []byte{0x30, 0x82, 0x01, 0x0a} // stands for a certificate's DER: only its armour is read
	pemOf := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
	condition := func(typ certificatesv1.RequestConditionType, reason string) certificatesv1.CertificateSigningRequestCondition {
		return certificatesv1.CertificateSigningRequestCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason,
			Message: "a message nobody reads from the cache", LastUpdateTime: decided, LastTransitionTime: decided}
	}
	// full is a CSR as the API server serves it, with everything a cache could keep.
	full := func(conditions []certificatesv1.CertificateSigningRequestCondition, cert []byte) *certificatesv1.CertificateSigningRequest {
		csr := csrtest.New(t)
		csr.UID, csr.ResourceVersion, csr.CreationTimestamp = "uid-1", "42", created
		csr.Labels = map[string]string{"app": "x"}
		csr.Annotations = map[string]string{"note": "y"}
		csr.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
		csr.Spec.UID = "kubelet-uid"
		csr.Spec.Extra = map[string]certificatesv1.ExtraValue{"authentication.kubernetes.io/credential-id": {"X509SHA256=ab"}}
		csr.Status.Conditions = conditions
		csr.Status.Certificate = cert
		return csr
	}
	// whole is what is kept of a CSR that may still be decided: all but its managed fields.
	whole := func(csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
		csr = csr.DeepCopy()
		csr.ManagedFields = nil
		return csr
	}
	// final is what is kept of a final CSR.
	final := func(cert []byte, conditions ...certificatesv1.CertificateSigningRequestCondition) *certificatesv1.CertificateSigningRequest {
		for i := range conditions {
			conditions[i].Message = ""
		}
		csr := csrtest.New(t)
		return &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Name: csr.Name, UID: "uid-1", ResourceVersion: "42", CreationTimestamp: created},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				SignerName: servingcsr.SignerName, Username: csr.Spec.Username, Groups: csr.Spec.Groups,
			},
			Status: certificatesv1.CertificateSigningRequestStatus{Conditions: conditions, Certificate: cert},
		}
	}
	approved := condition(certificatesv1.CertificateApproved, servingcsr.ApprovedReason)
	byOther := condition(certificatesv1.CertificateApproved, "AutoApproved")
	superseded := condition(certificatesv1.CertificateDenied, servingcsr.SupersededReason)
	failed := condition(certificatesv1.CertificateFailed, "SignerValidationFailure")
	pending := full(nil, nil)
	approvedByOther := full([]certificatesv1.CertificateSigningRequestCondition{byOther}, nil)
	issuedByOther := full([]certificatesv1.CertificateSigningRequestCondition{byOther}, pemOf(der))
	tests := []struct {
		name string
		in   *certificatesv1.CertificateSigningRequest
		want *certificatesv1.CertificateSigningRequest
	}{
		// Still to be decided: the request and all else stay.
		{"pending", pending, whole(pending)},
		// Final: only what the readers use; the issued certificate as DER.
		{"approved_not_issued", full([]certificatesv1.CertificateSigningRequestCondition{approved}, nil), final(nil, approved)},
		{"issued", full([]certificatesv1.CertificateSigningRequestCondition{approved}, pemOf(der)), final(der, approved)},
		{"issued_chain_first_block", full([]certificatesv1.CertificateSigningRequestCondition{approved}, append(pemOf(der), pemOf([]byte{0x30, 0})...)), final(der, approved)},
		{"issued_unparsable_kept", full([]certificatesv1.CertificateSigningRequestCondition{approved}, []byte("junk")), final([]byte("junk"), approved)},
		{"denied_superseded", full([]certificatesv1.CertificateSigningRequestCondition{superseded}, nil), final(nil, superseded)},
		{"failed", full([]certificatesv1.CertificateSigningRequestCondition{approved, failed}, nil), final(nil, approved, failed)},
		// Approved by another approver: dry-run judges it still, so it is kept whole.
		{"approved_by_other", approvedByOther, whole(approvedByOther)},
		{"issued_by_other", issuedByOther, whole(issuedByOther)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in.DeepCopy()
			got, err := trimCSR(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, any(tc.want)); diff != "" {
				t.Errorf("trimCSR() mismatch (-got +want):\n%s", diff)
			}
			// What the readers derive is unchanged.
			c := got.(*certificatesv1.CertificateSigningRequest)
			if servingcsr.StateOf(c) != servingcsr.StateOf(in) || !servingcsr.ApprovedAt(c).Equal(servingcsr.ApprovedAt(in)) ||
				servingcsr.ApprovedByOther(c) != servingcsr.ApprovedByOther(in) || isSupersededDenial(c) != isSupersededDenial(in) {
				t.Errorf("trimCSR() changed what is read: state %s, approved at %v, by other %t, superseded %t",
					servingcsr.StateOf(c), servingcsr.ApprovedAt(c), servingcsr.ApprovedByOther(c), isSupersededDenial(c))
			}
		})
	}

	// Anything else (a tombstone, say) passes through untouched.
	other := &corev1.Pod{}
	if got, err := trimCSR(other); err != nil || got != any(other) {
		t.Errorf("trimCSR(pod) = %v, %v; want the pod, nil", got, err)
	}
}

// TestTrimCSRRequest: an oversized request of a pending CSR is cut so that no node can fill the
// cache, to a copy (a sub-slice would keep the whole array alive) that Parse refuses as it would
// the whole.
func TestTrimCSRRequest(t *testing.T) {
	csr := csrtest.New(t)
	big := csr.DeepCopy()
	big.Spec.Request = make([]byte, 10<<20)
	for _, tc := range []struct {
		in      *certificatesv1.CertificateSigningRequest
		wantLen int
	}{{csr, len(csr.Spec.Request)}, {big, servingcsr.MaxRequestBytes + 1}} {
		got, err := trimCSR(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		c := got.(*certificatesv1.CertificateSigningRequest)
		if len(c.Spec.Request) != tc.wantLen || cap(c.Spec.Request) > 2*servingcsr.MaxRequestBytes {
			t.Errorf("trimCSR: request %d bytes (cap %d); want %d bytes", len(c.Spec.Request), cap(c.Spec.Request), tc.wantLen)
		}
	}
	if _, err := servingcsr.Parse(big.Spec.Request); err == nil {
		t.Error("Parse accepted a request over MaxRequestBytes")
	}
}

// TestCSRNodeIndex: a CSR is indexed under its node while it can be decided or supersede
// another; denied and failed ones, which can do neither, are left out.
func TestCSRNodeIndex(t *testing.T) {
	var extract func(client.Object) []string
	for _, i := range indexes {
		if i.field == csrNodeIndex {
			extract = i.extract
		}
	}
	with := func(cert string, types ...certificatesv1.RequestConditionType) *certificatesv1.CertificateSigningRequest {
		csr := csrtest.New(t)
		for _, typ := range types {
			csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: typ, Status: corev1.ConditionTrue})
		}
		csr.Status.Certificate = []byte(cert)
		return csr
	}
	tests := []struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest
		want []string
	}{
		{"pending", with(""), []string{nodeBucket("node-a")}},
		{"approved", with("", certificatesv1.CertificateApproved), []string{nodeBucket("node-a")}},
		{"issued", with("cert", certificatesv1.CertificateApproved), []string{nodeBucket("node-a")}},
		{"denied", with("", certificatesv1.CertificateDenied), nil},
		{"failed", with("", certificatesv1.CertificateApproved, certificatesv1.CertificateFailed), nil},
		{"not_a_node", csrtest.New(t, csrtest.Username("system:serviceaccount:default:node-a")), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(extract(tc.csr), tc.want); diff != "" {
				t.Errorf("csrNodeIndex mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// TestRetryBackoff counts the tries of a CSR whose every try fails (an API
// server outage), in windows from its first failure: retryBackoff against
// controller-runtime's default under its priority queue (5 ms, doubling, to
// 1000 s; no overall limit), which made ~13 writes per pending CSR in a 25 s
// outage.
func TestRetryBackoff(t *testing.T) {
	windows := []time.Duration{time.Second, 10 * time.Second, 25 * time.Second, 10 * time.Minute}
	tries := func(l workqueue.TypedRateLimiter[reconcile.Request]) (delays []time.Duration, counts []int) {
		csr := reconcile.Request{NamespacedName: types.NamespacedName{Name: "csr-node-a"}}
		at := []time.Duration{0} // the times of the tries from the first, which is at once
		for last := windows[len(windows)-1]; at[len(at)-1] <= last; {
			d := l.When(csr)
			delays = append(delays, d)
			at = append(at, at[len(at)-1]+d)
		}
		for _, w := range windows {
			counts = append(counts, len(slices.DeleteFunc(slices.Clone(at), func(a time.Duration) bool { return a > w })))
		}
		return delays, counts
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		name       string
		limiter    workqueue.TypedRateLimiter[reconcile.Request]
		wantDelays []time.Duration // the first eight
		wantCounts []int           // tries within each of windows
	}{
		{"csrguard", retryBackoff(),
			[]time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 25600 * ms},
			[]int{3, 6, 7, 27}},
		{"controller_runtime_default", workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*ms, 1000*time.Second),
			[]time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms},
			[]int{8, 11, 13, 17}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			delays, counts := tries(tc.limiter)
			if diff := cmp.Diff(delays[:8], tc.wantDelays); diff != "" {
				t.Errorf("delays (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(counts, tc.wantCounts); diff != "" {
				t.Errorf("tries within %v (-got +want):\n%s", windows, diff)
			}
		})
	}
}

// TestToReconcile: Reconcile sees every event that can need a decision or end one, and none of
// a CSR that was final and still is, but in dry-run mode for a CSR another approver approved.
func TestToReconcile(t *testing.T) {
	pending := csrtest.New(t)
	approve := func(c *certificatesv1.CertificateSigningRequest, reason string) *certificatesv1.CertificateSigningRequest {
		c = c.DeepCopy()
		c.Status.Conditions = append(c.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: reason})
		return c
	}
	issue := func(c *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
		c = c.DeepCopy()
		c.Status.Certificate = []byte("cert")
		return c
	}
	approved, byOther := approve(pending, servingcsr.ApprovedReason), approve(pending, "AutoApproved")
	denied := pending.DeepCopy()
	denied.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
	otherSigner := csrtest.New(t, csrtest.SignerName("example.com/other"))

	type events struct{ create, pendingToFinal, finalToFinal, deleted bool }
	tests := []struct {
		name  string
		mode  Mode
		final *certificatesv1.CertificateSigningRequest // what pending becomes
		want  events
	}{
		{"approved_by_csrguard", Enforce, approved, events{create: false, pendingToFinal: true, finalToFinal: false, deleted: true}},
		{"approved_by_other", Enforce, byOther, events{create: false, pendingToFinal: true, finalToFinal: false, deleted: true}},
		{"denied", Enforce, denied, events{create: false, pendingToFinal: true, finalToFinal: false, deleted: true}},
		{"dry_run_approved_by_csrguard", DryRun, approved, events{create: false, pendingToFinal: true, finalToFinal: false, deleted: true}},
		// Dry-run judges what another approver let through, as before.
		{"dry_run_approved_by_other", DryRun, byOther, events{create: true, pendingToFinal: true, finalToFinal: true, deleted: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := (&Reconciler{cfg: Config{Mode: tc.mode}}).toReconcile()
			if !p.Create(event.CreateEvent{Object: pending}) || !p.Update(event.UpdateEvent{ObjectOld: pending, ObjectNew: pending}) {
				t.Error("the events of a pending CSR do not all pass")
			}
			got := events{
				create:         p.Create(event.CreateEvent{Object: tc.final}),
				pendingToFinal: p.Update(event.UpdateEvent{ObjectOld: pending, ObjectNew: tc.final}),
				finalToFinal:   p.Update(event.UpdateEvent{ObjectOld: tc.final, ObjectNew: issue(tc.final)}),
				deleted:        p.Delete(event.DeleteEvent{Object: tc.final}),
			}
			if got != tc.want {
				t.Errorf("events passed = %+v, want %+v", got, tc.want)
			}
			if p.Create(event.CreateEvent{Object: otherSigner}) || p.Update(event.UpdateEvent{ObjectOld: otherSigner, ObjectNew: otherSigner}) || p.Delete(event.DeleteEvent{Object: otherSigner}) {
				t.Error("an event of another signer's CSR passes")
			}
		})
	}
}
