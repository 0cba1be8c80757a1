package e2e

import (
	"context"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/test/controlplane"
	"github.com/csrguard/csrguard/test/kubelet"
	"github.com/csrguard/csrguard/test/promtest"
)

// TestMonitoringIncident: with nothing approving (csrguard in dry-run), the
// probe reports every kubelet without a serving certificate and the pending
// CSRs age; once csrguard enforces, the probe reports each certificate with
// its real expiry and the backlog is gone.
func TestMonitoringIncident(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	for _, name := range []string{"talos-cp-1", "talos-worker-1", "talos-worker-2"} {
		c.addKubelet(ctx, name, kubelet.Talos)
		c.waitPending(ctx, name)
	}
	probe := []string{"--probe-interval=1s", "--probe-timeout=2s"}

	dry := c.startCSRGuard(ctx, "csrguard-dry-run", true, append(probe, "--mode=dry-run")...)
	var first scrape
	controlplane.Eventually(t, ctx, "every kubelet reported without a serving certificate", func() bool {
		first = dry.scrape(ctx)
		for _, k := range c.nodes {
			if first.value("csrguard_kubelet_probe_result", "node", k.Name(), "result", "no-serving-certificate") != 1 {
				return false
			}
		}
		return first.value("csrguard_pending_csrs") == 3
	})
	// Ages grow between scrapes, with no probe or reconcile in between needed.
	controlplane.Eventually(t, ctx, "pending ages grow", func() bool {
		later := dry.scrape(ctx)
		for _, k := range c.nodes {
			if later.value("csrguard_node_pending_csr_oldest_age_seconds", "node", k.Name()) <= first.value("csrguard_node_pending_csr_oldest_age_seconds", "node", k.Name()) {
				return false
			}
		}
		return true
	})
	incident := dry.scrape(ctx)
	if err := dry.Stop(); err != nil {
		t.Fatal(err)
	}
	// One page per node: its pending CSR is part of KubeletServingCertificateMissing.
	c.checkAlerts(ctx, incident, map[string][]string{
		"KubeletServingCertificateMissing": {"talos-cp-1", "talos-worker-1", "talos-worker-2"},
	})

	g := c.startCSRGuard(ctx, "csrguard", true, probe...)
	var healthy scrape
	controlplane.Eventually(t, ctx, "every kubelet reported with a valid certificate", func() bool {
		healthy = g.scrape(ctx)
		for _, k := range c.nodes {
			cert := k.Current()
			if cert == nil || healthy.value("csrguard_kubelet_probe_result", "node", k.Name(), "result", "ok") != 1 ||
				healthy.value("csrguard_kubelet_serving_cert_expiry_timestamp_seconds", "node", k.Name()) != float64(cert.NotAfter.Unix()) ||
				healthy.value("csrguard_kubelet_serving_cert_sans_match", "node", k.Name()) != 1 {
				return false
			}
		}
		return healthy.value("csrguard_pending_csrs") == 0
	})
	for _, k := range c.nodes {
		if got, want := healthy.value("csrguard_kubelet_issued_cert_expiry_timestamp_seconds", "node", k.Name()), float64(k.Current().NotAfter.Unix()); got != want {
			t.Errorf("%s: issued certificate expiry %v, want %v", k.Name(), got, want)
		}
	}
	c.checkAlerts(ctx, healthy, map[string][]string{})
}

// TestMonitoringExpiryAndMismatch: a short-lived certificate is reported with
// its real remaining time, and a certificate that no longer matches its
// Node's addresses is reported as such.
func TestMonitoringExpiryAndMismatch(t *testing.T) {
	ctx := controlplane.Deadline(t, 3*time.Minute)
	c := newCluster(t, controlplane.Options{})
	g := c.startCSRGuard(ctx, "csrguard", true, "--probe-interval=1s")
	cfg, err := c.cp.NodeConfig("short-lived")
	if err != nil {
		t.Fatal(err)
	}
	short, err := kubelet.Start(ctx, kubelet.Options{Name: "short-lived", Config: cfg, Lifetime: 15 * time.Minute,
		Addresses: kubelet.Addresses("short-lived", c.pool.Next())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(short.Stop)
	moved := c.addKubelet(ctx, "moved", kubelet.Debian)
	shortCert, err := short.WaitForCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := moved.WaitForCertificate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if left := time.Until(shortCert.NotAfter); left > 16*time.Minute || left < 14*time.Minute {
		t.Fatalf("short-lived certificate has %s left, want about 15m", left)
	}

	// Someone (a cloud controller, an operator) adds an address to the Node;
	// the kubelet has not rotated for it.
	node, err := c.admin.CoreV1().Nodes().Get(ctx, "moved", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.7"})
	if _, err := c.admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	var s scrape
	controlplane.Eventually(t, ctx, "expiry and SAN mismatch reported", func() bool {
		s = g.scrape(ctx)
		return s.value("csrguard_kubelet_serving_cert_expiry_timestamp_seconds", "node", "short-lived") == float64(shortCert.NotAfter.Unix()) &&
			s.value("csrguard_kubelet_serving_cert_sans_match", "node", "moved") == 0 &&
			s.value("csrguard_kubelet_serving_cert_sans_match", "node", "short-lived") == 1
	})
	c.checkAlerts(ctx, s, map[string][]string{
		"KubeletServingCertificateExpiring":    {"short-lived"},
		"KubeletServingCertificateSANMismatch": {"moved"},
	})
}

// scrape is one parsed /metrics response, with its text for promtool.
type scrape struct {
	at       time.Time
	text     string
	families map[string]*dto.MetricFamily
}

func (g *guard) scrape(ctx context.Context) scrape {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.metrics, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return scrape{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return scrape{}
	}
	return scrape{at: time.Now(), text: string(b), families: fams}
}

// value returns the value of the series of name with these label pairs
// (others ignored), or NaN if absent.
func (s scrape) value(name string, labelPairs ...string) float64 {
	mf := s.families[name]
	if mf == nil {
		return math.NaN()
	}
next:
	for _, m := range mf.Metric {
		for i := 0; i+1 < len(labelPairs); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labelPairs[i] && l.GetValue() == labelPairs[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return math.NaN()
}

// checkAlerts evaluates csrguard's alert rules with promtool against the
// metrics of s, held constant for 16 minutes of promtool time (ages grow,
// timestamps are rebased: see test/promtest), and compares which alerts fire
// for which nodes with want.
func (c *cluster) checkAlerts(ctx context.Context, s scrape, want map[string][]string) {
	c.t.Helper()
	series, err := promtest.SeriesFromExposition(strings.NewReader(s.text), s.at)
	if err != nil {
		c.t.Fatal(err)
	}
	scrapeLabels := map[string]string{"job": "csrguard", "instance": "csrguard:8080"}
	if series, err = promtest.WithLabels(series, scrapeLabels); err != nil {
		c.t.Fatal(err)
	}
	series = append(series, promtest.Series{Name: promtest.Selector("up", scrapeLabels), Values: "1+0x60"})
	firing, err := promtest.Firing(ctx, promtest.Promtool(c.t), c.t.TempDir(), []string{rulesFile}, series, 16*time.Minute)
	if err != nil {
		c.t.Fatal(err)
	}
	got := map[string][]string{}
	for alert, labelSets := range firing {
		if ignoredAlerts[alert] {
			continue
		}
		for _, l := range labelSets {
			got[alert] = append(got[alert], l["node"])
		}
		slices.Sort(got[alert])
	}
	if diff := cmp.Diff(got, want); diff != "" {
		c.t.Errorf("alerts firing on captured metrics (-got +want):\n%s", diff)
	}
}

// rulesFile holds csrguard's alert rules.
const rulesFile = "../../deploy/prometheus/csrguard.rules.yaml"

// ignoredAlerts fire on every capture from these tests by construction: a
// captured sweep timestamp does not advance in promtool's time.
var ignoredAlerts = map[string]bool{"CSRGuardProbeSweepStale": true}
