// Package promtest turns csrguard's metrics into input for promtool's rule
// unit tests and runs them, so alerting rules are tested against the series
// csrguard really exports. It owns no rules and no metric names; the rules live
// in deploy/prometheus and the names in internal/metrics.
//
// # From a scrape to promtool series
//
// SeriesFromExposition reads Prometheus text exposition (what /metrics serves)
// and returns one promtool input series per sample. promtool's clock starts at
// 0 (the Unix epoch) and the series step by SeriesInterval (1m) for
// SeriesSteps (60) steps, so a test window is one hour. The capture moment
// capturedAt becomes promtool time 0, and each sample is translated so that
// the series behaves as if csrguard had kept exporting it unchanged:
//
//   - gauges, untyped samples and counters (names ending in _total) stay
//     constant: "v+0x60". A counter that does not move is exactly what an
//     idle process exports; tests that need an increase write their own series;
//   - names ending in _age_seconds grow by one second per second:
//     "v+60x60" (60 per 1m step). A value of 0 stays 0: csrguard exports an age
//     of 0 when nothing is pending, and nothing pending does not age;
//   - names ending in _timestamp_seconds are rebased so that capturedAt is
//     time 0: the value becomes v − capturedAt.Unix() and stays constant. At
//     promtool time t, time() − series then equals how long before
//     capturedAt+t the timestamp lies, which is what alert expressions compute
//     (a sweep 30s before the capture is -30; an expiry in 7 days is 604800);
//   - histograms expand into name_bucket{le="…"} (with the +Inf bucket),
//     name_sum and name_count; summaries into name{quantile="…"}, name_sum and
//     name_count; each of these is constant.
//
// Sample timestamps in the exposition are ignored: everything was captured at
// capturedAt. The scrape adds no job or instance labels; add them with
// WithLabels, and add an up series, as Prometheus would.
//
// # Running promtool
//
// Run writes a promtool test file for a RuleTest and runs `promtool test
// rules`. Firing reports which alerts fire at a moment, with which labels.
// Promtool finds the promtool binary for tests in $CSRGUARD_TOOLS_BIN.
package promtest

import (
	"fmt"
	"io"
	"maps"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// SeriesInterval is the interval between the values of the series
// SeriesFromExposition returns; use it as RuleTest.Interval (the default).
const SeriesInterval = time.Minute

// SeriesSteps is how many SeriesInterval steps the series SeriesFromExposition
// returns span after their first value.
const SeriesSteps = 60

// Series is one promtool input series: a series selector and its values in
// promtool's expanding notation ("1+0x60", "0 0 1 1", "_x5" …).
type Series struct {
	// Name is the series selector, e.g. csrguard_kubelet_probe_result{node="n1",result="ok"}.
	Name string
	// Values are the values in expanding notation, one per RuleTest.Interval.
	Values string
}

// SeriesFromExposition parses Prometheus text exposition captured at
// capturedAt into promtool input series, translated as the package comment
// describes, sorted by Name.
func SeriesFromExposition(r io.Reader, capturedAt time.Time) ([]Series, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse exposition: %w", err)
	}
	var out []Series
	add := func(name string, lbls map[string]string, v float64) {
		out = append(out, Series{Name: Selector(name, lbls), Values: translate(name, v, capturedAt)})
	}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			lbls := labelMap(m.GetLabel())
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(name, lbls, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, lbls, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, lbls, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				count := float64(h.GetSampleCount())
				if h.SampleCountFloat != nil {
					count = h.GetSampleCountFloat()
				}
				sawInf := false
				for _, b := range h.GetBucket() {
					c := float64(b.GetCumulativeCount())
					if b.CumulativeCountFloat != nil {
						c = b.GetCumulativeCountFloat()
					}
					sawInf = sawInf || math.IsInf(b.GetUpperBound(), +1)
					add(name+"_bucket", with(lbls, model.BucketLabel, formatFloat(b.GetUpperBound())), c)
				}
				if !sawInf {
					add(name+"_bucket", with(lbls, model.BucketLabel, "+Inf"), count)
				}
				add(name+"_sum", lbls, h.GetSampleSum())
				add(name+"_count", lbls, count)
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					add(name, with(lbls, model.QuantileLabel, formatFloat(q.GetQuantile())), q.GetValue())
				}
				add(name+"_sum", lbls, s.GetSampleSum())
				add(name+"_count", lbls, float64(s.GetSampleCount()))
			default:
				return nil, fmt.Errorf("metric %s: unsupported type %s", name, mf.GetType())
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// translate returns the expanding-notation values of a sample named name
// with value v captured at capturedAt.
func translate(name string, v float64, capturedAt time.Time) string {
	switch {
	case strings.HasSuffix(name, "_age_seconds") && v != 0:
		// Ages grow by one second per second of promtool time.
		return fmt.Sprintf("%s+%sx%d", formatFloat(v), formatFloat(SeriesInterval.Seconds()), SeriesSteps)
	case strings.HasSuffix(name, "_timestamp_seconds"):
		v -= float64(capturedAt.Unix())
	}
	return fmt.Sprintf("%s+0x%d", formatFloat(v), SeriesSteps)
}

// WithLabels returns series with extra added to every selector (replacing
// labels of the same name), as a scrape adds job and instance.
func WithLabels(series []Series, extra map[string]string) ([]Series, error) {
	out := make([]Series, 0, len(series))
	for _, s := range series {
		name, lbls, err := parseSelector(s.Name)
		if err != nil {
			return nil, err
		}
		maps.Copy(lbls, extra)
		out = append(out, Series{Name: Selector(name, lbls), Values: s.Values})
	}
	return out, nil
}

// Selector returns the series selector name{k="v",…} with labels sorted by
// name, or name alone without labels.
func Selector(name string, lbls map[string]string) string {
	if len(lbls) == 0 {
		return name
	}
	keys := make([]string, 0, len(lbls))
	for k := range lbls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		if legacyName.MatchString(k) {
			b.WriteString(k)
		} else {
			b.WriteString(strconv.Quote(k))
		}
		b.WriteByte('=')
		b.WriteString(strconv.Quote(lbls[k]))
	}
	b.WriteByte('}')
	return b.String()
}

var legacyName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func labelMap(pairs []*dto.LabelPair) map[string]string {
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		m[p.GetName()] = p.GetValue()
	}
	return m
}

// with returns a copy of lbls with k set to v.
func with(lbls map[string]string, k, v string) map[string]string {
	m := make(map[string]string, len(lbls)+1)
	maps.Copy(m, lbls)
	m[k] = v
	return m
}

// formatFloat formats v the way promtool's series notation reads it, without
// exponents for readable timestamps.
func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// parseSelector splits a selector written by Selector (or by hand in the same
// form) into its metric name and labels.
func parseSelector(sel string) (string, map[string]string, error) {
	i := strings.IndexByte(sel, '{')
	if i < 0 {
		return sel, map[string]string{}, nil
	}
	lbls, rest, err := parseLabelSet(sel[i:])
	if err != nil {
		return "", nil, fmt.Errorf("selector %q: %w", sel, err)
	}
	if strings.TrimSpace(rest) != "" {
		return "", nil, fmt.Errorf("selector %q: trailing %q", sel, rest)
	}
	return sel[:i], lbls, nil
}

// parseLabelSet parses a label set {a="b", "c d"="e"} at the start of s, in
// the form Prometheus prints labels (values Go-quoted, names quoted when they
// are not legacy names), and returns the labels and the rest of s.
func parseLabelSet(s string) (map[string]string, string, error) {
	if !strings.HasPrefix(s, "{") {
		return nil, s, fmt.Errorf("label set must start with '{': %q", s)
	}
	s = s[1:]
	lbls := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ")
		if strings.HasPrefix(s, "}") {
			return lbls, s[1:], nil
		}
		var name string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, s, fmt.Errorf("label name: %w", err)
			}
			name, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else {
			i := strings.IndexByte(s, '=')
			if i <= 0 {
				return nil, s, fmt.Errorf("label name expected at %q", s)
			}
			name, s = strings.TrimSpace(s[:i]), s[i:]
		}
		s = strings.TrimLeft(s, " ")
		if !strings.HasPrefix(s, "=") {
			return nil, s, fmt.Errorf("'=' expected after label %q", name)
		}
		s = strings.TrimLeft(s[1:], " ")
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return nil, s, fmt.Errorf("value of label %q: %w", name, err)
		}
		lbls[name], _ = strconv.Unquote(q)
		s = strings.TrimLeft(s[len(q):], " ")
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if !strings.HasPrefix(s, "}") {
			return nil, s, fmt.Errorf("',' or '}' expected after label %q", name)
		}
	}
}
