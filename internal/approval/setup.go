package approval

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// CacheOptions trims the manager's caches to what is read of them, so memory
// stays small with thousands of nodes: only kubelet-serving CSRs are listed
// (a server-side field selector), a final one reduced to what its readers use
// (its issued certificate as DER, no request) and an oversized request cut
// (trimCSR); Namespaces are cached as names only. Nodes are not in the
// manager's cache but in a nodes.Store, a few hundred bytes each. The manager
// caches nothing else: Services, EndpointSlices, ConfigMaps and Leases are
// read uncached.
//
// Heap kept per cached object with the indexes of Setup (BenchmarkCacheBytes,
// 2026-12-01; before final CSRs were reduced, in brackets): a pending CSR
// 2,129 B (2,241); an issued CSR 1,457 B (2,661; 4,064 untrimmed); a CSR
// denied as superseded 762 B (2,049). A typed cache cannot go much lower: a
// CSR struct alone takes 448 B, before the issued certificate it keeps.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&certificatesv1.CertificateSigningRequest{}: {
				Field:     fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName),
				Transform: trimCSR,
			},
			namespaceMetadata(): {Transform: trimNamespace},
		},
	}
}

// ClientOptions reads Nodes from the API, never from the manager's cache: Nodes are in a
// nodes.Store, and a Node read through the cache would start a second, whole-Node informer.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Node{}}}}
}

// trimCSR keeps of a CSR what is read of it in the cache. A CSR that may still be decided — a
// pending one, and one another approver approved (dry-run judges those) — is kept whole but for its
// managed fields, with a request longer than servingcsr.MaxRequestBytes (which Parse refuses
// anyway) cut to one byte more, so that no node can fill the cache: the API server keeps pending
// CSRs a day. A final CSR is never decided again; it is reduced to finalCSR, for the API server
// keeps it an hour after its decision, and a rotation of the fleet puts one per Node in the cache.
func trimCSR(obj any) (any, error) {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return obj, nil
	}
	if servingcsr.IsFinal(csr) && !servingcsr.ApprovedByOther(csr) {
		return finalCSR(csr), nil
	}
	csr.ManagedFields = nil
	if len(csr.Spec.Request) > servingcsr.MaxRequestBytes {
		// A copy: a sub-slice would keep the whole array alive.
		csr.Spec.Request = bytes.Clone(csr.Spec.Request[:servingcsr.MaxRequestBytes+1])
	}
	return csr, nil
}

// finalCSR returns what the cache's readers use of a final CSR, and nothing else:
//   - its name, UID, resourceVersion and creationTimestamp: the reconciler's key, supersession
//     orders a node's CSRs by creation, the pending-CSR metrics count ages from it;
//   - spec.signerName (servingcsr.InScope), spec.username and spec.groups (the node that filed
//     it: the CSR index, servingcsr.Supersede);
//   - of each condition its type, status, reason and times: servingcsr.StateOf, ApprovedByOther,
//     ApprovedAt (the approved-not-issued metric), the Superseded denial; not the message;
//   - status.certificate as DER, the PEM armour (a third of it) removed: monitor.Issued reads
//     NotBefore and NotAfter of it, and monitor.Signs verifies its signature against the cluster
//     CA, which needs the whole signed certificate, so it cannot be reduced further. Only the
//     first block is kept, as monitor.Issued reads only that one; an unparsable value is kept as
//     it is (servingcsr.StateOf counts it as issued, monitor.Issued skips it).
//
// Labels, annotations, managed fields, the request, usages, spec.uid, spec.extra and
// spec.expirationSeconds are dropped: they are read only to decide, and a final CSR is not decided.
// Measured with BenchmarkCacheBytes (see CacheOptions).
func finalCSR(csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
	out := &certificatesv1.CertificateSigningRequest{
		TypeMeta: csr.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: csr.Name, UID: csr.UID, ResourceVersion: csr.ResourceVersion, CreationTimestamp: csr.CreationTimestamp,
		},
		Spec: certificatesv1.CertificateSigningRequestSpec{SignerName: csr.Spec.SignerName, Username: csr.Spec.Username, Groups: csr.Spec.Groups},
	}
	// The strings every CSR has the same are kept once for all, not once per CSR.
	out.Spec.SignerName = shared(csr.Spec.SignerName, servingcsr.SignerName)
	if slices.Equal(csr.Spec.Groups, kubeletGroups) {
		out.Spec.Groups = kubeletGroups
	}
	if len(csr.Status.Conditions) > 0 {
		out.Status.Conditions = make([]certificatesv1.CertificateSigningRequestCondition, len(csr.Status.Conditions))
		for i, c := range csr.Status.Conditions {
			out.Status.Conditions[i] = certificatesv1.CertificateSigningRequestCondition{
				Type:           shared(c.Type, certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed),
				Status:         shared(c.Status, corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown),
				Reason:         shared(c.Reason, servingcsr.ApprovedReason, servingcsr.SupersededReason, "AutoApproved"),
				LastUpdateTime: c.LastUpdateTime, LastTransitionTime: c.LastTransitionTime,
			}
		}
	}
	out.Status.Certificate = csr.Status.Certificate
	if block, _ := pem.Decode(csr.Status.Certificate); block != nil && len(block.Bytes) > 0 {
		out.Status.Certificate = block.Bytes
	}
	return out
}

// kubeletGroups are the groups of a kubelet's CSR, as the API server lists them.
var kubeletGroups = []string{"system:nodes", "system:authenticated"}

// shared returns s as the one of known it equals, else s: a constant, held once, rather than
// the decoder's copy in every cached object.
func shared[S ~string](s S, known ...S) S {
	for _, k := range known {
		if s == k {
			return k
		}
	}
	return s
}

// trimNamespace keeps a Namespace's name only: the policy asks whether one exists.
func trimNamespace(obj any) (any, error) {
	ns, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{TypeMeta: ns.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: ns.Name, UID: ns.UID, ResourceVersion: ns.ResourceVersion,
	}}, nil
}

// indexes are the cache indexes Setup registers: CSRs that are not denied or failed by a
// bucket of the node that filed them (supersession; see csrNodeIndex).
var indexes = []struct {
	obj     client.Object
	field   string
	extract client.IndexerFunc
}{
	{&certificatesv1.CertificateSigningRequest{}, csrNodeIndex, func(o client.Object) []string {
		csr := o.(*certificatesv1.CertificateSigningRequest)
		if st := servingcsr.StateOf(csr); st == servingcsr.Denied || st == servingcsr.Failed {
			// Never decided again and supersedes nothing (servingcsr.Supersede): no reader of the
			// index wants it, and a recovery leaves a dozen denied as superseded per node.
			return nil
		}
		if n, ok := servingcsr.NodeName(csr.Spec.Username); ok {
			return []string{nodeBucket(n)}
		}
		return nil
	}},
}

// Setup registers the indexes, the cluster discovery and the controller with
// mgr. workers is the number of CSRs decided in parallel. The pending CSRs of
// a Node that nodes shows new or changed (nodeChanged), and of Nodes sent on
// requeue, are decided again.
func (r *Reconciler) Setup(ctx context.Context, mgr ctrl.Manager, nodes *nodes.Store, discovery *kube.ClusterDiscovery, workers int, requeue <-chan event.TypedGenericEvent[*corev1.Node]) error {
	idx := mgr.GetFieldIndexer()
	for _, i := range indexes {
		if err := idx.IndexField(ctx, i.obj, i.field, i.extract); err != nil {
			return fmt.Errorf("index %s: %w", i.field, err)
		}
	}
	if err := mgr.Add(discovery); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("kubelet-serving-csr").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(r.toReconcile())).
		// A decided or deleted CSR can change which of its node's CSRs is live.
		Watches(&certificatesv1.CertificateSigningRequest{}, handler.EnqueueRequestsFromMapFunc(r.olderPending), builder.WithPredicates(decided())).
		WatchesRawSource(&nodeEvents{nodes: nodes, r: r}).
		WatchesRawSource(source.Channel(requeue, handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, n *corev1.Node) []reconcile.Request {
			return r.pendingCSRsOf(ctx, n.Name)
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, RateLimiter: retryBackoff()}).
		Complete(r)
}

// toReconcile passes the events of in-scope CSRs that can need a decision, or that end one:
// creations and updates of a CSR that is not final, the update that makes it final (Reconcile
// skips a final CSR at once, and uses the event to forget what it reported about it), and
// deletions. It drops the events of a CSR that was final and still is — the signer issuing an
// approved CSR, every final CSR listed at startup or in a relist — which are a third of the events
// of a burst and were each a Reconcile that did nothing: nothing is reported of a CSR that was
// never seen pending. In dry-run mode a CSR another approver approved is judged all the same.
func (r *Reconciler) toReconcile() predicate.Funcs {
	undecided := func(o client.Object) bool {
		csr, ok := o.(*certificatesv1.CertificateSigningRequest)
		return ok && servingcsr.InScope(csr) && (!servingcsr.IsFinal(csr) || r.cfg.Mode == DryRun && servingcsr.ApprovedByOther(csr))
	}
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return undecided(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return undecided(e.ObjectOld) || undecided(e.ObjectNew) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return inScope(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return inScope(e.Object) },
	}
}

func inScope(o client.Object) bool {
	csr, ok := o.(*certificatesv1.CertificateSigningRequest)
	return ok && servingcsr.InScope(csr)
}

// retryBackoff spaces a CSR's tries after an error (a failed write or read of
// facts): 200 ms, doubling, at most 30 s apart. controller-runtime's default
// under its priority queue starts at 5 ms, with no overall limit: in an API
// server outage each pending CSR was tried eight times in the first second and
// 13 times in 25 s. From 200 ms, as in Kubernetes' own certificate
// controllers, it is three and seven (TestRetryBackoff); the cap, csrguard's
// HoldRetry, tries a CSR at least every 30 s through a long outage, so it is
// decided soon after the outage ends even if no watch event wakes it. A watch
// event still queues a CSR at once, out of its backoff.
func retryBackoff() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](200*time.Millisecond, 30*time.Second)
}

// pendingCSRsOf re-queues a node's pending CSRs: a CSR held because its Node
// did not exist or lacked an address is decided as soon as that changes.
func (r *Reconciler) pendingCSRsOf(ctx context.Context, node string) []reconcile.Request {
	csrs, err := csrsOf(ctx, r.reader, node)
	if err != nil {
		// A map function cannot return an error, so it is counted with the
		// other failed reads of facts. A cache read fails only while the
		// cache stops; the held CSRs' own requeues still decide them.
		r.metrics.Errors.WithLabelValues("facts").Inc()
		log.FromContext(ctx).Error(err, "Failed to list the pending CSRs of a node", "node", node)
		return nil
	}
	var reqs []reconcile.Request
	for i := range csrs {
		if !servingcsr.IsFinal(&csrs[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: csrs[i].Name}})
		}
	}
	return reqs
}

// nodeChanged passes Node creations, address changes and control-plane label
// changes only: a deletion decides nothing sooner, and a Store sends no change
// for the kubelet's status heartbeats.
func (r *Reconciler) nodeChanged(old, cur *nodes.Node) bool {
	switch {
	case cur == nil:
		return false
	case old == nil:
		return true
	}
	cp := r.cfg.Policy.IsControlPlane
	return !slices.Equal(old.Addresses, cur.Addresses) || cp(old.Labels) != cp(cur.Labels)
}

// nodeEvents queues the pending CSRs of the Nodes nodeChanged passes. It is a
// SyncingSource: the controller's workers start once the Node store has synced.
type nodeEvents struct {
	nodes *nodes.Store
	r     *Reconciler
}

func (s *nodeEvents) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	stop, err := s.nodes.Subscribe(ctx, nil, func(old, cur *nodes.Node) {
		if s.r.nodeChanged(old, cur) {
			for _, req := range s.r.pendingCSRsOf(ctx, cur.Name) {
				q.Add(req)
			}
		}
	})
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, stop)
	return nil
}

func (s *nodeEvents) WaitForSync(ctx context.Context) error { return s.nodes.WaitForSync(ctx) }

func (s *nodeEvents) String() string { return "kind source: csrguard Node store" }
