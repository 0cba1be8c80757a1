// Package metrics defines every Prometheus metric csrguard exports, in one
// place, with its name, help and labels. It owns no logic: the controller and
// the monitor update these collectors; docs/metrics.md documents them.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/csrguard/csrguard/internal/buildinfo"
)

// Metrics are csrguard's collectors. Create them with New and register them
// with Register; tests give each its own registry.
type Metrics struct {
	// Decisions counts decisions taken, by verdict, reason code and mode.
	// In dry-run and no-deny modes it counts what would have been done.
	Decisions *prometheus.CounterVec
	// Applied counts decisions written to the API (approvals and denials).
	Applied *prometheus.CounterVec
	// ApprovalLatency observes the time from a CSR's creation to its approval.
	ApprovalLatency prometheus.Histogram
	// EvaluationErrors counts evaluations that could not decide because facts
	// were unavailable, and writes that failed; both are retried.
	Errors *prometheus.CounterVec
	// BreakerOpen is 1 while the global approval breaker holds approvals.
	BreakerOpen prometheus.Gauge
	// InsecureLoopback is 1 when the test-only loopback allowance is on.
	InsecureLoopback prometheus.Gauge
	// BuildInfo is always 1, labelled with the running build.
	BuildInfo *prometheus.GaugeVec
}

// New returns csrguard's collectors, unregistered.
func New() *Metrics {
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrguard_decisions_total",
			Help: "Decisions taken on kubelet-serving CSRs, by verdict (approve, deny, hold), reason code and mode.",
		}, []string{"verdict", "reason", "mode"}),
		Applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrguard_csr_writes_total",
			Help: "Approvals and denials written to the API server, by verdict.",
		}, []string{"verdict"}),
		ApprovalLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "csrguard_approval_latency_seconds",
			Help:    "Time from a kubelet-serving CSR's creation to its approval by csrguard.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrguard_errors_total",
			Help: "Errors that kept a CSR from being decided or its decision from being written; each is retried. Stage is facts or write.",
		}, []string{"stage"}),
		BreakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "csrguard_breaker_open",
			Help: "1 while the global approval breaker is open and approvals are held, else 0.",
		}),
		InsecureLoopback: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "csrguard_insecure_loopback_allowed",
			Help: "1 when the test-only --insecure-test-allow-loopback flag is set. Must be 0 in production.",
		}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "csrguard_build_info",
			Help: "Always 1; labels describe the running csrguard build.",
		}, []string{"version", "revision", "goversion"}),
	}
	v, rev, goV := buildinfo.Get()
	m.BuildInfo.WithLabelValues(v, rev, goV).Set(1)
	return m
}

// Register registers every collector with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Decisions, m.Applied, m.ApprovalLatency, m.Errors, m.BreakerOpen, m.InsecureLoopback, m.BuildInfo} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
