package monitor

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"sort"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// Config configures the Monitor.
type Config struct {
	// Interval between sweeps; each start is jittered by up to 10%.
	Interval time.Duration
	// Concurrency bounds the probes in flight; default 32.
	Concurrency int
	Prober      Prober
	// ClusterCA is the cluster CA (the API server's, as in every namespace's
	// kube-root-ca.crt). When Prober.Roots is not set, probes verify against
	// it where it signs kubelet-serving certificates — every certificate
	// issued through a CSR chains to it, as on Talos and kubeadm — so
	// untrusted certificates are found without a --kubelet-ca-file.
	ClusterCA *x509.CertPool
}

// Monitor probes every Node's kubelet once per Interval and exports what it
// finds as metrics: the per-node results through its Collector, the sweep's
// duration and time through metrics.Metrics. It runs only on the leader, so
// replicas do not multiply the probes.
type Monitor struct {
	reader  client.Reader
	nodes   NodeLister
	metrics *metrics.Metrics
	cfg     Config
	probes  *ProbeCollector
	// clusterCASigns is true once the issued certificates showed that
	// ClusterCA signs kubelet-serving ones; it stays true while no issued
	// certificate says otherwise (approved CSRs are cleaned up after an hour).
	clusterCASigns bool
}

// NodeLister lists the Nodes to probe: a nodes.Store.
type NodeLister interface {
	List() ([]*nodes.Node, error)
	WaitForSync(ctx context.Context) error
}

// New returns a Monitor probing the Nodes of nodes and reading CSRs from reader (a cache).
func New(reader client.Reader, nodes NodeLister, m *metrics.Metrics, cfg Config) *Monitor {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	// Exported so that an alert on stale sweeps follows the configured interval.
	m.ProbeInterval.Set(cfg.Interval.Seconds())
	return &Monitor{reader: reader, nodes: nodes, metrics: m, cfg: cfg, probes: NewProbeCollector()}
}

// Collector returns the collector that exports the last sweep's per-node
// results; register it once.
func (m *Monitor) Collector() *ProbeCollector { return m.probes }

// NeedLeaderElection is true: only the leader probes.
func (m *Monitor) NeedLeaderElection() bool { return true }

// Start sweeps, once the Nodes are listed, until ctx ends.
func (m *Monitor) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("monitor")
	if err := m.nodes.WaitForSync(ctx); err != nil {
		return nil // ctx ended
	}
	for {
		start := time.Now()
		results, err := m.Sweep(ctx)
		if err != nil {
			logger.Error(err, "Failed to sweep kubelet serving certificates")
		} else {
			counts := map[string]int{}
			for _, r := range results {
				counts[r.State]++
			}
			logger.V(1).Info("Probed kubelets", "nodes", len(results), "results", counts, "duration", time.Since(start).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait.Jitter(m.cfg.Interval, 0.1)):
		}
	}
}

// Sweep probes every Node once, updates the metrics and returns the results
// sorted by node. A failed sweep leaves the previous sweep's results exported.
func (m *Monitor) Sweep(ctx context.Context) ([]Result, error) {
	start := time.Now()
	kept, err := m.nodes.List()
	if err != nil {
		return nil, err
	}
	// What Probe reads of a Node.
	nodes := make([]corev1.Node, len(kept))
	for i, n := range kept {
		nodes[i].Name, nodes[i].Status.Addresses = n.Name, n.Addresses
		nodes[i].Status.DaemonEndpoints.KubeletEndpoint.Port = n.KubeletPort
	}
	// Read only, so the cache's objects are not deep-copied: a sweep of 10,000 CSRs would
	// otherwise copy ~15 MB.
	var csrs certificatesv1.CertificateSigningRequestList
	if err := m.reader.List(ctx, &csrs, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	issued := Issued(csrs.Items)
	prober := m.cfg.Prober
	if prober.Roots == nil && m.cfg.ClusterCA != nil {
		if signs, known := Signs(m.cfg.ClusterCA, issued); known {
			m.clusterCASigns = signs
		}
		if m.clusterCASigns {
			prober.Roots = m.cfg.ClusterCA
		}
	}
	results := ProbeAll(ctx, prober, nodes, m.cfg.Concurrency, nil)
	for _, r := range results {
		m.metrics.ProbeDuration.Observe(r.Duration.Seconds())
	}
	m.probes.Set(results, issued)
	m.metrics.ProbeSweepDuration.Set(time.Since(start).Seconds())
	m.metrics.ProbeSweepTimestamp.Set(float64(time.Now().Unix()))
	return results, nil
}

// ProbeAll probes nodes with at most concurrency probes in flight and returns
// the results sorted by node. progress, if set, is called after each probe.
func ProbeAll(ctx context.Context, p Prober, nodes []corev1.Node, concurrency int, progress func(done, total int)) []Result {
	results := make([]Result, len(nodes))
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	done := 0
	for range max(1, min(concurrency, len(nodes))) {
		wg.Go(func() {
			for i := range work {
				results[i] = p.Probe(ctx, &nodes[i])
				if progress != nil {
					mu.Lock()
					done++
					progress(done, len(nodes))
					mu.Unlock()
				}
			}
		})
	}
	for i := range nodes {
		work <- i
	}
	close(work)
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].Node < results[j].Node })
	return results
}

// Issued returns, per node, the issued kubelet-serving certificate with the
// latest NotAfter among csrs. A status.certificate is read as DER, as the
// controller's cache keeps it, or else as PEM (its first block).
func Issued(csrs []certificatesv1.CertificateSigningRequest) map[string]*x509.Certificate {
	out := map[string]*x509.Certificate{}
	for i := range csrs {
		csr := &csrs[i]
		node, ok := servingcsr.NodeName(csr.Spec.Username)
		if !ok || !servingcsr.InScope(csr) || len(csr.Status.Certificate) == 0 {
			continue
		}
		// DER as the controller's cache keeps it (approval.CacheOptions), or else PEM as the
		// API server holds it (its first block). DER is tried first: PEM text is never DER,
		// but a DER certificate may hold a PEM block in the bytes its requester chose (an RSA
		// modulus), which pem.Decode would find in it.
		c, err := x509.ParseCertificate(csr.Status.Certificate)
		if err != nil {
			block, _ := pem.Decode(csr.Status.Certificate)
			if block == nil {
				continue
			}
			if c, err = x509.ParseCertificate(block.Bytes); err != nil {
				continue
			}
		}
		if prev := out[node]; prev == nil || c.NotAfter.After(prev.NotAfter) {
			out[node] = c
		}
	}
	return out
}

// Signs reports whether roots signed every certificate in issued (see
// Issued); known is false when there is none to tell by. Each is verified at
// its own NotBefore, so an expired one still tells who signed it.
func Signs(roots *x509.CertPool, issued map[string]*x509.Certificate) (signs, known bool) {
	for _, c := range issued {
		opts := x509.VerifyOptions{Roots: roots, CurrentTime: c.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := c.Verify(opts); err != nil {
			return false, true
		}
		known = true
	}
	return known, known
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
