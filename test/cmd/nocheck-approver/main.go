// Command nocheck-approver approves every pending kubernetes.io/kubelet-serving
// CSR without looking at it. It exists ONLY as the ceiling of csrguard's
// approval benchmark (test/cmd/bench, `make bench`): the fastest a
// controller-runtime approver with the same workers and CSR cache can
// possibly be, so that csrguard's cost of checking, and of its client rate
// limits, is measured against doing nothing at all.
//
// NEVER DEPLOY IT. Approving kubelet-serving CSRs unchecked lets any node, or
// anyone holding a node's credentials, obtain a certificate the cluster trusts
// for any name or address, including the API server's — the very hole
// csrguard exists to close.
//
// It shares csrguard's shape where that shape affects speed: a
// controller-runtime manager whose CSR cache is narrowed by the
// spec.signerName field selector, --workers parallel reconciles, and approval
// through the clientset's UpdateApproval (the approval subresource). It has
// no client-side rate limit by default (--kube-api-qps=-1): the ceiling is
// the physical limit of approving, which only the API server's own Priority
// and Fairness paces. It emits no Events and keeps no metrics of its
// own; controller-runtime's metrics, including rest_client_requests_total,
// are served on --metrics-bind-address, and /readyz on
// --health-probe-bind-address once its CSR watch has synced.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	certificatesclient "k8s.io/client-go/kubernetes/typed/certificates/v1"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	// Its own flag set: controller-runtime registers --kubeconfig on the
	// global one.
	fs := flag.NewFlagSet("nocheck-approver", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "Path to a kubeconfig file (required).")
	workers := fs.Int("workers", 16, "CSRs approved in parallel.")
	qps := fs.Float64("kube-api-qps", -1, "Client-side queries per second to the API server; -1 (client-go's meaning of any value below 0) for no client-side limit.")
	burst := fs.Int("kube-api-burst", 600, "Client-side burst of queries to the API server; unused with --kube-api-qps=-1.")
	metricsAddr := fs.String("metrics-bind-address", ":8080", `Address of the Prometheus /metrics endpoint; "0" disables it.`)
	healthAddr := fs.String("health-probe-bind-address", ":8081", `Address of /healthz and /readyz; "0" disables them.`)
	_ = fs.Parse(os.Args[1:]) // ExitOnError: a bad flag exits with usage
	if *kubeconfig == "" {
		return errors.New("--kubeconfig is required")
	}
	if *workers < 1 {
		return fmt.Errorf("--workers must be >= 1, got %d", *workers)
	}

	logger := zap.New()
	ctrl.SetLogger(logger)
	logger.Error(nil, "UNSAFE: nocheck-approver approves every kubelet-serving CSR without any check; it is a benchmark ceiling and must never run in a real cluster")

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(*qps), *burst

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		// The same server-side narrowing csrguard uses: only kubelet-serving
		// CSRs are listed and watched, so the cache cost is comparable.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&certificatesv1.CertificateSigningRequest{}: {
				Field: fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName),
			},
		}},
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress: *healthAddr,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("create clientset: %w", err)
	}
	a := &approver{reader: mgr.GetClient(), csrs: cs.CertificatesV1().CertificateSigningRequests()}
	src := &syncedSource{SyncingSource: source.Kind(mgr.GetCache(), &certificatesv1.CertificateSigningRequest{},
		&handler.TypedEnqueueRequestForObject[*certificatesv1.CertificateSigningRequest]{},
		predicate.NewTypedPredicateFuncs(func(csr *certificatesv1.CertificateSigningRequest) bool { return !final(csr) }),
	)}
	err = ctrl.NewControllerManagedBy(mgr).
		Named("nocheck-approver").
		WatchesRawSource(src).
		WithOptions(controller.Options{MaxConcurrentReconciles: *workers}).
		Complete(a)
	if err != nil {
		return fmt.Errorf("set up controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready only once the controller's own CSR watch has synced, which is
	// when its workers start. The cache alone is not enough: it creates the
	// CSR informer only when the controller starts, so it reports synced
	// before it has listed anything, and CSRs created in that gap reach the
	// queue with the initial list, at low priority, behind every later CSR.
	if err := mgr.AddReadyzCheck("csr-watch", func(*http.Request) error {
		if !src.synced.Load() {
			return errors.New("CSR watch not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}
	return mgr.Start(ctrl.SetupSignalHandler())
}

// syncedSource is a controller source that records when it has synced.
type syncedSource struct {
	source.SyncingSource
	synced atomic.Bool
}

// WaitForSync waits for the wrapped source, then marks it synced.
func (s *syncedSource) WaitForSync(ctx context.Context) error {
	if err := s.SyncingSource.WaitForSync(ctx); err != nil {
		return err
	}
	s.synced.Store(true)
	return nil
}

// approver approves whatever it is handed.
type approver struct {
	reader client.Reader
	csrs   certificatesclient.CertificateSigningRequestInterface
}

// Reconcile approves the CSR named in req if it is still pending.
func (a *approver) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var csr certificatesv1.CertificateSigningRequest
	if err := a.reader.Get(ctx, req.NamespacedName, &csr); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	// The cache may replay a CSR approved a moment ago; writing again would
	// only cost a conflict.
	if final(&csr) {
		return reconcile.Result{}, nil
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:           certificatesv1.CertificateApproved,
		Status:         corev1.ConditionTrue,
		Reason:         "NoCheckApprove",
		Message:        "approved without any check by the benchmark ceiling",
		LastUpdateTime: metav1.Now(),
	})
	_, err := a.csrs.UpdateApproval(ctx, csr.Name, &csr, metav1.UpdateOptions{})
	// A conflict means the cached copy was stale; the watch event for the
	// newer version re-queues the CSR, so there is nothing to retry here.
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, err
}

// final reports whether csr was already approved or denied, or failed.
func final(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return true
		}
	}
	return false
}
