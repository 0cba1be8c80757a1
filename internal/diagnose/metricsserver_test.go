package diagnose

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/severity"
)

func metricsServerDeployment(ready int32, args ...string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "metrics-server", Namespace: "kube-system"}}
	d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "metrics-server", Image: "registry.k8s.io/metrics-server/metrics-server:v0.8.0", Args: args}}
	d.Status.ReadyReplicas = ready
	return d
}

func TestMetricsServerTLS(t *testing.T) {
	rotationOff := func(t *testing.T) Snapshot {
		s := healthy(t, "Debian")
		s.CSRs, s.Probes = nil, nil
		return s
	}
	tests := []struct {
		name string
		snap func(*testing.T) Snapshot
		d    *appsv1.Deployment
		want severity.Level // 0: no finding
	}{
		{"none_installed", func(t *testing.T) Snapshot { return healthy(t, "Debian") }, nil, 0},
		{"rotation_on_verifying", func(t *testing.T) Snapshot { return healthy(t, "Debian") }, metricsServerDeployment(1, "--kubelet-certificate-authority=/ca/ca.crt"), severity.Info},
		{"rotation_on_insecure", func(t *testing.T) Snapshot { return healthy(t, "Debian") }, metricsServerDeployment(1, "--kubelet-insecure-tls"), severity.Warning},
		{"rotation_off_verifying", rotationOff, metricsServerDeployment(0), severity.Critical},
		{"rotation_off_insecure", rotationOff, metricsServerDeployment(1, "--kubelet-insecure-tls"), severity.Info},
		{"not_ready", func(t *testing.T) Snapshot { return healthy(t, "Debian") }, metricsServerDeployment(0), severity.Warning},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.snap(t)
			if tc.d != nil {
				m, ok := metricsServer(tc.d)
				if !ok {
					t.Fatal("metricsServer did not recognise the Deployment")
				}
				s.MetricsServers = []MetricsServer{m}
			}
			var got severity.Level
			for _, f := range Diagnose(s) {
				if f.ID == IDMetricsServerTLS {
					got = f.Severity
				}
			}
			if got != tc.want {
				t.Errorf("metrics-server finding severity = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMetricsServerCannotScrape: in the incident the metrics API lacks the
// nodes whose kubelets serve no certificate; the finding names them with
// metrics-server's TLS mode, and the incident finding cites it.
func TestMetricsServerCannotScrape(t *testing.T) {
	s := incident(t, talosOS)
	m, _ := metricsServer(metricsServerDeployment(1, "--kubelet-certificate-authority=/ca/kubelet-serving.crt"))
	s.MetricsServers = []MetricsServer{m}
	s.NodeMetrics = &NodeMetrics{Nodes: []string{"node-c"}}
	var tls, noCert *Finding
	findings := Diagnose(s)
	for i, f := range findings {
		switch f.ID {
		case IDMetricsServerTLS:
			tls = &findings[i]
		case IDKubeletsWithoutCert:
			noCert = &findings[i]
		}
	}
	if tls == nil || noCert == nil {
		t.Fatalf("findings %v, want %s and %s", ids(findings), IDMetricsServerTLS, IDKubeletsWithoutCert)
	}
	if tls.Severity != severity.Warning || tls.Title != "metrics-server cannot scrape 2 kubelets: they have no serving certificate" {
		t.Errorf("metrics-server finding: %v %q", tls.Severity, tls.Title)
	}
	evidence := strings.Join(tls.Evidence, "\n")
	for _, want := range []string{"--kubelet-certificate-authority=/ca/kubelet-serving.crt", "no metrics for node-a node-b"} {
		if !strings.Contains(evidence, want) {
			t.Errorf("metrics-server evidence lacks %q:\n%s", want, evidence)
		}
	}
	if !strings.Contains(strings.Join(noCert.Evidence, "\n"), "metrics-server kube-system/metrics-server (verifies kubelet certificates against --kubelet-certificate-authority=/ca/kubelet-serving.crt) has no metrics for node-a node-b, so kubectl top fails") {
		t.Errorf("incident evidence does not cite metrics-server:\n%s", strings.Join(noCert.Evidence, "\n"))
	}

	// The metrics API itself failing is evidence too.
	s.NodeMetrics = &NodeMetrics{Err: "the server is currently unable to handle the request"}
	for _, f := range Diagnose(s) {
		if f.ID == IDMetricsServerTLS && !strings.Contains(strings.Join(f.Evidence, "\n"), "the metrics API (kubectl top nodes) fails") {
			t.Errorf("evidence lacks the metrics API's failure: %q", f.Evidence)
		}
	}
}
