package alerts

import "github.com/csrguard/csrguard/test/promtest"

// routingCases are the rule cases of issue #15: probe failures, one page per
// problem, no leader, and the labels that route alerts (job, namespace,
// cluster) where several csrguards share one Prometheus.
var routingCases = []ruleCase{
	{
		name: "probe_failing_per_node",
		series: []promtest.Series{
			// w1 times out (firewall), w2 is refused but its Node is NotReady, w7
			// failed for 5 minutes only; four kubelets answer.
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w1",result="timeout"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w2",result="refused"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w3",result="ok"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w4",result="ok"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w5",result="ok"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w6",result="ok"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w7",result="other"}`, "1x5 stale"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w7",result="ok"}`, "_x6 1x14"),
			s(`kube_node_status_condition{job="kube-state-metrics",node="w1",condition="Ready",status="true"}`, "1x20"),
			s(`kube_node_status_condition{job="kube-state-metrics",node="w2",condition="Ready",status="true"}`, "0x20"),
		},
		tests: []promtest.AlertTest{
			none(14, "KubeletServingProbeFailing"),
			fires(15, "KubeletServingProbeFailing", node("w1", "warning")),
			none(20, "KubeletServingProbesFailing"),
		},
	},
	{
		// A NetworkPolicy blocks 10250 from csrguard: one fleet page, not one per node.
		name: "probes_failing_fleet",
		series: []promtest.Series{
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w1",result="timeout"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w2",result="timeout"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w3",result="timeout"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w4",result="ok"}`, "1x20"),
		},
		tests: []promtest.AlertTest{
			none(14, "KubeletServingProbesFailing"),
			fires(15, "KubeletServingProbesFailing", sev("warning")),
			none(20, "KubeletServingProbeFailing"),
		},
	},
	{
		// A node that serves no certificate pages once, as Missing; a node that
		// serves one while its new CSR waits (addresses changed) pages Pending.
		name: "pending_not_paged_twice",
		series: []promtest.Series{
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w1",result="no-serving-certificate"}`, "1x20"),
			s(`csrguard_node_pending_csr_oldest_age_seconds{job="csrguard",node="w1"}`, "700+60x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w2",result="ok"}`, "1x20"),
			s(`csrguard_node_pending_csr_oldest_age_seconds{job="csrguard",node="w2"}`, "700+60x20"),
		},
		tests: []promtest.AlertTest{
			fires(10, "KubeletServingCertificateMissing", node("w1", "critical")),
			fires(10, "KubeletServingCSRPending", node("w2", "warning")),
		},
	},
	{
		name: "no_leader",
		series: []promtest.Series{
			// Two replicas run; the Lease is lost at minute 2 and nobody takes it.
			s(`leader_election_master_status{job="csrguard",instance="a",name="csrguard"}`, "1 1 0x20"),
			s(`leader_election_master_status{job="csrguard",instance="b",name="csrguard"}`, "0x22"),
		},
		tests: []promtest.AlertTest{
			none(6, "CSRGuardNoLeader"),
			fires(7, "CSRGuardNoLeader", sev("critical")),
		},
	},
	{
		name: "one_leader",
		series: []promtest.Series{
			// A failover: b takes over within a minute.
			s(`leader_election_master_status{job="csrguard",instance="a",name="csrguard"}`, "1 1 0x20"),
			s(`leader_election_master_status{job="csrguard",instance="b",name="csrguard"}`, "0x3 1x19"),
		},
		tests: []promtest.AlertTest{none(20, "CSRGuardNoLeader")},
	},
	{
		// Two clusters in one Prometheus (Thanos, Mimir): alerts keep cluster and
		// namespace, and one cluster's csrguard being down is not hidden behind
		// the other's.
		name: "clusters_apart",
		series: []promtest.Series{
			s(`up{job="csrguard",namespace="csrguard",cluster="eu-1",instance="a"}`, "0x10"),
			s(`up{job="csrguard",namespace="csrguard",cluster="us-1",instance="a"}`, "1x10"),
			s(`csrguard_kubelet_probe_result{job="csrguard",namespace="csrguard",cluster="eu-1",node="w1",result="no-serving-certificate"}`, "1x10"),
			s(`csrguard_kubelet_probe_result{job="csrguard",namespace="csrguard",cluster="us-1",node="w1",result="no-serving-certificate"}`, "1x10"),
		},
		tests: []promtest.AlertTest{
			fires(5, "CSRGuardDown", with(with(sev("critical"), "namespace", "csrguard"), "cluster", "eu-1")),
			fires(5, "KubeletServingCertificateMissing",
				with(with(node("w1", "critical"), "namespace", "csrguard"), "cluster", "eu-1"),
				with(with(node("w1", "critical"), "namespace", "csrguard"), "cluster", "us-1")),
		},
	},
}
