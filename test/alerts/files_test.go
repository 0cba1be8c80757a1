// Package alerts tests csrguard's monitoring assets: the Prometheus rules in
// deploy/prometheus (checked and unit-tested with promtool), their runbooks in
// docs/runbooks, and the Grafana dashboard in deploy/grafana.
package alerts

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// Paths from this package's directory (go test runs in it).
const (
	repoRoot           = "../.."
	rulesFile          = repoRoot + "/deploy/prometheus/csrguard.rules.yaml"
	prometheusRuleFile = repoRoot + "/deploy/prometheus/prometheusrule.yaml"
	dashboardFile      = repoRoot + "/deploy/grafana/csrguard-dashboard.json"
	dashboardConfigMap = repoRoot + "/deploy/grafana/dashboard-configmap.yaml"
	metricsFile        = repoRoot + "/internal/metrics/metrics.go"
	runbookDir         = repoRoot + "/docs/runbooks"
	runbookURLPrefix   = "https://github.com/csrguard/csrguard/blob/main/docs/runbooks/"
)

// ruleFile is a Prometheus rules file.
type ruleFile struct {
	Groups []ruleGroup `json:"groups"`
}

type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// prometheusRule is a monitoring.coreos.com/v1 PrometheusRule.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec ruleFile `json:"spec"`
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unmarshalYAML decodes YAML strictly (unknown fields are errors) into v.
func unmarshalYAML(t *testing.T, name string, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(readFile(t, name), v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	unmarshalYAML(t, rulesFile, &rf)
	if len(rf.Groups) == 0 {
		t.Fatalf("%s has no groups", rulesFile)
	}
	return rf
}

// alertNames returns the distinct alert names of rf, sorted.
func alertNames(rf ruleFile) []string {
	seen := map[string]bool{}
	var names []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !seen[r.Alert] {
				seen[r.Alert] = true
				names = append(names, r.Alert)
			}
		}
	}
	sort.Strings(names)
	return names
}

// knownMetrics returns every metric name defined in internal/metrics.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := map[string]bool{}
	for _, match := range regexp.MustCompile(`"(csrguard_[a-z0-9_]+)"`).FindAllStringSubmatch(string(readFile(t, metricsFile)), -1) {
		m[match[1]] = true
	}
	if len(m) < 10 {
		t.Fatalf("found only %d metric names in %s: %v", len(m), metricsFile, m)
	}
	return m
}

var metricRef = regexp.MustCompile(`\bcsrguard_[a-zA-Z0-9_]+`)

// unknownMetrics returns the csrguard_* names expr uses that internal/metrics
// does not define (a histogram's _bucket, _sum and _count series count as its own).
func unknownMetrics(expr string, known map[string]bool) []string {
	var unknown []string
	for _, name := range metricRef.FindAllString(expr, -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			unknown = append(unknown, name)
		}
	}
	return unknown
}

func runbookPath(alert string) string {
	return filepath.Join(runbookDir, alert+".md")
}
