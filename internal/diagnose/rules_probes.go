package diagnose

import (
	"fmt"
	"strings"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/severity"
)

// kubeletsWithoutCert is the incident: kubelets answer every handshake with
// "tls: internal error" because they have no serving certificate.
func (v *view) kubeletsWithoutCert() *Finding {
	var nodes []string
	for _, n := range v.nodeNames {
		if r, ok := v.probe(n); ok && r.State == metrics.ProbeNoServingCertificate {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	f := &Finding{
		Severity: severity.Critical, Nodes: nodes,
		Title: fmt.Sprintf("%s no TLS certificate: kubectl logs/exec/port-forward and metrics-server fail on %s", pluralVerb(len(nodes), "kubelet", "serves", "serve"), them(len(nodes))),
	}
	var newest, silent []string
	for _, n := range nodes {
		r := v.Probes[n]
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: probe of %s: %v", n, r.Endpoint, r.Err))
		if p := v.pending[n]; len(p) > 0 {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s: %s pending: %s", n, plural(len(p), "kubelet-serving CSR"), csrAges(p)))
			last := p[len(p)-1]
			if d, ok := v.Decisions[last.name]; ok && d.Verdict != policy.Approve {
				// Never suggest approving what the policy rejects.
				f.Evidence = append(f.Evidence, fmt.Sprintf("%s: the policy would %s its newest CSR %s: %s: %s", n, strings.ToLower(d.Verdict.String()), last.name, d.Reason, d.Message))
				continue
			}
			newest = append(newest, last.name)
			continue
		}
		silent = append(silent, n)
		if last, ok := v.last[n]; ok {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s: no CSR pending; its newest kubelet-serving CSR %s is %s (created %s ago)%s", n, last.name, last.state, human.Duration(last.age), conditionReason(&last)))
		} else {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s: no kubelet-serving CSR from this node in the API", n))
		}
	}
	f.Evidence = append(f.Evidence, v.approverEvidence()...)
	for _, m := range v.MetricsServers {
		if missing, _ := v.nodesWithoutMetrics(); len(missing) > 0 {
			f.Evidence = append(f.Evidence, fmt.Sprintf("metrics-server %s/%s (%s) has no metrics for %s, so kubectl top fails", m.Namespace, m.Name, m.tlsMode(), names(missing, 5)))
		}
	}

	if len(newest) > 0 {
		f.Fix = append(f.Fix, v.breakGlassFixes(newest)...)
	}
	if approving := v.approving(); len(approving) > 0 {
		if len(newest) > 0 {
			a := approving[0]
			f.Fix = append(f.Fix, fmt.Sprintf("%s (%s) runs but leaves these CSRs pending: read its log (%s) and the CSRs' Events.", a.Kind, a.Where, a.logs()))
		}
	} else {
		f.Fix = append(f.Fix, v.installFixShort())
	}
	if len(silent) > 0 {
		f.Fix = append(f.Fix, fmt.Sprintf("For %s without a pending CSR: a kubelet files a new one within 15 minutes; if none comes, it cannot reach the API server or rotation is off while it lost its certificate. %s", names(silent, 5), v.kubeletLogFix(silent)))
	}
	f.Fix = append(f.Fix, "Verify: csrguard certs shows these nodes ok, and kubectl logs works for their pods.")
	return f
}

// probeUnavailable: the findings rest on the API alone.
func (v *view) probeUnavailable() *Finding {
	if v.ProbeNote == "" {
		return nil
	}
	return &Finding{
		Severity: severity.Info,
		Title:    "Kubelets were not probed: findings rest on what the API shows",
		Evidence: []string{v.ProbeNote},
		Fix: []string{
			"Without a probe, a kubelet with no serving certificate shows only through its pending CSRs, and issued CSRs are deleted after 1h.",
			"Run the doctor where the nodes' kubelet port (10250) is reachable, or read csrguard's own probe from inside the cluster: the metric csrguard_kubelet_probe_result.",
		},
	}
}

// kubeletsUnreachable: some probes got no TLS verdict.
func (v *view) kubeletsUnreachable() *Finding {
	f := &Finding{Severity: severity.Info}
	for _, n := range v.nodeNames {
		r, ok := v.probe(n)
		if !ok || probeReached(r) {
			continue
		}
		f.Nodes = append(f.Nodes, n)
		endpoint := r.Endpoint
		if endpoint == "" {
			endpoint = "no address"
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): %s: %v", n, endpoint, r.State, r.Err))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s could not be probed from here", plural(len(f.Nodes), "kubelet"))
	f.Fix = []string{
		"refused: is the kubelet running on the node? timeout: a firewall between here and port 10250, or the node is down (kubectl get nodes).",
		"For these nodes the certificate findings use the issued CSRs in the API.",
	}
	return f
}
