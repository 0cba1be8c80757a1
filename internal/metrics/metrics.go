// Package metrics defines every Prometheus metric csrguard exports, in one
// place, with its name, help and labels. It owns no logic: the controller and
// the monitor update these collectors, or emit these descriptions from
// collectors of their own at scrape time; docs/metrics.md documents them.
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
	// BreakerOpen is 1 while the global approval breaker holds approvals: until
	// the window that filled it has passed, whether or not anything is retried.
	BreakerOpen *Until
	// InsecureLoopback is 1 when the test-only loopback allowance is on.
	InsecureLoopback prometheus.Gauge
	// ServiceCIDRAPIMissing is 1 while the API server serves no ServiceCIDR
	// objects, so the service range is only what --service-cidrs says.
	ServiceCIDRAPIMissing prometheus.Gauge
	// BuildInfo is always 1, labelled with the running build.
	BuildInfo *prometheus.GaugeVec

	// ProbeDuration observes each kubelet TLS probe.
	ProbeDuration prometheus.Histogram
	// ProbeSweepDuration is how long the last sweep over every node took.
	ProbeSweepDuration prometheus.Gauge
	// ProbeSweepTimestamp is when the last sweep finished.
	ProbeSweepTimestamp prometheus.Gauge
	// ProbeInterval is --probe-interval in seconds, 0 when probing is off,
	// so an alert on stale sweeps follows the configured interval.
	ProbeInterval prometheus.Gauge
}

// Probe results: the values of ProbeResult's result label.
const (
	ProbeOK                   = "ok"
	ProbeNoServingCertificate = "no-serving-certificate"
	ProbeRefused              = "refused"
	ProbeTimeout              = "timeout"
	ProbeUntrusted            = "untrusted"
	// ProbeSelfSigned is a certificate the kubelet signed itself: serving
	// certificate rotation is off on that node.
	ProbeSelfSigned = "self-signed"
	ProbeOther      = "other"
)

// New returns csrguard's collectors, unregistered.
func New() *Metrics {
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrguard_decisions_total",
			Help: "Decisions taken on kubelet-serving CSRs, by verdict (approve, deny, hold, supersede), reason code and mode.",
		}, []string{"verdict", "reason", "mode"}),
		Applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "csrguard_csr_writes_total",
			Help: "Approvals and denials written to the API server, by verdict (approve, deny, supersede: a denial of a superseded CSR).",
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
		BreakerOpen: NewUntil("csrguard_breaker_open",
			"1 while the global approval breaker is open and approvals are held, else 0."),
		InsecureLoopback: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "csrguard_insecure_loopback_allowed",
			Help: "1 when the test-only --insecure-test-allow-loopback flag is set. Must be 0 in production.",
		}),
		ServiceCIDRAPIMissing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "csrguard_servicecidr_api_missing",
			Help: "1 while the API server serves no ServiceCIDR objects (before Kubernetes 1.33, or turned off): the service range is only the kubernetes Service's IPs and --service-cidrs, else 0.",
		}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "csrguard_build_info",
			Help: "Always 1; labels describe the running csrguard build.",
		}, []string{"version", "revision", "goversion"}),
	}
	m.ProbeDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "csrguard_kubelet_probe_duration_seconds",
		Help:    "Duration of each kubelet TLS probe.",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	})
	m.ProbeSweepDuration = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "csrguard_kubelet_probe_sweep_duration_seconds",
		Help: "How long the last sweep of TLS probes over every node took.",
	})
	m.ProbeSweepTimestamp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "csrguard_kubelet_probe_sweep_timestamp_seconds",
		Help: "When the last sweep of TLS probes finished, as a Unix timestamp.",
	})
	m.ProbeInterval = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "csrguard_kubelet_probe_interval_seconds",
		Help: "The configured interval between sweeps of kubelet TLS probes (--probe-interval); 0 when probing is off.",
	})
	v, rev, goV := buildinfo.Get()
	m.BuildInfo.WithLabelValues(v, rev, goV).Set(1)
	return m
}

// Register registers every collector with reg.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		m.Decisions, m.Applied, m.ApprovalLatency, m.Errors, m.BreakerOpen, m.InsecureLoopback, m.ServiceCIDRAPIMissing, m.BuildInfo,
		m.ProbeDuration, m.ProbeSweepDuration, m.ProbeSweepTimestamp, m.ProbeInterval,
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Descriptions of the metrics computed at scrape time from the CSR cache by
// monitor.CSRCollector, so ages grow between sweeps.
var (
	PendingCSRs = prometheus.NewDesc("csrguard_pending_csrs",
		"Pending kubelet-serving CSRs (no Approved, Denied or Failed condition) that nodes still wait on: not superseded by a newer approved or issued CSR of their node.", nil, nil)
	PendingCSROldestAge = prometheus.NewDesc("csrguard_pending_csr_oldest_age_seconds",
		"Age of the oldest pending kubelet-serving CSR a node still waits on; 0 when none is pending.", nil, nil)
	NodePendingCSRs = prometheus.NewDesc("csrguard_node_pending_csrs",
		"Pending kubelet-serving CSRs per requesting node, not counting those superseded by a newer approved or issued CSR; only nodes with such CSRs are listed.", []string{"node"}, nil)
	NodePendingCSROldestAge = prometheus.NewDesc("csrguard_node_pending_csr_oldest_age_seconds",
		"How long each node has been waiting: the age of its oldest pending kubelet-serving CSR not superseded by a newer approved or issued one; only waiting nodes are listed.", []string{"node"}, nil)
	SupersededCSRs = prometheus.NewDesc("csrguard_superseded_pending_csrs",
		"Pending kubelet-serving CSRs whose node has a newer approved or issued CSR: abandoned by their kubelets, denied as Superseded in enforce mode, left pending in the other modes.", nil, nil)
	NodeAddressConflicts = prometheus.NewDesc("csrguard_node_address_conflicts",
		"Addresses a node reports that another node owns (it reported them first) or reports too; only nodes in conflict are listed. A node with conflicts copied another's address into its status, or two nodes share one.", []string{"node"}, nil)
	CSRCacheUp = prometheus.NewDesc("csrguard_csr_cache_up",
		"1 when the CSR cache could be read at this scrape, else 0 (and the pending-CSR series are missing from the scrape).", nil, nil)
	ApprovedNotIssuedCSRs = prometheus.NewDesc("csrguard_approved_unissued_csrs",
		"Kubelet-serving CSRs approved more than a minute ago that the signer has not issued (signer down or not configured for kubelet-serving).", nil, nil)
)

// Descriptions of the per-node metrics computed at scrape time from the last
// probe sweep by monitor.ProbeCollector: a node that was not in the last
// sweep has no series.
var (
	// ProbeResult is 1 for each node's latest kubelet probe result (one
	// series per node; the result label changes).
	ProbeResult = prometheus.NewDesc("csrguard_kubelet_probe_result",
		"1 for the latest result of the TLS probe of each node's kubelet: ok, no-serving-certificate (the kubelet answers 'tls: internal error'), refused, timeout, untrusted, self-signed (serving certificate rotation off) or other.", []string{"node", "result"}, nil)
	// ServingCertExpiry is the NotAfter of the certificate each kubelet serves.
	ServingCertExpiry = prometheus.NewDesc("csrguard_kubelet_serving_cert_expiry_timestamp_seconds",
		"NotAfter of the serving certificate each kubelet presented to the last probe, as a Unix timestamp.", []string{"node"}, nil)
	// ServingCertNotBefore is the NotBefore of the certificate each kubelet
	// serves: with ServingCertExpiry, the share of its lifetime elapsed.
	ServingCertNotBefore = prometheus.NewDesc("csrguard_kubelet_serving_cert_not_before_timestamp_seconds",
		"NotBefore of the serving certificate each kubelet presented to the last probe, as a Unix timestamp.", []string{"node"}, nil)
	// ServingCertSANsMatch is 1 when a kubelet's certificate carries exactly
	// the SANs its Node's addresses call for, else 0.
	ServingCertSANsMatch = prometheus.NewDesc("csrguard_kubelet_serving_cert_sans_match",
		"1 when the kubelet's serving certificate carries exactly the SANs its Node's addresses call for, else 0.", []string{"node"}, nil)
	// ServingCertInfo is 1, labelled with the issuer of each kubelet's certificate.
	ServingCertInfo = prometheus.NewDesc("csrguard_kubelet_serving_cert_info",
		"Always 1; the issuer label names who signed the serving certificate each kubelet presented.", []string{"node", "issuer"}, nil)
	// IssuedCertExpiry is the NotAfter of the newest certificate issued to
	// each node through an approved CSR, known even where probes cannot reach.
	IssuedCertExpiry = prometheus.NewDesc("csrguard_kubelet_issued_cert_expiry_timestamp_seconds",
		"NotAfter of the newest kubelet-serving certificate issued to each node through a CSR, as a Unix timestamp.", []string{"node"}, nil)
	// IssuedCertNotBefore is the NotBefore of that same certificate.
	IssuedCertNotBefore = prometheus.NewDesc("csrguard_kubelet_issued_cert_not_before_timestamp_seconds",
		"NotBefore of the newest kubelet-serving certificate issued to each node through a CSR, as a Unix timestamp.", []string{"node"}, nil)
)
