package monitor

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// CSRCollector computes the pending-CSR metrics from the CSR cache at each
// scrape, so ages are current without a loop. kube-state-metrics has no
// pending series and no node label for CSRs; these fill that gap.
type CSRCollector struct {
	reader client.Reader
	clock  clock.PassiveClock
}

// NewCSRCollector returns a collector over reader (a cache of kubelet-serving CSRs).
func NewCSRCollector(reader client.Reader, clk clock.PassiveClock) *CSRCollector {
	return &CSRCollector{reader: reader, clock: clk}
}

// Describe implements prometheus.Collector.
func (c *CSRCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{metrics.PendingCSRs, metrics.PendingCSROldestAge, metrics.NodePendingCSRs, metrics.NodePendingCSROldestAge, metrics.ApprovedNotIssuedCSRs, metrics.SupersededCSRs, metrics.CSRCacheUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *CSRCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Read only: every scrape would otherwise deep-copy every cached CSR.
	var list certificatesv1.CertificateSigningRequestList
	if err := c.reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		// Not an invalid metric: that turns the whole /metrics into a 500,
		// and every other series (csrguard's own health, the probes) with it.
		// The pending series are left out and csrguard_csr_cache_up says why.
		ch <- prometheus.MustNewConstMetric(metrics.CSRCacheUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(metrics.CSRCacheUp, prometheus.GaugeValue, 1)
	s := Summarise(list.Items, c.clock.Now())
	ch <- prometheus.MustNewConstMetric(metrics.PendingCSRs, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(metrics.PendingCSROldestAge, prometheus.GaugeValue, s.OldestPending.Seconds())
	ch <- prometheus.MustNewConstMetric(metrics.ApprovedNotIssuedCSRs, prometheus.GaugeValue, float64(s.ApprovedNotIssued))
	ch <- prometheus.MustNewConstMetric(metrics.SupersededCSRs, prometheus.GaugeValue, float64(s.Superseded))
	for node, n := range s.PendingByNode {
		ch <- prometheus.MustNewConstMetric(metrics.NodePendingCSRs, prometheus.GaugeValue, float64(n.Count), node)
		ch <- prometheus.MustNewConstMetric(metrics.NodePendingCSROldestAge, prometheus.GaugeValue, n.Oldest.Seconds(), node)
	}
}

// Summary is the state of the kubelet-serving CSR flow at one moment.
//
// Pending counts the CSRs nodes still wait on: a pending CSR whose node has a newer approved or
// issued one (servingcsr.Supersede, Final) is abandoned, and counted in Superseded instead, so
// that a node's backlog stops counting as a wait the moment its newest CSR is approved.
type Summary struct {
	Pending       int
	OldestPending time.Duration
	// PendingByNode is each node's wait: how many of its CSRs are pending and how long ago the
	// oldest of them was filed, which is how long the node has been waiting.
	PendingByNode map[string]NodePending
	// Superseded counts pending CSRs finally superseded by a newer approved or issued CSR of
	// their node.
	Superseded int
	// ApprovedNotIssued counts CSRs approved over servingcsr.IssueGrace ago
	// without a certificate or a Failed condition: the signer is not issuing.
	ApprovedNotIssued int
}

// NodePending is one node's pending backlog.
type NodePending struct {
	Count  int
	Oldest time.Duration
}

// Summarise computes the Summary of csrs (other signers are ignored) at now.
func Summarise(csrs []certificatesv1.CertificateSigningRequest, now time.Time) Summary {
	s := Summary{PendingByNode: map[string]NodePending{}}
	superseded := servingcsr.Supersede(csrs)
	for i := range csrs {
		csr := &csrs[i]
		if !servingcsr.InScope(csr) {
			continue
		}
		switch servingcsr.StateOf(csr) {
		case servingcsr.Pending:
			if superseded[csr.Name].Final {
				s.Superseded++
				continue
			}
			age := now.Sub(csr.CreationTimestamp.Time)
			s.Pending++
			s.OldestPending = max(s.OldestPending, age)
			node, ok := servingcsr.NodeName(csr.Spec.Username)
			if !ok {
				node = "(not a node)"
			}
			n := s.PendingByNode[node]
			n.Count++
			n.Oldest = max(n.Oldest, age)
			s.PendingByNode[node] = n
		case servingcsr.Approved:
			if now.Sub(servingcsr.ApprovedAt(csr)) > servingcsr.IssueGrace {
				s.ApprovedNotIssued++
			}
		}
	}
	return s
}
