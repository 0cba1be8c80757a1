package diagnose

import (
	"fmt"
	"slices"
	"strings"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/severity"
)

// tlsMode says how m verifies kubelets.
func (m MetricsServer) tlsMode() string {
	switch {
	case m.InsecureTLS:
		return "runs with --kubelet-insecure-tls (no verification)"
	case m.CAFile != "":
		return "verifies kubelet certificates against --kubelet-certificate-authority=" + m.CAFile
	}
	return "verifies kubelet certificates against the cluster CA"
}

// rotationOn reports whether kubelets use CA-signed serving certificates:
// kubelet-serving CSRs exist, or a probed kubelet serves a certificate that
// is not self-signed.
func (v *view) rotationOn() bool {
	if len(v.CSRs) > 0 {
		return true
	}
	for _, r := range v.Probes {
		if r.Cert != nil && r.Cert.Issuer.String() != r.Cert.Subject.String() {
			return true
		}
	}
	return false
}

// metricsServerTLS compares how metrics-server verifies kubelets with the
// cluster's state: the incident began with rotation turned on so that
// metrics-server could verify kubelets; either side alone breaks it.
func (v *view) metricsServerTLS() *Finding {
	if len(v.MetricsServers) == 0 {
		return nil
	}
	f := &Finding{Severity: severity.Info, Title: "metrics-server verifies kubelets as the cluster's certificates call for"}
	rotation := v.rotationOn()
	for _, m := range v.MetricsServers {
		where := m.Namespace + "/" + m.Name
		mode := m.tlsMode()
		ready := "ready"
		if !m.Ready {
			ready = "NOT ready"
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("metrics-server %s (%s) %s", where, ready, mode))
		switch {
		case rotation && m.InsecureTLS:
			f.Severity = max(f.Severity, severity.Warning)
			f.Title = "metrics-server skips kubelet certificate verification although kubelets have CA-signed serving certificates"
			f.Fix = append(f.Fix, fmt.Sprintf("In %s, remove --kubelet-insecure-tls and set --kubelet-certificate-authority to the kubelet-serving CA bundle (mounted from a ConfigMap).", where))
		case !rotation && !m.InsecureTLS:
			f.Severity = max(f.Severity, severity.Critical)
			f.Title = "metrics-server verifies kubelet certificates, but kubelets serve self-signed ones (rotation is off)"
			f.Fix = append(f.Fix, "Either turn on serving-certificate rotation with an approver (run csrguard preflight first), or, as a stopgap, add --kubelet-insecure-tls to "+where+".")
		case !m.Ready:
			f.Severity = max(f.Severity, severity.Warning)
			f.Title = "metrics-server is not ready"
			f.Fix = append(f.Fix, fmt.Sprintf("kubectl -n %s logs deploy/%s: 'tls: internal error' or 'x509' in 'Failed to scrape node' means the kubelet side (see the other findings).", m.Namespace, m.Name))
		}
	}
	if missing, why := v.nodesWithoutMetrics(); why != "" {
		f.Evidence = append(f.Evidence, why)
		if len(missing) > 0 {
			f.Severity = max(f.Severity, severity.Warning)
			f.Nodes = missing
			f.Title = fmt.Sprintf("metrics-server has no metrics for %s: kubectl top and autoscaling go blind", plural(len(missing), "node"))
			if noCert := v.withoutCert(missing); len(noCert) > 0 {
				they := "they have"
				if len(noCert) == 1 {
					they = "it has"
				}
				f.Title = fmt.Sprintf("metrics-server cannot scrape %s: %s no serving certificate", plural(len(noCert), "kubelet"), they)
				f.Fix = append(f.Fix, "Give the kubelets their certificates (see "+IDKubeletsWithoutCert+"); metrics-server recovers at its next scrape.")
			}
		}
	}
	if rotation {
		f.Evidence = append(f.Evidence, "kubelets use CA-signed serving certificates (kubelet-serving CSRs exist)")
	} else {
		f.Evidence = append(f.Evidence, "no kubelet-serving CSRs and no CA-signed kubelet certificate seen: rotation looks off")
	}
	if f.Severity == severity.Info {
		f.Fix = nil
	}
	f.Evidence = compact(f.Evidence)
	return f
}

// nodesWithoutMetrics returns the nodes the metrics API has no metrics for,
// and a line of evidence saying what it answered; "" when it was not read.
func (v *view) nodesWithoutMetrics() ([]string, string) {
	m := v.NodeMetrics
	switch {
	case m == nil:
		return nil, ""
	case m.Err != "":
		return v.nodeNames, "the metrics API (kubectl top nodes) fails: " + m.Err
	}
	var missing []string
	for _, n := range v.nodeNames {
		if !slices.Contains(m.Nodes, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil, fmt.Sprintf("the metrics API (kubectl top nodes) has metrics for all %s", plural(len(v.nodeNames), "node"))
	}
	return missing, fmt.Sprintf("the metrics API (kubectl top nodes) has no metrics for %s", names(missing, 5))
}

// withoutCert returns those of nodes whose kubelet was probed without a
// serving certificate.
func (v *view) withoutCert(nodes []string) []string {
	var out []string
	for _, n := range nodes {
		if r, ok := v.probe(n); ok && r.State == metrics.ProbeNoServingCertificate {
			out = append(out, n)
		}
	}
	return out
}

func compact(lines []string) []string {
	var out []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
