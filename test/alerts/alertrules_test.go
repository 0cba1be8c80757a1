package alerts

import (
	"context"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/csrguard/csrguard/test/promtest"
)

// ruleCase is one promtool test group against the rules file: input series
// (one value per minute from time 0) and what fires when.
type ruleCase struct {
	name   string
	series []promtest.Series
	tests  []promtest.AlertTest
}

func s(name, values string) promtest.Series { return promtest.Series{Name: name, Values: values} }

// fires expects alert to fire at minute with exactly these label sets
// (severity included); none expects it not to fire.
func fires(minute int, alert string, labels ...map[string]string) promtest.AlertTest {
	at := promtest.AlertTest{EvalTime: time.Duration(minute) * time.Minute, AlertName: alert}
	for _, l := range labels {
		at.ExpAlerts = append(at.ExpAlerts, promtest.ExpAlert{Labels: l})
	}
	return at
}

func none(minute int, alert string) promtest.AlertTest { return fires(minute, alert) }

// node and sev are the labels of a csrguard alert: the job the rules select
// (kept, with namespace and cluster when the series have them, for routing),
// the node where the alert is per node, and the severity.
func node(n, severity string) map[string]string {
	return map[string]string{"job": "csrguard", "node": n, "severity": severity}
}

func sev(severity string) map[string]string {
	return map[string]string{"job": "csrguard", "severity": severity}
}

func itoa(i int) string { return strconv.Itoa(i) }

const (
	day  = 86400
	week = 7 * day
	year = 365 * day
)

// with returns labels plus name=value.
func with(labels map[string]string, name, value string) map[string]string {
	out := map[string]string{name: value}
	maps.Copy(out, labels)
	return out
}

var ruleCases = []ruleCase{
	{
		name: "kubelet_without_certificate_for_5m",
		series: []promtest.Series{
			s(`csrguard_kubelet_probe_result{job="csrguard",instance="a",node="w1",result="no-serving-certificate"}`, "1x20"),
			// After a leader change the new leader reports the same node: one alert.
			s(`csrguard_kubelet_probe_result{job="csrguard",instance="b",node="w1",result="no-serving-certificate"}`, "_x2 1x18"),
			s(`csrguard_kubelet_probe_result{job="csrguard",instance="a",node="w2",result="ok"}`, "1x20"),
			// w3 got its certificate after 3 minutes.
			s(`csrguard_kubelet_probe_result{job="csrguard",instance="a",node="w3",result="no-serving-certificate"}`, "1 1 1 stale"),
			s(`csrguard_kubelet_probe_result{job="csrguard",instance="a",node="w3",result="ok"}`, "_ _ _ 1x17"),
			// Another job's series are not csrguard's.
			s(`csrguard_kubelet_probe_result{job="other",node="x1",result="no-serving-certificate"}`, "1x20"),
		},
		tests: []promtest.AlertTest{
			none(4, "KubeletServingCertificateMissing"),
			fires(5, "KubeletServingCertificateMissing", node("w1", "critical")),
			fires(15, "KubeletServingCertificateMissing", node("w1", "critical")),
		},
	},
	{
		name: "kubelet_without_certificate_annotations",
		series: []promtest.Series{
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w1",result="no-serving-certificate"}`, "1x10"),
		},
		tests: []promtest.AlertTest{{
			EvalTime:  5 * time.Minute,
			AlertName: "KubeletServingCertificateMissing",
			ExpAlerts: []promtest.ExpAlert{{
				Labels: node("w1", "critical"),
				Annotations: map[string]string{
					"summary": "A kubelet has no serving certificate; kubectl logs/exec and metrics-server fail on its node.",
					"description": `The kubelet on node w1 has answered csrguard's TLS probe with "tls: internal error" for 5 minutes: ` +
						`it has no serving certificate, usually because its kubernetes.io/kubelet-serving CSR is pending or was denied. ` +
						`kubectl logs, exec and port-forward, and metrics-server scrapes of this node fail until it gets one.`,
					"runbook_url": runbookURLPrefix + "KubeletServingCertificateMissing.md",
				},
			}},
		}},
	},
	{
		name: "pending_csr_age_grows",
		series: []promtest.Series{
			// Every replica exports the pending metrics.
			s(`csrguard_node_pending_csr_oldest_age_seconds{job="csrguard",instance="a",node="w1"}`, "300+60x20"),
			s(`csrguard_node_pending_csr_oldest_age_seconds{job="csrguard",instance="b",node="w1"}`, "290+60x20"),
			s(`csrguard_node_pending_csr_oldest_age_seconds{job="csrguard",instance="a",node="w2"}`, "60+60x20"),
		},
		tests: []promtest.AlertTest{
			none(5, "KubeletServingCSRPending"), // w1 exactly 600s old
			fires(6, "KubeletServingCSRPending", node("w1", "warning")),
			fires(10, "KubeletServingCSRPending", node("w1", "warning"), node("w2", "warning")),
		},
	},
	{
		name: "approved_not_issued_for_10m",
		series: []promtest.Series{
			s(`csrguard_approved_unissued_csrs{job="csrguard",instance="a"}`, "2x20"),
			s(`csrguard_approved_unissued_csrs{job="csrguard",instance="b"}`, "0x20"),
		},
		tests: []promtest.AlertTest{
			none(9, "KubeletServingCSRApprovedNotIssued"),
			fires(10, "KubeletServingCSRApprovedNotIssued", sev("critical")),
		},
	},
	{
		name: "signer_issuing",
		series: []promtest.Series{
			s(`csrguard_approved_unissued_csrs{job="csrguard",instance="a"}`, "0x30"),
		},
		tests: []promtest.AlertTest{none(30, "KubeletServingCSRApprovedNotIssued")},
	},
	{
		name: "expiry_thresholds",
		series: []promtest.Series{
			// Timestamps are relative to promtool's time 0; cert(node, notBefore, notAfter).
			// w1, w2: a year's certificate, 7 days and 1 day (+5m) left: the absolute floors.
			s(`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{job="csrguard",node="w1"}`, itoa(week+300-year)+"x60"),
			s(`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{job="csrguard",node="w1"}`, itoa(week+300)+"x60"),
			s(`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{job="csrguard",node="w2"}`, itoa(day+300-year)+"x60"),
			s(`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{job="csrguard",node="w2"}`, itoa(day+300)+"x60"),
			// The probe's certificate wins over the issued one.
			s(`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{job="csrguard",node="w3"}`, itoa(-65*day)+"x60"),
			s(`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{job="csrguard",node="w3"}`, itoa(300*day)+"x60"),
			s(`csrguard_kubelet_issued_cert_not_before_timestamp_seconds{job="csrguard",node="w3"}`, itoa(day-year)+"x60"),
			s(`csrguard_kubelet_issued_cert_expiry_timestamp_seconds{job="csrguard",node="w3"}`, itoa(day)+"x60"),
			// Without a probe result the issued certificate counts: 30 days, 90% used.
			s(`csrguard_kubelet_issued_cert_not_before_timestamp_seconds{job="csrguard",node="w4"}`, itoa(-27*day)+"x60"),
			s(`csrguard_kubelet_issued_cert_expiry_timestamp_seconds{job="csrguard",node="w4"}`, itoa(3*day)+"x60"),
			// Already expired.
			s(`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{job="csrguard",node="w5"}`, itoa(-3600-year)+"x60"),
			s(`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{job="csrguard",node="w5"}`, "-3600x60"),
			// Short-lived certificates (a day, three days) halfway and two thirds through:
			// rotation is not due, so nothing fires although under 1 and 7 days are left.
			s(`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{job="csrguard",node="w6"}`, itoa(-day/2)+"x60"),
			s(`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{job="csrguard",node="w6"}`, itoa(day/2)+"x60"),
			s(`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{job="csrguard",node="w8"}`, itoa(-2*day)+"x60"),
			s(`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{job="csrguard",node="w8"}`, itoa(day)+"x60"),
			// A day's certificate with 2h left (91.7% used): warning; critical past 95% (minute 48).
			s(`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{job="csrguard",node="w7"}`, itoa(-22*3600)+"x60"),
			s(`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{job="csrguard",node="w7"}`, itoa(2*3600)+"x60"),
		},
		tests: []promtest.AlertTest{
			fires(4, "KubeletServingCertificateExpiring",
				node("w2", "warning"), node("w4", "warning"), node("w5", "critical"), node("w7", "warning")),
			fires(6, "KubeletServingCertificateExpiring",
				node("w1", "warning"), node("w2", "critical"), node("w4", "warning"), node("w5", "critical"), node("w7", "warning")),
			fires(50, "KubeletServingCertificateExpiring",
				node("w1", "warning"), node("w2", "critical"), node("w4", "warning"), node("w5", "critical"), node("w7", "critical")),
		},
	},
	{
		name: "expiry_far",
		series: []promtest.Series{
			s(`csrguard_kubelet_serving_cert_not_before_timestamp_seconds{job="csrguard",node="w1"}`, itoa(-65*day)+"x60"),
			s(`csrguard_kubelet_serving_cert_expiry_timestamp_seconds{job="csrguard",node="w1"}`, itoa(300*day)+"x60"),
			// 92% of a year used, but 30 days left: above the 7-day floor.
			s(`csrguard_kubelet_issued_cert_not_before_timestamp_seconds{job="csrguard",node="w2"}`, itoa(30*day-year)+"x60"),
			s(`csrguard_kubelet_issued_cert_expiry_timestamp_seconds{job="csrguard",node="w2"}`, itoa(30*day)+"x60"),
		},
		tests: []promtest.AlertTest{none(60, "KubeletServingCertificateExpiring")},
	},
	{
		name: "sans_mismatch_for_15m",
		series: []promtest.Series{
			s(`csrguard_kubelet_serving_cert_sans_match{job="csrguard",node="w1"}`, "0x20"),
			s(`csrguard_kubelet_serving_cert_sans_match{job="csrguard",node="w2"}`, "1x20"),
			s(`csrguard_kubelet_serving_cert_sans_match{job="csrguard",node="w3"}`, "0x10 1x10"),
		},
		tests: []promtest.AlertTest{
			none(14, "KubeletServingCertificateSANMismatch"),
			fires(15, "KubeletServingCertificateSANMismatch", node("w1", "warning")),
		},
	},
	{
		name: "untrusted_for_15m",
		series: []promtest.Series{
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w1",result="untrusted"}`, "1x20"),
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w2",result="ok"}`, "1x20"),
			// Rotation off: the kubelet's own certificate.
			s(`csrguard_kubelet_probe_result{job="csrguard",node="w3",result="self-signed"}`, "1x20"),
		},
		tests: []promtest.AlertTest{
			none(14, "KubeletServingCertificateUntrusted"),
			fires(15, "KubeletServingCertificateUntrusted",
				with(node("w1", "warning"), "result", "untrusted"), with(node("w3", "warning"), "result", "self-signed")),
		},
	},
	{
		name: "csrguard_down_for_5m",
		series: []promtest.Series{
			s(`up{job="csrguard",instance="a"}`, "1 1 0x20"),
			s(`up{job="kubelet",instance="k"}`, "1x22"),
		},
		tests: []promtest.AlertTest{
			none(1, "CSRGuardDown"),
			none(6, "CSRGuardDown"),
			fires(7, "CSRGuardDown", sev("critical")),
		},
	},
	{
		name: "csrguard_never_scraped",
		series: []promtest.Series{
			s(`up{job="kubelet",instance="k"}`, "1x10"),
		},
		tests: []promtest.AlertTest{
			none(4, "CSRGuardDown"),
			fires(5, "CSRGuardDown", sev("critical")),
		},
	},
	{
		name: "csrguard_one_replica_up",
		series: []promtest.Series{
			s(`up{job="csrguard",instance="a"}`, "0x20"),
			s(`up{job="csrguard",instance="b"}`, "1x20"),
		},
		tests: []promtest.AlertTest{none(20, "CSRGuardDown")},
	},
	{
		name: "denials_in_last_15m",
		series: []promtest.Series{
			// A series that existed before its denial at 21m.
			s(`csrguard_decisions_total{job="csrguard",verdict="deny",reason="SANNotOnNode",mode="enforce"}`, "0x20 1x40"),
			// A series born with its first denial at 30m (csrguard restarted, or a new reason).
			s(`csrguard_decisions_total{job="csrguard",verdict="deny",reason="ReservedName",mode="dry-run"}`, "_x30 1x30"),
			// Approvals and holds are not denials.
			s(`csrguard_decisions_total{job="csrguard",verdict="approve",reason="AllChecksPassed",mode="enforce"}`, "0+5x60"),
			s(`csrguard_decisions_total{job="csrguard",verdict="hold",reason="NodeNotFound",mode="enforce"}`, "0+1x60"),
		},
		tests: []promtest.AlertTest{
			none(20, "CSRGuardCSRDenied"),
			fires(21, "CSRGuardCSRDenied", map[string]string{"job": "csrguard", "reason": "SANNotOnNode", "mode": "enforce", "severity": "warning"}),
			fires(34, "CSRGuardCSRDenied",
				map[string]string{"job": "csrguard", "reason": "SANNotOnNode", "mode": "enforce", "severity": "warning"},
				map[string]string{"job": "csrguard", "reason": "ReservedName", "mode": "dry-run", "severity": "warning"}),
			fires(44, "CSRGuardCSRDenied", map[string]string{"job": "csrguard", "reason": "ReservedName", "mode": "dry-run", "severity": "warning"}),
			none(46, "CSRGuardCSRDenied"),
			none(60, "CSRGuardSANOfOtherNode"),
		},
	},
	{
		name: "denial_description_names_reason",
		series: []promtest.Series{
			s(`csrguard_decisions_total{job="csrguard",verdict="deny",reason="ReservedName",mode="enforce"}`, "_x2 1x10"),
		},
		tests: []promtest.AlertTest{{
			EvalTime:  3 * time.Minute,
			AlertName: "CSRGuardCSRDenied",
			ExpAlerts: []promtest.ExpAlert{{
				Labels: map[string]string{"job": "csrguard", "reason": "ReservedName", "mode": "enforce", "severity": "warning"},
				Annotations: map[string]string{
					"summary": "csrguard denied kubelet-serving CSRs in the last 15 minutes.",
					"description": "csrguard denied 1 kubelet-serving CSR(s) with reason ReservedName in the last 15 minutes " +
						"(mode enforce; in dry-run and no-deny modes nothing was written). A node asked for a certificate it " +
						"must not have; its kubelet gets no serving certificate from that request.",
					"runbook_url": runbookURLPrefix + "CSRGuardCSRDenied.md",
				},
			}},
		}},
	},
	{
		name: "san_of_other_node",
		series: []promtest.Series{
			s(`csrguard_decisions_total{job="csrguard",verdict="deny",reason="SANOfOtherNode",mode="enforce"}`, "_x5 1x30"),
			// Held while the addresses settle: not yet a denial.
			s(`csrguard_decisions_total{job="csrguard",verdict="hold",reason="SANOfOtherNode",mode="enforce"}`, "0+1x35"),
			s(`csrguard_decisions_total{job="csrguard",verdict="deny",reason="SANNotOnNode",mode="enforce"}`, "0x2 1x33"),
		},
		tests: []promtest.AlertTest{
			none(4, "CSRGuardSANOfOtherNode"),
			fires(5, "CSRGuardSANOfOtherNode", map[string]string{"job": "csrguard", "reason": "SANOfOtherNode", "mode": "enforce", "severity": "critical"}),
			// One page per problem: the SANOfOtherNode denial is not CSRGuardCSRDenied's too.
			fires(5, "CSRGuardCSRDenied",
				map[string]string{"job": "csrguard", "reason": "SANNotOnNode", "mode": "enforce", "severity": "warning"}),
			none(25, "CSRGuardSANOfOtherNode"),
		},
	},
	{
		name: "address_conflict_for_5m",
		series: []promtest.Series{
			// A squatter from minute 2 on, seen by both replicas.
			s(`csrguard_node_address_conflicts{job="csrguard",instance="a",node="squatter"}`, "_x2 1x20"),
			s(`csrguard_node_address_conflicts{job="csrguard",instance="b",node="squatter"}`, "_x2 1x20"),
			// An address moving between nodes: a conflict while the old claim runs out.
			s(`csrguard_node_address_conflicts{job="csrguard",instance="a",node="mover"}`, "_ 1x2 stale"),
		},
		tests: []promtest.AlertTest{
			none(6, "CSRGuardAddressConflict"),
			fires(7, "CSRGuardAddressConflict", node("squatter", "critical")),
			fires(20, "CSRGuardAddressConflict", node("squatter", "critical")),
		},
	},
	{
		name: "breaker_open",
		series: []promtest.Series{
			s(`csrguard_breaker_open{job="csrguard",instance="a"}`, "0 0 1x20"),
			s(`csrguard_breaker_open{job="csrguard",instance="b"}`, "0x22"),
			// CSRs wait from minute 1 to 12; then the gauge stays 1 (no attempt
			// cleared it), but the breaker holds nothing.
			s(`csrguard_pending_csrs{job="csrguard",instance="a"}`, "0 3x11 0x10"),
		},
		tests: []promtest.AlertTest{
			none(2, "CSRGuardBreakerOpen"),
			fires(3, "CSRGuardBreakerOpen", sev("critical")),
			none(13, "CSRGuardBreakerOpen"),
		},
	},
	{
		name: "errors_for_15m",
		series: []promtest.Series{
			s(`csrguard_errors_total{job="csrguard",stage="facts"}`, "0+1x30"),
			s(`csrguard_errors_total{job="csrguard",stage="write"}`, "3x30"),
		},
		tests: []promtest.AlertTest{
			none(15, "CSRGuardErrors"),
			fires(16, "CSRGuardErrors", map[string]string{"job": "csrguard", "stage": "facts", "severity": "warning"}),
		},
	},
	{
		name: "probe_sweep_stale",
		series: []promtest.Series{
			// The leader's last sweep finished 30s before time 0 and no other followed;
			// the other replica never sweeps and exports 0, the Unix epoch, long before
			// time 0 (here, 2027-01-15).
			s(`csrguard_kubelet_probe_sweep_timestamp_seconds{job="csrguard",instance="a"}`, "-30x30"),
			s(`csrguard_kubelet_probe_sweep_timestamp_seconds{job="csrguard",instance="b"}`, "-1800000000x30"),
			s(`csrguard_kubelet_probe_interval_seconds{job="csrguard",instance="a"}`, "180x30"),
			s(`csrguard_kubelet_probe_interval_seconds{job="csrguard",instance="b"}`, "180x30"),
		},
		tests: []promtest.AlertTest{
			none(13, "CSRGuardProbeSweepStale"), // stale (> 3 x 180s) from 9m, for 5m
			fires(14, "CSRGuardProbeSweepStale", sev("warning")),
		},
	},
	{
		name: "probe_sweeps_fresh",
		series: []promtest.Series{
			s(`csrguard_kubelet_probe_sweep_timestamp_seconds{job="csrguard",instance="a"}`, "-30+60x60"),
			s(`csrguard_kubelet_probe_interval_seconds{job="csrguard",instance="a"}`, "180x60"),
		},
		tests: []promtest.AlertTest{none(60, "CSRGuardProbeSweepStale")},
	},
	{
		// The threshold follows --probe-interval: 10s sweeps are stale after 30s.
		name: "probe_sweep_stale_short_interval",
		series: []promtest.Series{
			s(`csrguard_kubelet_probe_sweep_timestamp_seconds{job="csrguard",instance="a"}`, "-30x30"),
			s(`csrguard_kubelet_probe_interval_seconds{job="csrguard",instance="a"}`, "10x30"),
		},
		tests: []promtest.AlertTest{
			none(5, "CSRGuardProbeSweepStale"),
			fires(6, "CSRGuardProbeSweepStale", sev("warning")),
		},
	},
	{
		// --probe-interval=0s: nothing sweeps, and nothing should.
		name: "probing_off",
		series: []promtest.Series{
			s(`csrguard_kubelet_probe_sweep_timestamp_seconds{job="csrguard",instance="a"}`, "-1800000000x60"),
			s(`csrguard_kubelet_probe_interval_seconds{job="csrguard",instance="a"}`, "0x60"),
		},
		tests: []promtest.AlertTest{none(60, "CSRGuardProbeSweepStale")},
	},
	{
		name: "insecure_loopback",
		series: []promtest.Series{
			s(`csrguard_insecure_loopback_allowed{job="csrguard",instance="a"}`, "1x5"),
			s(`csrguard_insecure_loopback_allowed{job="csrguard",instance="b"}`, "0x5"),
		},
		tests: []promtest.AlertTest{fires(0, "CSRGuardInsecureLoopbackAllowed", sev("critical"))},
	},
	{
		name: "secure",
		series: []promtest.Series{
			s(`csrguard_insecure_loopback_allowed{job="csrguard",instance="a"}`, "0x5"),
			s(`csrguard_breaker_open{job="csrguard",instance="a"}`, "0x5"),
		},
		tests: []promtest.AlertTest{
			none(5, "CSRGuardInsecureLoopbackAllowed"),
			none(5, "CSRGuardBreakerOpen"),
			none(5, "CSRGuardErrors"),
		},
	},
}

func TestAlertRules(t *testing.T) {
	promtool := promtest.Promtool(t)
	for _, tc := range append(ruleCases, routingCases...) {
		t.Run(tc.name, func(t *testing.T) {
			out, err := promtest.Run(context.Background(), promtool, t.TempDir(), promtest.RuleTest{
				RuleFiles:  []string{rulesFile},
				Series:     tc.series,
				AlertTests: tc.tests,
			})
			if err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}

// TestAlertRulesCovered requires every alert to be shown both firing and not
// firing by ruleCases.
func TestAlertRulesCovered(t *testing.T) {
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range append(ruleCases, routingCases...) {
		for _, at := range tc.tests {
			if len(at.ExpAlerts) > 0 {
				firing[at.AlertName] = true
			} else {
				quiet[at.AlertName] = true
			}
		}
	}
	names := alertNames(loadRules(t))
	for _, a := range names {
		if !firing[a] {
			t.Errorf("alert %s: no rule case shows it firing", a)
		}
		if !quiet[a] {
			t.Errorf("alert %s: no rule case shows it not firing", a)
		}
	}
	known := map[string]bool{}
	for _, a := range names {
		known[a] = true
	}
	for a := range firing {
		if !known[a] {
			t.Errorf("rule cases test alert %s, which the rules file does not define", a)
		}
	}
}
