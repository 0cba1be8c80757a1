package alerts

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/monitor"
	"github.com/csrguard/csrguard/test/promtest"
)

// The scenario tests drive the rules with what csrguard's own collectors
// export: internal/metrics set to a cluster state, scraped as text, turned
// into promtool series by promtest. A renamed metric or label breaks them.

// capturedAt is when the scenarios are scraped; promtool time 0.
var capturedAt = time.Unix(1_800_000_000, 0)

// probe is one node's kubelet probe as the monitor exports it.
type probe struct {
	node, result string
	// expiresIn is the served certificate's NotAfter from capturedAt; 0 means
	// no certificate was presented.
	expiresIn time.Duration
	sansMatch bool
	// issuedExpiresIn is the NotAfter of the certificate issued through the
	// node's newest CSR, from capturedAt; 0 means none.
	issuedExpiresIn time.Duration
}

// pendingCSRs stands in for the monitor's CSR collector, with the same descriptions.
type pendingCSRs struct {
	oldest            time.Duration
	byNode            map[string]time.Duration // oldest pending per node
	approvedNotIssued int
}

func (p pendingCSRs) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{metrics.PendingCSRs, metrics.PendingCSROldestAge, metrics.NodePendingCSRs, metrics.NodePendingCSROldestAge, metrics.ApprovedNotIssuedCSRs} {
		ch <- d
	}
}

func (p pendingCSRs) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(metrics.PendingCSRs, prometheus.GaugeValue, float64(len(p.byNode)))
	ch <- prometheus.MustNewConstMetric(metrics.PendingCSROldestAge, prometheus.GaugeValue, p.oldest.Seconds())
	ch <- prometheus.MustNewConstMetric(metrics.ApprovedNotIssuedCSRs, prometheus.GaugeValue, float64(p.approvedNotIssued))
	for node, age := range p.byNode {
		ch <- prometheus.MustNewConstMetric(metrics.NodePendingCSRs, prometheus.GaugeValue, 1, node)
		ch <- prometheus.MustNewConstMetric(metrics.NodePendingCSROldestAge, prometheus.GaugeValue, age.Seconds(), node)
	}
}

// scrape sets csrguard's collectors to probes and pending and returns the
// /metrics text a Prometheus scrape would get.
func scrape(t *testing.T, probes []probe, pending pendingCSRs) string {
	t.Helper()
	m := metrics.New()
	reg := prometheus.NewPedanticRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(pending)
	at := func(d time.Duration) float64 { return float64(capturedAt.Add(d).Unix()) }
	// The per-node series come from the monitor's own collector, fed one sweep.
	sweep := monitor.NewProbeCollector()
	reg.MustRegister(sweep)
	var results []monitor.Result
	issued := map[string]*x509.Certificate{}
	cert := func(expiresIn time.Duration) *x509.Certificate {
		// A year's certificate, as kube-controller-manager signs by default.
		return &x509.Certificate{NotBefore: capturedAt.Add(expiresIn - 365*24*time.Hour), NotAfter: capturedAt.Add(expiresIn), Issuer: pkix.Name{CommonName: "kubernetes"}}
	}
	for _, p := range probes {
		r := monitor.Result{Node: p.node, State: p.result, SANsMatch: p.sansMatch}
		m.ProbeDuration.Observe(0.004)
		if p.expiresIn != 0 {
			r.Cert = cert(p.expiresIn)
		}
		if p.issuedExpiresIn != 0 {
			issued[p.node] = cert(p.issuedExpiresIn)
		}
		results = append(results, r)
	}
	sweep.Set(results, issued)
	m.ProbeSweepDuration.Set(0.8)
	m.ProbeSweepTimestamp.Set(at(-30 * time.Second))
	m.ProbeInterval.Set(180)
	m.Decisions.WithLabelValues("approve", "AllChecksPassed", "enforce").Add(5)
	m.Applied.WithLabelValues("approve").Add(5)
	m.ApprovalLatency.Observe(1.2)

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// scraped turns exposition into promtool series as Prometheus would store a
// csrguard target's scrapes: job and instance labels, and up = 1.
func scraped(t *testing.T, exposition string) []promtest.Series {
	t.Helper()
	series, err := promtest.SeriesFromExposition(strings.NewReader(exposition), capturedAt)
	if err != nil {
		t.Fatal(err)
	}
	series, err = promtest.WithLabels(series, map[string]string{"job": "csrguard", "instance": "10.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	return append(series, promtest.Series{Name: `up{job="csrguard",instance="10.0.0.1:8080"}`, Values: "1x60"})
}

// sweeping makes the probe sweep timestamp advance with time, as a running
// monitor's does, instead of freezing at the capture.
func sweeping(series []promtest.Series) []promtest.Series {
	out := make([]promtest.Series, len(series))
	for i, s := range series {
		if strings.HasPrefix(s.Name, "csrguard_kubelet_probe_sweep_timestamp_seconds{") {
			s.Values = "-30+60x60"
		}
		out[i] = s
	}
	return out
}

type firing = map[string][]map[string]string

func TestScenarios(t *testing.T) {
	promtool := promtest.Promtool(t)
	const d = 24 * time.Hour
	incident := scraped(t, scrape(t, []probe{
		{node: "cp-1", result: metrics.ProbeOK, expiresIn: 300 * d, sansMatch: true},
		// The incident: a pending CSR and no certificate.
		{node: "w1", result: metrics.ProbeNoServingCertificate},
		{node: "w2", result: metrics.ProbeOK, expiresIn: 3 * d, sansMatch: false},
		{node: "w3", result: metrics.ProbeUntrusted, expiresIn: 12 * time.Hour, sansMatch: true},
		{node: "w4", result: metrics.ProbeTimeout, issuedExpiresIn: 2 * d},
	}, pendingCSRs{oldest: 5 * time.Minute, byNode: map[string]time.Duration{"w1": 5 * time.Minute}}))
	healthy := scraped(t, scrape(t, []probe{
		{node: "cp-1", result: metrics.ProbeOK, expiresIn: 300 * d, sansMatch: true, issuedExpiresIn: 300 * d},
		{node: "w1", result: metrics.ProbeOK, expiresIn: 200 * d, sansMatch: true},
	}, pendingCSRs{}))

	expiring := []map[string]string{node("w2", "warning"), node("w3", "critical"), node("w4", "warning")}
	for _, tc := range []struct {
		name   string
		series []promtest.Series
		at     time.Duration
		want   firing
	}{
		{"incident_at_4m", sweeping(incident), 4 * time.Minute, firing{
			"KubeletServingCertificateExpiring": expiring,
		}},
		// w1's pending CSR is part of its Missing page, not a second one.
		{"incident_at_6m", sweeping(incident), 6 * time.Minute, firing{
			"KubeletServingCertificateExpiring": expiring,
			"KubeletServingCertificateMissing":  {node("w1", "critical")},
		}},
		{"incident_at_15m", sweeping(incident), 15 * time.Minute, firing{
			"KubeletServingCertificateExpiring":    expiring,
			"KubeletServingCertificateMissing":     {node("w1", "critical")},
			"KubeletServingProbeFailing":           {node("w4", "warning")},
			"KubeletServingCertificateSANMismatch": {node("w2", "warning")},
			"KubeletServingCertificateUntrusted":   {with(node("w3", "warning"), "result", "untrusted")},
		}},
		{"healthy", sweeping(healthy), 60 * time.Minute, firing{}},
		// Frozen at the capture, the last sweep grows old.
		{"healthy_sweeps_stopped_13m", healthy, 13 * time.Minute, firing{}},
		{"healthy_sweeps_stopped_14m", healthy, 14 * time.Minute, firing{
			"CSRGuardProbeSweepStale": {sev("warning")},
		}},
		{"csrguard_not_scraped", []promtest.Series{{Name: `up{job="kubelet"}`, Values: "1x10"}}, 5 * time.Minute, firing{
			"CSRGuardDown": {sev("critical")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := promtest.Firing(context.Background(), promtool, t.TempDir(), []string{rulesFile}, tc.series, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("firing at %s mismatch (-want +got):\n%s", tc.at, diff)
			}
		})
	}
}
