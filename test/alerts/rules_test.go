package alerts

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/test/promtest"
)

var update = flag.Bool("update", false, "rewrite deploy/prometheus/prometheusrule.yaml from csrguard.rules.yaml")

func TestRulesPassPromtoolCheck(t *testing.T) {
	promtool := promtest.Promtool(t)
	out, err := exec.CommandContext(context.Background(), promtool, "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", rulesFile, err, out)
	}
}

// prometheusRuleHeader precedes the rules file's groups in prometheusrule.yaml.
const prometheusRuleHeader = `# csrguard's alerting rules as a Prometheus Operator PrometheusRule. The groups
# are exactly those of csrguard.rules.yaml (test/alerts checks it): edit that
# file and regenerate this one with
#   go test ./test/alerts -run TestPrometheusRuleMatchesRulesFile -update
# A Prometheus installed by kube-prometheus-stack selects, by default, only
# PrometheusRules labelled release: <its Helm release>; this one is labelled
# for the release name kube-prometheus-stack. Its selectors are not scoped to
# a namespace: deploy/install-monitoring.yaml (or the Helm chart) is the
# ready-made one for install.yaml, with the ServiceMonitor.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: csrguard
  namespace: csrguard
  labels:
    app.kubernetes.io/name: csrguard
    release: kube-prometheus-stack
spec:
`

// renderPrometheusRule returns prometheusrule.yaml for the rules file text:
// the header, then the rules file from "groups:" on, indented under spec.
func renderPrometheusRule(t *testing.T, rules []byte) []byte {
	t.Helper()
	i := bytes.Index(rules, []byte("\ngroups:"))
	if i < 0 {
		t.Fatalf("%s: no top-level groups:", rulesFile)
	}
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for _, line := range strings.SplitAfter(string(rules[i+1:]), "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.Bytes()
}

func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	if *update {
		if err := os.WriteFile(prometheusRuleFile, renderPrometheusRule(t, readFile(t, rulesFile)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var pr prometheusRule
	unmarshalYAML(t, prometheusRuleFile, &pr)
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("%s is %s %s, want monitoring.coreos.com/v1 PrometheusRule", prometheusRuleFile, pr.APIVersion, pr.Kind)
	}
	if pr.Metadata.Name != "csrguard" || pr.Metadata.Namespace != "csrguard" || pr.Metadata.Labels["app.kubernetes.io/name"] != "csrguard" ||
		pr.Metadata.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("%s metadata = %+v, want csrguard/csrguard labelled app.kubernetes.io/name=csrguard and release=kube-prometheus-stack (kube-prometheus-stack's default ruleSelector)", prometheusRuleFile, pr.Metadata)
	}
	if diff := cmp.Diff(loadRules(t), pr.Spec); diff != "" {
		t.Errorf("%s groups differ from %s (-rules file +PrometheusRule); regenerate with -update:\n%s", prometheusRuleFile, rulesFile, diff)
	}
}

var camelCaseAlert = regexp.MustCompile(`^(CSRGuard|KubeletServing)[A-Z][A-Za-z0-9]*$`)

// foreignMetrics are the metrics not csrguard's that alerts read: up is
// Prometheus' own (CSRGuardDown), leader_election_master_status is
// controller-runtime's on csrguard's /metrics (CSRGuardNoLeader), and
// kube_node_status_condition is kube-state-metrics' (NotReady nodes are
// not KubeletServingProbeFailing's).
var foreignMetrics = map[string]bool{"up": true, "leader_election_master_status": true, "kube_node_status_condition": true}

func TestAlertsHaveMetadataAndRunbooks(t *testing.T) {
	known := knownMetrics(t)
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: rule %q is not an alert; this file holds alerts only", g.Name, r.Record)
				continue
			}
			if !camelCaseAlert.MatchString(r.Alert) {
				t.Errorf("alert %s: name must be CamelCase with prefix CSRGuard or KubeletServing", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			if want := runbookURLPrefix + r.Alert + ".md"; r.Annotations["runbook_url"] != want {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if _, err := os.Stat(runbookPath(r.Alert)); err != nil {
				t.Errorf("alert %s: runbook: %v", r.Alert, err)
			}
			if !strings.Contains(r.Expr, `job="csrguard"`) {
				t.Errorf("alert %s: expression does not select job=\"csrguard\": %s", r.Alert, r.Expr)
			}
			for _, n := range metricNames(r.Expr) {
				if !foreignMetrics[n] && (!strings.HasPrefix(n, "csrguard_") || len(unknownMetrics(n, known)) > 0) {
					t.Errorf("alert %s: metric %s is not defined in %s", r.Alert, n, metricsFile)
				}
			}
		}
	}
}

// TestRunbooksHaveAlerts keeps docs/runbooks free of runbooks for alerts that
// no longer exist.
func TestRunbooksHaveAlerts(t *testing.T) {
	alerts := map[string]bool{}
	for _, a := range alertNames(loadRules(t)) {
		alerts[a] = true
	}
	entries, err := os.ReadDir(runbookDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".md")
		if !ok || name == "README" {
			continue
		}
		if !alerts[name] {
			t.Errorf("%s/%s: no alert %s in %s", runbookDir, e.Name(), name, rulesFile)
		}
	}
}
