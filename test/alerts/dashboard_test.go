package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/csrguard/csrguard/test/promtest"
)

// dashboard is the part of a Grafana dashboard the tests look at.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of collapsed rows
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs returns every PromQL expression of the dashboard by where
// it is, with Grafana's variables replaced so that promtool can parse them.
func dashboardExprs(t *testing.T, d dashboard) map[string]string {
	t.Helper()
	grafanaVars := strings.NewReplacer("$__rate_interval", "5m", "$node", ".*")
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]+\)$`)
	exprs := map[string]string{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs[fmt.Sprintf("panel %d %q target %s", p.ID, p.Title, tg.RefID)] = grafanaVars.Replace(tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		exprs["variable "+v.Name] = m[1]
	}
	return exprs
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID != "csrguard" || d.Title == "" {
		t.Errorf("uid %q, title %q: want uid csrguard and a title", d.UID, d.Title)
	}
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want >= 39", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Datasource != nil && v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s: datasource %+v, want ${datasource}", v.Name, v.Datasource)
		}
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["cluster"] != "query" || vars["node"] != "query" {
		t.Errorf("template variables %v: want datasource (datasource), job, cluster and node (query)", vars)
	}

	ids := map[int]bool{}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q target %s: datasource %+v, want uid ${datasource}", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}

	known := knownMetrics(t)
	for where, expr := range dashboardExprs(t, d) {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric", where, expr)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, "csrguard_") || len(unknownMetrics(n, known)) > 0 {
				t.Errorf("%s: metric %s is not one of internal/metrics' csrguard_* metrics", where, n)
			}
		}
		// Every selector follows the job and cluster variables (several
		// installs, several clusters in one Prometheus).
		// (The job and cluster variables list what there is to choose.)
		choosing := where == "variable job" || where == "variable cluster"
		if !choosing && strings.Count(expr, "{") != strings.Count(expr, `{job="$job", cluster=~"$cluster"`) {
			t.Errorf("%s: %q has a selector without job=\"$job\", cluster=~\"$cluster\"", where, expr)
		}
		// A panel that cannot see csrguard must say No data, not look healthy.
		if strings.Contains(expr, "vector(") {
			t.Errorf("%s: %q has a constant that shows a value when nothing is scraped", where, expr)
		}
	}
}

// TestDashboardQueriesParse has promtool parse every dashboard query, as
// recording rules of a throwaway rules file.
func TestDashboardQueriesParse(t *testing.T) {
	promtool := promtest.Promtool(t)
	exprs := dashboardExprs(t, loadDashboard(t))
	type recording struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []recording
	var where []string
	for w, e := range exprs {
		rules = append(rules, recording{Record: fmt.Sprintf("dashboard:query_%d", len(rules)), Expr: e})
		where = append(where, fmt.Sprintf("dashboard:query_%d = %s", len(where), w))
	}
	data, err := json.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(context.Background(), promtool, "check", "rules", file).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules of the dashboard queries: %v\n%s\n%s", err, out, strings.Join(where, "\n"))
	}
}

// configMapHeader precedes the dashboard JSON in dashboard-configmap.yaml.
const configMapHeader = `# csrguard's Grafana dashboard for the Grafana dashboard sidecar, which loads
# ConfigMaps labelled grafana_dashboard: "1" (kube-prometheus-stack's default;
# its sidecar may search only Grafana's own namespace unless configured with
# searchNamespace). The JSON is exactly csrguard-dashboard.json (test/alerts
# checks it): edit that file and regenerate this one with
#   go test ./test/alerts -run TestDashboardConfigMap -update
apiVersion: v1
kind: ConfigMap
metadata:
  name: csrguard-dashboard
  namespace: csrguard
  labels:
    app.kubernetes.io/name: csrguard
    grafana_dashboard: "1"
data:
  csrguard-dashboard.json: |
`

func renderConfigMap(dashboardJSON []byte) []byte {
	var b strings.Builder
	b.WriteString(configMapHeader)
	for _, line := range strings.SplitAfter(string(dashboardJSON), "\n") {
		if line != "" {
			b.WriteString("    " + line)
		}
	}
	return []byte(b.String())
}

func TestDashboardConfigMap(t *testing.T) {
	js := readFile(t, dashboardFile)
	if *update {
		if err := os.WriteFile(dashboardConfigMap, renderConfigMap(js), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	unmarshalYAML(t, dashboardConfigMap, &cm)
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Metadata.Name != "csrguard-dashboard" ||
		cm.Metadata.Namespace != "csrguard" || cm.Metadata.Labels["grafana_dashboard"] != "1" {
		t.Errorf("%s: %s %s %s/%s labels %v; want v1 ConfigMap csrguard/csrguard-dashboard labelled grafana_dashboard=1",
			dashboardConfigMap, cm.APIVersion, cm.Kind, cm.Metadata.Namespace, cm.Metadata.Name, cm.Metadata.Labels)
	}
	if len(cm.Data) != 1 {
		t.Errorf("%s: data keys %d, want 1", dashboardConfigMap, len(cm.Data))
	}
	if got := cm.Data["csrguard-dashboard.json"]; got != string(js) {
		t.Errorf("%s: data csrguard-dashboard.json differs from %s (%d vs %d bytes); regenerate with -update",
			dashboardConfigMap, dashboardFile, len(got), len(js))
	}
}

var (
	stringLit    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	labelMatch   = regexp.MustCompile(`\{[^}]*\}`)
	rangeOrSub   = regexp.MustCompile(`\[[^\]]*\]`)
	grouping     = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identifier   = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "offset": true, "bool": true, "atan2": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true,
	}
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers that are not functions, aggregations, keywords, labels, numbers
// or durations. It is a tokenizer, not a parser, and good enough for the
// expressions csrguard ships (promtool parses them separately).
// comment is a PromQL comment, to the end of its line.
var comment = regexp.MustCompile(`#[^\n]*`)

func metricNames(expr string) []string {
	s := stringLit.ReplaceAllString(expr, `""`)
	s = comment.ReplaceAllString(s, "")
	s = labelMatch.ReplaceAllString(s, "{}")
	s = rangeOrSub.ReplaceAllString(s, "[]")
	s = grouping.ReplaceAllString(s, "")
	var names []string
	for _, loc := range identifier.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.") {
			continue // part of a number or duration: 1e5, 15m
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \n\t"), "(") || promKeywords[name] {
			continue
		}
		names = append(names, name)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	for expr, want := range map[string]string{
		`max by (node) (a_b{job="x", result="no-cert"}) == 1`:                       "a_b",
		`sum by (le) (rate(h_bucket{job="x"}[$__rate_interval])) or vector(0)`:      "h_bucket",
		`time() - max(ts_seconds{job="x"}) > 540 and c offset 15m unless d > 1e5`:   "ts_seconds c d",
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`:                "x_bucket",
		`absent(up{job="csrguard"} == 1)`:                                           "up",
		`count(max by (node) (m{node=~"$node"}) - time() < 7 * 86400) or vector(0)`: "m",
	} {
		if got := strings.Join(metricNames(expr), " "); got != want {
			t.Errorf("metricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// TestMetricsDoc keeps docs/metrics.md complete: every metric, alert and
// dashboard panel is listed.
func TestMetricsDoc(t *testing.T) {
	doc := string(readFile(t, repoRoot+"/docs/metrics.md"))
	for m := range knownMetrics(t) {
		if !strings.Contains(doc, "| `"+m+"` |") {
			t.Errorf("docs/metrics.md: metric %s is not in the metrics table", m)
		}
	}
	for _, a := range alertNames(loadRules(t)) {
		if !strings.Contains(doc, "| ["+a+"](runbooks/"+a+".md) |") {
			t.Errorf("docs/metrics.md: alert %s is not in the alerts table", a)
		}
	}
	for _, p := range allPanels(loadDashboard(t).Panels) {
		if p.Type != "row" && !strings.Contains(doc, "| "+p.Title+" |") {
			t.Errorf("docs/metrics.md: panel %q is not in the panels table", p.Title)
		}
	}
}
