package monitor

import (
	"crypto/x509"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/csrguard/csrguard/internal/metrics"
)

// ProbeCollector exports the per-node results of the last probe sweep at
// scrape time. It holds only that sweep, so a node that was not in it has no
// series: nothing is deleted by hand and nothing goes stale.
type ProbeCollector struct {
	mu      sync.Mutex
	results []Result
	issued  map[string]*x509.Certificate
}

// NewProbeCollector returns a collector with no sweep yet; it exports nothing
// until Set is called.
func NewProbeCollector() *ProbeCollector { return &ProbeCollector{} }

// Set replaces the exported sweep with results, one per node, and issued, the
// newest certificate issued to each node (see Issued). Only nodes in results
// are exported. Set keeps both as they are: the caller must not change them.
func (c *ProbeCollector) Set(results []Result, issued map[string]*x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.results, c.issued = results, issued
}

// Describe implements prometheus.Collector.
func (c *ProbeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{metrics.ProbeResult, metrics.ServingCertExpiry, metrics.ServingCertSANsMatch, metrics.ServingCertInfo, metrics.IssuedCertExpiry, metrics.ServingCertNotBefore, metrics.IssuedCertNotBefore} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ProbeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.results {
		ch <- prometheus.MustNewConstMetric(metrics.ProbeResult, prometheus.GaugeValue, 1, r.Node, r.State)
		// A kubelet that presented no certificate has no certificate series.
		if r.Cert != nil {
			ch <- prometheus.MustNewConstMetric(metrics.ServingCertExpiry, prometheus.GaugeValue, float64(r.Cert.NotAfter.Unix()), r.Node)
			ch <- prometheus.MustNewConstMetric(metrics.ServingCertNotBefore, prometheus.GaugeValue, float64(r.Cert.NotBefore.Unix()), r.Node)
			ch <- prometheus.MustNewConstMetric(metrics.ServingCertInfo, prometheus.GaugeValue, 1, r.Node, r.Cert.Issuer.CommonName)
			// A self-signed certificate is reported as such, not as a SAN mismatch.
			if r.State != metrics.ProbeSelfSigned {
				ch <- prometheus.MustNewConstMetric(metrics.ServingCertSANsMatch, prometheus.GaugeValue, boolFloat(r.SANsMatch), r.Node)
			}
		}
		if cert := c.issued[r.Node]; cert != nil {
			ch <- prometheus.MustNewConstMetric(metrics.IssuedCertExpiry, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), r.Node)
			ch <- prometheus.MustNewConstMetric(metrics.IssuedCertNotBefore, prometheus.GaugeValue, float64(cert.NotBefore.Unix()), r.Node)
		}
	}
}
