package promtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// RuleTest is one promtool test group: rule files, input series and the
// alerts expected at given moments. Rules are evaluated every minute
// (promtool's default evaluation_interval) from time 0.
type RuleTest struct {
	// RuleFiles are the rule files under test; relative paths are taken from
	// the working directory.
	RuleFiles []string
	// Interval is the step of the Series values; zero means SeriesInterval.
	Interval time.Duration
	// Series are the input series.
	Series []Series
	// AlertTests are the expectations, checked in order of EvalTime.
	AlertTests []AlertTest
}

// AlertTest expects exactly ExpAlerts to be firing for AlertName at EvalTime
// (promtool time; the evaluation at or just before it counts). No ExpAlerts
// means the alert must not fire.
type AlertTest struct {
	EvalTime  time.Duration
	AlertName string
	ExpAlerts []ExpAlert
}

// ExpAlert is one expected firing alert.
type ExpAlert struct {
	// Labels are every label of the alert except alertname: the rule's labels
	// (severity) and those of the expression's result (node, reason …).
	// They are compared exactly.
	Labels map[string]string
	// Annotations, if not nil, are compared exactly (after templating). If
	// nil, annotations are not compared. Within one AlertTest give
	// annotations for every ExpAlert or for none.
	Annotations map[string]string
}

// The promtool unit test file format (promtool test rules; Prometheus'
// "Unit testing for rules" documentation). JSON is valid YAML, so the file is
// written with encoding/json.
type testFile struct {
	RuleFiles []string    `json:"rule_files"`
	Tests     []testGroup `json:"tests"`
}

type testGroup struct {
	Interval        string       `json:"interval"`
	InputSeries     []inputSerie `json:"input_series"`
	AlertRuleTests  []alertTest  `json:"alert_rule_test,omitempty"`
	PromQLExprTests []exprTest   `json:"promql_expr_test,omitempty"`
}

type inputSerie struct {
	Series string `json:"series"`
	Values string `json:"values"`
}

type alertTest struct {
	EvalTime  string     `json:"eval_time"`
	Alertname string     `json:"alertname"`
	ExpAlerts []expAlert `json:"exp_alerts"`
}

type expAlert struct {
	ExpLabels      map[string]string `json:"exp_labels"`
	ExpAnnotations map[string]string `json:"exp_annotations"`
}

type exprTest struct {
	Expr       string      `json:"expr"`
	EvalTime   string      `json:"eval_time"`
	ExpSamples []expSample `json:"exp_samples"`
}

type expSample struct {
	Labels string  `json:"labels"`
	Value  float64 `json:"value"`
}

// Run writes t as a promtool test file into dir and runs `promtool test rules`
// on it. It returns promtool's combined output, and an error if promtool
// failed (an expectation not met, a rule that does not load or evaluate).
//
// An AlertTest whose ExpAlerts all carry Annotations, or that expects no
// alert, becomes a promtool alert_rule_test, which compares labels and
// annotations exactly. One whose ExpAlerts carry no Annotations becomes a
// promql_expr_test of ALERTS{alertname="…",alertstate="firing"} at EvalTime,
// whose samples must be exactly the expected label sets: the same check
// without annotations. (promtool itself cannot ignore annotations: it compares
// missing exp_annotations as empty.)
func Run(ctx context.Context, promtool, dir string, t RuleTest) (output string, err error) {
	group := testGroup{Interval: duration(t.Interval), InputSeries: inputSeries(t.Series)}
	for _, at := range t.AlertTests {
		withAnn, withoutAnn := 0, 0
		for _, e := range at.ExpAlerts {
			if e.Annotations != nil {
				withAnn++
			} else {
				withoutAnn++
			}
		}
		switch {
		case withAnn > 0 && withoutAnn > 0:
			return "", fmt.Errorf("alert test %s at %s: give annotations for every expected alert or for none", at.AlertName, at.EvalTime)
		case withoutAnn == 0:
			a := alertTest{EvalTime: duration(at.EvalTime), Alertname: at.AlertName, ExpAlerts: []expAlert{}}
			for _, e := range at.ExpAlerts {
				a.ExpAlerts = append(a.ExpAlerts, expAlert{ExpLabels: e.Labels, ExpAnnotations: e.Annotations})
			}
			group.AlertRuleTests = append(group.AlertRuleTests, a)
		default:
			sel := map[string]string{model.AlertNameLabel: at.AlertName, "alertstate": "firing"}
			e := exprTest{Expr: Selector("ALERTS", sel), EvalTime: duration(at.EvalTime), ExpSamples: []expSample{}}
			for _, exp := range at.ExpAlerts {
				lbls := with(exp.Labels, model.AlertNameLabel, at.AlertName)
				lbls["alertstate"] = "firing"
				e.ExpSamples = append(e.ExpSamples, expSample{Labels: Selector("ALERTS", lbls), Value: 1})
			}
			group.PromQLExprTests = append(group.PromQLExprTests, e)
		}
	}
	return run(ctx, promtool, dir, t.RuleFiles, group)
}

// firingExpr selects every firing alert; the ALERTS series is written by the
// rule evaluation promtool runs.
const firingExpr = `ALERTS{alertstate="firing"}`

// Firing reports the alerts firing at evalTime, by alert name, each as its
// labels without alertname (the form of ExpAlert.Labels), sorted. The series
// step by SeriesInterval.
//
// It runs promtool with one promql_expr_test of ALERTS{alertstate="firing"}
// that expects no sample: if promtool passes, nothing fires; if not, the
// firing alerts are read from the "got:" line promtool prints for the failed
// expectation. Any other failure is returned as an error with promtool's
// output.
func Firing(ctx context.Context, promtool, dir string, ruleFiles []string, series []Series, evalTime time.Duration) (map[string][]map[string]string, error) {
	group := testGroup{
		Interval:        duration(SeriesInterval),
		InputSeries:     inputSeries(series),
		PromQLExprTests: []exprTest{{Expr: firingExpr, EvalTime: duration(evalTime), ExpSamples: []expSample{}}},
	}
	out, err := run(ctx, promtool, dir, ruleFiles, group)
	if err == nil {
		return map[string][]map[string]string{}, nil
	}
	if _, ok := errors.AsType[*exec.ExitError](err); !ok {
		return nil, err
	}
	got, ok := gotLine(out)
	if !ok {
		return nil, fmt.Errorf("%w; output:\n%s", err, out)
	}
	firing, err := parseSamples(got)
	if err != nil {
		return nil, fmt.Errorf("parse promtool output %q: %w", got, err)
	}
	return firing, nil
}

// gotLine returns what follows "got: " in promtool's report of the failed
// firingExpr test.
func gotLine(out string) (string, bool) {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.Contains(l, "expr: "+strconv.Quote(firingExpr)) {
			continue
		}
		for _, g := range lines[i+1:] {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(g), "got: "); ok {
				return rest, true
			}
		}
	}
	return "", false
}

// parseSamples parses promtool's rendering of a vector of ALERTS samples,
// `{__name__="ALERTS", alertname="A", …} 1E+00, {…} 1E+00`, or "nil".
func parseSamples(s string) (map[string][]map[string]string, error) {
	firing := map[string][]map[string]string{}
	s = strings.TrimSpace(s)
	if s == "nil" {
		return firing, nil
	}
	for s != "" {
		lbls, rest, err := parseLabelSet(s)
		if err != nil {
			return nil, err
		}
		// Skip the value.
		rest = strings.TrimLeft(rest, " ")
		if i := strings.Index(rest, ", "); i >= 0 {
			rest = rest[i+2:]
		} else {
			rest = ""
		}
		s = rest
		name := lbls[model.AlertNameLabel]
		for _, k := range []string{model.MetricNameLabel, model.AlertNameLabel, "alertstate"} {
			delete(lbls, k)
		}
		firing[name] = append(firing[name], lbls)
	}
	for _, alerts := range firing {
		sort.Slice(alerts, func(i, j int) bool { return Selector("", alerts[i]) < Selector("", alerts[j]) })
	}
	return firing, nil
}

// run writes group as a test file into dir and runs promtool on it.
func run(ctx context.Context, promtool, dir string, ruleFiles []string, group testGroup) (string, error) {
	f := testFile{Tests: []testGroup{group}}
	for _, rf := range ruleFiles {
		// promtool resolves relative rule files from the test file's directory.
		abs, err := filepath.Abs(rf)
		if err != nil {
			return "", err
		}
		f.RuleFiles = append(f.RuleFiles, abs)
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "rules-test-*.yaml")
	if err != nil {
		return "", err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, promtool, "test", "rules", tmp.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("promtool test rules %s: %w", tmp.Name(), err)
	}
	return string(out), nil
}

func inputSeries(series []Series) []inputSerie {
	out := make([]inputSerie, 0, len(series))
	for _, s := range series {
		out = append(out, inputSerie{Series: s.Name, Values: s.Values})
	}
	return out
}

// duration formats d for promtool (model.Duration: "1m", "90s", "1h5m").
func duration(d time.Duration) string {
	if d == 0 {
		d = SeriesInterval
	}
	return model.Duration(d).String()
}
