// Package controller assembles `csrguard controller`: a controller-runtime
// manager with trimmed caches, leader election on a Lease, /healthz and
// /readyz, Prometheus metrics, the approval reconciler and the kubelet
// monitor. It owns process
// wiring only; deciding is package policy's, applying package approval's.
package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/csrguard/csrguard/internal/approval"
	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/policy"
)

// DefaultWorkers is how many CSRs the controller decides in parallel unless told otherwise. A
// decision is mostly a wait for its one write (an approval's round trip was 30–40 ms on the
// benchmark's busy API server), so the workers, not the CPU, set csrguard's pace: 16 approved about
// 240 CSRs/s and fell 8 s behind a 10,000-CSR burst filed at 300/s (p99 8–10 s); 32 kept up with
// it (at most 0.15 s behind, p99 0.3–0.5 s), and 64 did no better (README, Performance, run E).
const DefaultWorkers = 32

// DefaultGCPercent is the garbage collector's target `csrguard controller` runs with unless the
// GOGC environment variable sets one (Prometheus does the same with 75): the heap may grow
// 50% over the live heap between collections, not Go's 100%. The caches are most of the live
// heap, so it sets how much RSS each Node and CSR costs. In alternating single csrguard-only
// rounds of the benchmark (README, Performance, "GOGC=50"), peak RSS was 48–51 / 75–76 MB at 2,000 /
// 10,000 Node+CSRs with 50, against 50–51 / 79–83 MB with 75 (3.5 against 3.9 KiB per
// Node+CSR), for 6–10% more CPU (1.38–1.54 against 1.37–1.46 s at 2,000; 6.8–7.1 against
// 6.1–6.4 s at 10,000).
const DefaultGCPercent = 50

// Config is everything `csrguard controller` runs with, parsed and validated
// by the CLI.
type Config struct {
	Approval approval.Config
	// Static are API server addresses and service CIDRs added to the discovered ones.
	Static            policy.Cluster
	DiscoveryInterval time.Duration
	Workers           int

	// Namespace holds csrguard's Lease and its records (address claims and the
	// API server's remembered addresses).
	Namespace        string
	LeaderElection   bool
	LeaderElectionID string
	LeaseDuration    time.Duration
	RenewDeadline    time.Duration
	RetryPeriod      time.Duration

	MetricsBindAddress string
	HealthBindAddress  string
	PprofBindAddress   string

	// Monitor configures the kubelet probe; a zero Interval disables it.
	Monitor monitor.Config
}

// Run runs the controller until ctx ends, then shuts down gracefully:
// in-flight decisions finish and a held Lease is released.
func Run(ctx context.Context, restCfg *rest.Config, cfg Config) error {
	logger := log.FromContext(ctx)
	gcPercent := "GOGC=" + os.Getenv("GOGC")
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
		gcPercent = fmt.Sprintf("%d (default)", DefaultGCPercent)
	}
	m := metrics.New()
	if err := m.Register(ctrlmetrics.Registry); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	if cfg.Approval.Policy.InsecureAllowLoopback {
		m.InsecureLoopback.Set(1)
		logger.Error(nil, "INSECURE: --insecure-test-allow-loopback is set: loopback SANs are approved. This is for local test clusters only; never run it in a real cluster")
	}

	gracePeriod := 30 * time.Second
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Cache:                         approval.CacheOptions(),
		Client:                        approval.ClientOptions(),
		Metrics:                       metricsserver.Options{BindAddress: cfg.MetricsBindAddress},
		HealthProbeBindAddress:        cfg.HealthBindAddress,
		PprofBindAddress:              cfg.PprofBindAddress,
		LeaderElection:                cfg.LeaderElection,
		LeaderElectionID:              cfg.LeaderElectionID,
		LeaderElectionNamespace:       cfg.Namespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &cfg.LeaseDuration,
		RenewDeadline:                 &cfg.RenewDeadline,
		RetryPeriod:                   &cfg.RetryPeriod,
		GracefulShutdownTimeout:       &gracePeriod,
		Logger:                        logger,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("create clientset: %w", err)
	}

	// The Nodes, kept small (package nodes); every replica keeps them.
	nodeStore := nodes.NewStore(nodes.ListWatch(cs), cfg.Approval.Policy.ControlPlaneLabelKeys())
	if err := mgr.Add(nodeStore); err != nil {
		return fmt.Errorf("add node store: %w", err)
	}

	// The records: who reported each address first, and every address the API
	// server was seen at. Every replica keeps them; the leader writes claims.
	store := history.NewStore(mgr.GetAPIReader(), mgr.GetClient(), cfg.Namespace)
	claims := history.NewClaims(cfg.Approval.Policy.AddressSettleTime)
	requeue := make(chan event.TypedGenericEvent[*corev1.Node], 64)
	gained := func(nodes []string) {
		for _, n := range nodes {
			select {
			case requeue <- event.TypedGenericEvent[*corev1.Node]{Object: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}}:
			case <-ctx.Done():
			}
		}
	}
	if err := mgr.Add(history.NewKeeper(claims, store, nodeStore, clock.RealClock{}, mgr.Elected(), gained, m.Errors.WithLabelValues("history"))); err != nil {
		return fmt.Errorf("add address claims: %w", err)
	}
	discovery := kube.NewClusterDiscovery(kube.DiscoveryConfig{
		Reader: mgr.GetAPIReader(), APIServer: restCfg, Store: store, Static: cfg.Static,
		Interval: cfg.DiscoveryInterval, Retention: max(cfg.Approval.Policy.MaxExpiration, kube.SignerDefaultLifetime),
		Clock: clock.RealClock{}, Metrics: m,
	})
	facts := approval.NewCacheFacts(mgr.GetClient(), nodeStore, discovery, claims)
	r := approval.NewReconciler(mgr.GetClient(), cs.CertificatesV1().CertificateSigningRequests(),
		mgr.GetEventRecorder("csrguard"), m, clock.RealClock{}, facts, cfg.Approval)
	if err := r.Setup(ctx, mgr, nodeStore, discovery, cfg.Workers, requeue); err != nil {
		return fmt.Errorf("set up approval controller: %w", err)
	}
	if err := ctrlmetrics.Registry.Register(history.NewConflictCollector(claims)); err != nil {
		return fmt.Errorf("register address conflict collector: %w", err)
	}

	// The pending-CSR metrics are computed from the cache at scrape time.
	if err := ctrlmetrics.Registry.Register(monitor.NewCSRCollector(mgr.GetClient(), clock.RealClock{})); err != nil {
		return fmt.Errorf("register CSR collector: %w", err)
	}
	if cfg.Monitor.Interval > 0 {
		mon := monitor.New(mgr.GetClient(), nodeStore, m, cfg.Monitor)
		if err := mgr.Add(mon); err != nil {
			return fmt.Errorf("add kubelet monitor: %w", err)
		}
		// The per-node probe metrics are the last sweep's, exported at scrape time.
		if err := ctrlmetrics.Registry.Register(mon.Collector()); err != nil {
			return fmt.Errorf("register kubelet probe collector: %w", err)
		}
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("caches", cachesSynced(mgr)); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("nodes", func(*http.Request) error {
		if !nodeStore.HasSynced() {
			return nodes.ErrNotSynced
		}
		return nil
	}); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("cluster-discovery", func(req *http.Request) error {
		_, err := discovery.Cluster(req.Context())
		return err
	}); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("address-claims", func(*http.Request) error {
		if _, _, synced := claims.Get(""); !synced {
			return history.ErrNotSynced
		}
		return nil
	}); err != nil {
		return err
	}
	if cfg.LeaderElection {
		if err := mgr.AddReadyzCheck("leader", leaderKnown(mgr.GetAPIReader(), cfg)); err != nil {
			return err
		}
	}
	logger.Info("Starting csrguard controller", "mode", cfg.Approval.Mode, "workers", cfg.Workers, "namespace", cfg.Namespace,
		"leaderElection", cfg.LeaderElection, "probeInterval", cfg.Monitor.Interval, "gcPercent", gcPercent)
	return mgr.Start(ctx)
}

// cachesSynced is ready once the informers have listed everything.
func cachesSynced(mgr ctrl.Manager) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), 500*time.Millisecond)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("caches not synced yet")
		}
		return nil
	}
}

// leaderKnown is ready once some replica holds a current Lease: a standby is
// ready to take over, and none is ready while nobody leads.
func leaderKnown(reader client.Reader, cfg Config) healthz.Checker {
	return func(req *http.Request) error {
		var lease coordinationv1.Lease
		key := client.ObjectKey{Namespace: cfg.Namespace, Name: cfg.LeaderElectionID}
		if err := reader.Get(req.Context(), key, &lease); err != nil {
			return fmt.Errorf("read leader lease %s: %w", key, err)
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" || lease.Spec.RenewTime == nil {
			return errors.New("no leader yet")
		}
		if age := time.Since(lease.Spec.RenewTime.Time); age > 2*cfg.LeaseDuration {
			return fmt.Errorf("leader %q last renewed %s ago", *lease.Spec.HolderIdentity, age.Round(time.Second))
		}
		return nil
	}
}
