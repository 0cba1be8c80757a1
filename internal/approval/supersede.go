package approval

import (
	"context"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

// supersession reports whether csr is not node's live CSR, and why
// (servingcsr.Supersede over the node's CSRs in the cache). A CSR found finally superseded
// while the mode kept it pending stays superseded for the life of the process, though the
// newer CSR that superseded it is deleted an hour after its approval.
func (r *Reconciler) supersession(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, node string) (servingcsr.Supersession, bool, error) {
	if node == "" || servingcsr.IsFinal(csr) {
		// Not a node's CSR: never superseded (the policy denies it). Nor is a final one, which
		// dry-run judges when another approver approved it: no list of the node's CSRs for it.
		return servingcsr.Supersession{}, false, nil
	}
	// Keyed by name, as requests are; the UID tells a CSR deleted and re-created under its name
	// (the workqueue merges both events into one request) from the one remembered.
	if v, ok := r.superseded.Load(csr.Name); ok && v.(supersededCSR).uid == csr.UID {
		return servingcsr.Supersession{By: v.(supersededCSR).by, Final: true}, true, nil
	}
	mine, err := csrsOf(ctx, r.reader, node)
	if err != nil {
		return servingcsr.Supersession{}, false, err
	}
	s, ok := servingcsr.SupersededBy(csr, mine)
	return s, ok, nil
}

// supersede sets aside the approval of csr, which is not its node's live CSR. It is never
// approved and never charged to the per-node limit or the breaker. While a newer CSR of the node
// is pending, csr waits: the newer one is decided, and csr is looked at again when it is (see
// olderPending). Once a newer one is approved or issued, csr is denied with reason Superseded in
// enforce mode — final, so it cannot become the newest pending CSR again when the newer one is
// deleted an hour after its approval; the kubelet waits only for its newest, so the denial
// changes nothing for it. The other modes leave it pending. The Denied condition (or the log
// line) is the record: no Event, since a recovery supersedes a dozen CSRs per node.
func (r *Reconciler) supersede(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, node string, s servingcsr.Supersession) (ctrl.Result, error) {
	logger := log.FromContext(ctx).WithValues("supersededBy", s.By, "final", s.Final)
	first := r.firstReport(csr, "supersede")
	if first {
		r.metrics.Decisions.WithLabelValues("supersede", string(ReasonSuperseded), string(r.cfg.Mode)).Inc()
	}
	if !s.Final || r.cfg.Mode != Enforce {
		if s.Final {
			r.superseded.Store(csr.Name, supersededCSR{uid: csr.UID, by: s.By})
		}
		if first {
			logger.Info("Superseded CSR", "mode", r.cfg.Mode)
		}
		// No retry on a timer: a waiting CSR is requeued by the newer one's decision or
		// deletion (olderPending), and a final supersession never changes. A retry would list
		// the node's CSRs for each of them: n² work every HoldRetry for a node that files n.
		return ctrl.Result{}, nil
	}
	written, err := r.write(ctx, r.denial(csr, ReasonSuperseded,
		fmt.Sprintf("superseded: node %q has the newer CSR %s approved; its kubelet waits only for its newest CSR", node, s.By)))
	if err != nil {
		return ctrl.Result{}, err
	}
	// What was reported is kept until the cache shows the denial (Reconcile
	// forgets final CSRs): a requeue from the stale cache then neither counts
	// the CSR again nor writes, but conflicts and is retried.
	if written {
		r.metrics.Applied.WithLabelValues("supersede").Inc()
		logger.Info("Denied superseded CSR")
	}
	return ctrl.Result{}, nil
}

// supersededCSR is what the Reconciler remembers of a CSR found finally superseded.
type supersededCSR struct {
	uid types.UID
	by  string
}

// forget drops what the Reconciler remembers of a CSR that is gone or final.
func (r *Reconciler) forget(name string) {
	r.holds.Delete(name)
	r.superseded.Delete(name)
}

// olderPending re-queues the pending CSRs of o's node that o, a CSR that was just decided or
// deleted, may have made finally superseded or live again (servingcsr.Revisit).
func (r *Reconciler) olderPending(ctx context.Context, o client.Object) []reconcile.Request {
	changed, ok := o.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return nil
	}
	node, ok := servingcsr.NodeName(changed.Spec.Username)
	if !ok || isSupersededDenial(changed) {
		// A CSR denied as superseded had a newer approved one, which
		// supersedes every older CSR already: nothing changes for them.
		return nil
	}
	mine, err := csrsOf(ctx, r.reader, node)
	if err != nil {
		// As in pendingCSRsOf: counted, and the held CSRs' own requeues decide them.
		r.metrics.Errors.WithLabelValues("facts").Inc()
		log.FromContext(ctx).Error(err, "Failed to list the CSRs of a node", "node", node)
		return nil
	}
	var reqs []reconcile.Request
	for _, name := range servingcsr.Revisit(changed, mine) {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	}
	return reqs
}

// decided passes the events that can change which of a node's CSRs is live: a pending CSR
// decided (approved, denied or failed) or deleted. The deletion of a final CSR changes nothing:
// a denied or failed one superseded nothing, and the older CSRs of an approved one were denied
// (or, in the other modes, are remembered as superseded). So csrcleaner's hourly deletions cost
// no work.
func decided() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		DeleteFunc: func(e event.DeleteEvent) bool {
			csr, ok := e.Object.(*certificatesv1.CertificateSigningRequest)
			return ok && !servingcsr.IsFinal(csr)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			a, b := e.ObjectOld.(*certificatesv1.CertificateSigningRequest), e.ObjectNew.(*certificatesv1.CertificateSigningRequest)
			return !servingcsr.IsFinal(a) && servingcsr.IsFinal(b)
		},
	}
}

// isSupersededDenial reports whether csr was denied as superseded.
func isSupersededDenial(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateDenied && c.Reason == servingcsr.SupersededReason {
			return true
		}
	}
	return false
}
