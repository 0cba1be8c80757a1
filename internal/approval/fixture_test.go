package approval

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/kube/kubetest"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// node builds a Node from "Type=address" pairs.
func node(name string, addresses ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addresses {
		typ, addr, _ := strings.Cut(a, "=")
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeAddressType(typ), Address: addr})
	}
	return n
}

// Nodes whose addresses match the CSRs csrtest.New builds for them.
func nodeA() *corev1.Node { return node("node-a", "Hostname=node-a", "InternalIP=10.0.0.10") }
func nodeB() *corev1.Node { return node("node-b", "Hostname=node-b", "InternalIP=10.0.0.11") }
func nodeC() *corev1.Node { return node("node-c", "Hostname=node-c", "InternalIP=10.0.0.12") }

// storeOf returns a synced Node store of the Nodes among objs, as the controller's.
func storeOf(_ *testing.T, objs ...client.Object) *nodes.Store {
	var list []*corev1.Node
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			list = append(list, n.DeepCopy())
		}
	}
	return nodes.Of(policy.DefaultConfig().ControlPlaneLabelKeys(), list...)
}

// newCache returns a fake client standing in for the manager's cache, with the indexes Setup
// registers.
func newCache(objs ...client.Object) client.WithWatch {
	b := fake.NewClientBuilder().WithObjects(objs...)
	for _, i := range indexes {
		b = b.WithIndex(i.obj, i.field, i.extract)
	}
	return b.Build()
}

// newDiscovery returns a ClusterDiscovery over reader, which also holds its
// record, adding static.
func newDiscovery(reader client.Client, static policy.Cluster, interval time.Duration) *kube.ClusterDiscovery {
	return kube.NewClusterDiscovery(kube.DiscoveryConfig{
		Reader: reader, Store: history.NewStore(reader, reader, "csrguard"), Static: static,
		Interval: interval, Retention: kube.SignerDefaultLifetime,
		Clock: clocktesting.NewFakeClock(csrtest.Created), Metrics: metrics.New(),
	})
}

// discovered returns a ClusterDiscovery that has read kubetest.ClusterObjects once.
func discovered(t *testing.T) *kube.ClusterDiscovery {
	t.Helper()
	d := newDiscovery(fake.NewClientBuilder().WithObjects(kubetest.ClusterObjects()...).Build(), policy.Cluster{}, 0)
	if _, err := d.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	return d
}

// claimsOf returns address claims synced with the Nodes among objs, as the
// keeper would have them after start: each address a single Node reports is
// claimed by it.
func claimsOf(objs ...client.Object) *history.Claims {
	nodes := map[string][]string{}
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			nodes[n.Name] = policy.AddressKeys(n.Status.Addresses)
		}
	}
	c := history.NewClaims(time.Minute)
	c.Sync(nil, nodes, csrtest.Created.Add(-time.Hour))
	return c
}

// written is one UpdateApproval call, reduced to what the reconciler decides.
type written struct {
	Name         string
	FieldManager string
	Conditions   []certificatesv1.CertificateSigningRequestCondition
}

// fakeWriter records UpdateApproval calls and answers them with err.
type fakeWriter struct {
	mu    sync.Mutex
	err   error
	calls []written
}

func (w *fakeWriter) UpdateApproval(_ context.Context, name string, csr *certificatesv1.CertificateSigningRequest, opts metav1.UpdateOptions) (*certificatesv1.CertificateSigningRequest, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, written{Name: name, FieldManager: opts.FieldManager, Conditions: csr.DeepCopy().Status.Conditions})
	if w.err != nil {
		return nil, w.err
	}
	return csr, nil
}

func (w *fakeWriter) written() []written {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]written(nil), w.calls...)
}

// fixture is a Reconciler wired to fakes, with every fake at hand.
type fixture struct {
	cache    client.WithWatch
	nodes    *nodes.Store
	writer   *fakeWriter
	clock    *clocktesting.FakeClock
	recorder *events.FakeRecorder
	metrics  *metrics.Metrics
	r        *Reconciler
}

// newFixture returns a Reconciler with cfg over a cache holding objs, a discovered cluster and a
// clock 5s after the CSRs csrtest builds were created.
func newFixture(t *testing.T, cfg Config, objs ...client.Object) *fixture {
	t.Helper()
	f := &fixture{
		cache:    newCache(objs...),
		nodes:    storeOf(t, objs...),
		writer:   &fakeWriter{},
		clock:    clocktesting.NewFakeClock(csrtest.Created.Add(5 * time.Second)),
		recorder: events.NewFakeRecorder(100),
		metrics:  metrics.New(),
	}
	if err := f.metrics.Register(prometheus.NewRegistry()); err != nil {
		t.Fatalf("Register() error = %v", err)
	}
	f.r = NewReconciler(f.cache, f.writer, f.recorder, f.metrics, f.clock, NewCacheFacts(f.cache, f.nodes, discovered(t), claimsOf(objs...)), cfg)
	return f
}

// enforce is the configuration most tests run with: the default policy, enforce mode, no limits.
func enforce() Config { return Config{Policy: policy.DefaultConfig(), Mode: Enforce} }

func (f *fixture) reconcile(t *testing.T, name string) (ctrl.Result, error) {
	t.Helper()
	return f.r.Reconcile(t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Name: name}})
}

// file adds csr to the cache, as a node filing it after the fixture was built; any earlier CSR
// of the node in the cache is marked issued, as the signer would have it by then.
func (f *fixture) file(t *testing.T, csr *certificatesv1.CertificateSigningRequest) {
	t.Helper()
	var list certificatesv1.CertificateSigningRequestList
	if err := f.cache.List(t.Context(), &list); err != nil {
		t.Fatalf("List() error = %v", err)
	}
	for i := range list.Items {
		old := &list.Items[i]
		if old.Spec.Username != csr.Spec.Username || servingcsr.IsFinal(old) {
			continue
		}
		old.Status.Conditions = append(old.Status.Conditions, approvedCondition(f.clock.Now()))
		old.Status.Certificate = []byte("issued")
		if err := f.cache.Status().Update(t.Context(), old); err != nil {
			t.Fatalf("Update() error = %v", err)
		}
	}
	if err := f.cache.Create(t.Context(), csr.DeepCopy()); err != nil {
		t.Fatalf("Create() error = %v", err)
	}
}

// mustReconcile reconciles name and fails the test on an error.
func (f *fixture) mustReconcile(t *testing.T, name string) ctrl.Result {
	t.Helper()
	res, err := f.reconcile(t, name)
	if err != nil {
		t.Fatalf("Reconcile(%q) error = %v", name, err)
	}
	return res
}

// events returns the events recorded since the last call, as FakeRecorder formats them:
// "<type> <reason> <note>".
func (f *fixture) events() []string {
	var got []string
	for {
		select {
		case e := <-f.recorder.Events:
			got = append(got, e)
		default:
			return got
		}
	}
}

// decide returns the policy's own decision on csr with the fixture's facts, for the messages the
// reconciler must relay verbatim.
func (f *fixture) decide(t *testing.T, csr *certificatesv1.CertificateSigningRequest) policy.Decision {
	t.Helper()
	d, err := policy.Evaluate(t.Context(), f.r.cfg.Policy, servingcsr.FromCSR(csr), f.r.facts, f.clock.Now())
	if err != nil {
		t.Fatalf("policy.Evaluate() error = %v", err)
	}
	return d
}

// approvedCondition is the condition the reconciler writes to approve at now.
func approvedCondition(now time.Time) certificatesv1.CertificateSigningRequestCondition {
	return certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: servingcsr.ApprovedReason, Message: "csrguard: all checks passed", LastUpdateTime: metav1.NewTime(now),
	}
}

// deniedCondition is the condition the reconciler writes to deny with d at now.
func deniedCondition(d policy.Decision, now time.Time) certificatesv1.CertificateSigningRequestCondition {
	return certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue,
		Reason: string(d.Reason), Message: "csrguard: " + d.Message, LastUpdateTime: metav1.NewTime(now),
	}
}

// csrEvent and nodeEvent are the FakeRecorder lines record writes for d on a CSR and its Node.
func csrEvent(typ, reason string, d policy.Decision) string {
	return typ + " " + reason + " " + string(d.Reason) + ": " + d.Message
}

func nodeEvent(typ, reason, csrName string, d policy.Decision) string {
	return typ + " " + reason + " CSR " + csrName + ": " + string(d.Reason) + ": " + d.Message
}
