package promtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// capturedAt is when the expositions below were "scraped".
var capturedAt = time.Unix(1_800_000_000, 0)

const exposition = `# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{code="200",path="/a\"b"} 12
# HELP app_temperature Temperature.
# TYPE app_temperature gauge
app_temperature -3.5
# HELP app_pending_oldest_age_seconds Age.
# TYPE app_pending_oldest_age_seconds gauge
app_pending_oldest_age_seconds{node="n1"} 120
app_pending_oldest_age_seconds{node="n2"} 0
# HELP app_expiry_timestamp_seconds Expiry.
# TYPE app_expiry_timestamp_seconds gauge
app_expiry_timestamp_seconds{node="n1"} 1800086400
app_expiry_timestamp_seconds{node="n2"} 1799999970
# HELP app_latency_seconds Latency.
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le="0.5"} 1
app_latency_seconds_bucket{le="1"} 3
app_latency_seconds_bucket{le="+Inf"} 4
app_latency_seconds_sum 7.25
app_latency_seconds_count 4
# HELP app_size Size.
# TYPE app_size summary
app_size{quantile="0.5"} 10
app_size{quantile="0.99"} 20
app_size_sum 100
app_size_count 7
# A line without TYPE is untyped.
app_untyped 1e+06
`

func TestSeriesFromExposition(t *testing.T) {
	got, err := SeriesFromExposition(strings.NewReader(exposition), capturedAt)
	if err != nil {
		t.Fatal(err)
	}
	want := []Series{
		{`app_expiry_timestamp_seconds{node="n1"}`, "86400+0x60"},
		{`app_expiry_timestamp_seconds{node="n2"}`, "-30+0x60"},
		{`app_latency_seconds_bucket{le="+Inf"}`, "4+0x60"},
		{`app_latency_seconds_bucket{le="0.5"}`, "1+0x60"},
		{`app_latency_seconds_bucket{le="1"}`, "3+0x60"},
		{`app_latency_seconds_count`, "4+0x60"},
		{`app_latency_seconds_sum`, "7.25+0x60"},
		{`app_pending_oldest_age_seconds{node="n1"}`, "120+60x60"},
		{`app_pending_oldest_age_seconds{node="n2"}`, "0+0x60"},
		{`app_requests_total{code="200",path="/a\"b"}`, "12+0x60"},
		{`app_size_count`, "7+0x60"},
		{`app_size_sum`, "100+0x60"},
		{`app_size{quantile="0.5"}`, "10+0x60"},
		{`app_size{quantile="0.99"}`, "20+0x60"},
		{`app_temperature`, "-3.5+0x60"},
		{`app_untyped`, "1000000+0x60"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SeriesFromExposition() mismatch (-want +got):\n%s", diff)
	}
}

func TestSeriesFromExpositionAddsInfBucket(t *testing.T) {
	// client_golang always writes the +Inf bucket; hand-written text may not.
	const text = "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 5\n"
	got, err := SeriesFromExposition(strings.NewReader(text), capturedAt)
	if err != nil {
		t.Fatal(err)
	}
	want := []Series{
		{`h_bucket{le="+Inf"}`, "5+0x60"},
		{`h_bucket{le="1"}`, "2+0x60"},
		{`h_count`, "5+0x60"},
		{`h_sum`, "1+0x60"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SeriesFromExposition() mismatch (-want +got):\n%s", diff)
	}
}

func TestSeriesFromExpositionRejectsGarbage(t *testing.T) {
	if _, err := SeriesFromExposition(strings.NewReader("metric{a=\"b\" 1\n"), capturedAt); err == nil {
		t.Error("SeriesFromExposition() of malformed text: got no error")
	}
}

func TestWithLabels(t *testing.T) {
	got, err := WithLabels([]Series{
		{`up`, "1"},
		{`m{a="x",job="old"}`, "2"},
	}, map[string]string{"job": "csrguard", "instance": "10.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Series{
		{`up{instance="10.0.0.1:8080",job="csrguard"}`, "1"},
		{`m{a="x",instance="10.0.0.1:8080",job="csrguard"}`, "2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithLabels() mismatch (-want +got):\n%s", diff)
	}
	if _, err := WithLabels([]Series{{`m{a=x}`, "1"}}, nil); err == nil {
		t.Error("WithLabels() of an unquoted value: got no error")
	}
}

func TestParseSamples(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want map[string][]map[string]string
	}{
		{name: "nil", in: "nil", want: map[string][]map[string]string{}},
		{
			name: "two_alerts",
			in:   `{__name__="ALERTS", alertname="B", alertstate="firing", node="n2"} 1E+00, {__name__="ALERTS", alertname="A", alertstate="firing", msg="a, \"b\"} c"} 1E+00, {__name__="ALERTS", alertname="B", alertstate="firing", node="n1"} 1E+00`,
			want: map[string][]map[string]string{
				"A": {{"msg": `a, "b"} c`}},
				"B": {{"node": "n1"}, {"node": "n2"}},
			},
		},
		{
			name: "quoted_label_name",
			in:   `{__name__="ALERTS", "a.b"="c", alertname="A", alertstate="firing"} 1E+00`,
			want: map[string][]map[string]string{"A": {{"a.b": "c"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSamples(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseSamples() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// roomSeries is a room at 35°C and a sensor last read 10 minutes before
// capturedAt, as exposition.
func roomSeries(t *testing.T) []Series {
	t.Helper()
	const text = `# TYPE room_temperature_celsius gauge
room_temperature_celsius{room="lab"} 35
room_temperature_celsius{room="hall"} 20
# TYPE sensor_read_timestamp_seconds gauge
sensor_read_timestamp_seconds 1799999400
`
	s, err := SeriesFromExposition(strings.NewReader(text), capturedAt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRun(t *testing.T) {
	promtool := Promtool(t)
	ctx := context.Background()
	rules := []string{"testdata/rules.yaml"}
	lab := map[string]string{"room": "lab", "severity": "warning"}

	out, err := Run(ctx, promtool, t.TempDir(), RuleTest{
		RuleFiles: rules,
		Series:    roomSeries(t),
		AlertTests: []AlertTest{
			// for: 2m — pending before, firing from 2m on.
			{EvalTime: time.Minute, AlertName: "RoomHot"},
			{EvalTime: 2 * time.Minute, AlertName: "RoomHot", ExpAlerts: []ExpAlert{{Labels: lab}}},
			{EvalTime: 3 * time.Minute, AlertName: "RoomHot", ExpAlerts: []ExpAlert{{
				Labels:      lab,
				Annotations: map[string]string{"summary": "lab is 35°C"},
			}}},
			// Read 600s before capture: stale from time 0.
			{EvalTime: 0, AlertName: "SensorStale", ExpAlerts: []ExpAlert{{Labels: map[string]string{"severity": "critical"}}}},
		},
	})
	if err != nil {
		t.Fatalf("Run() = %v; output:\n%s", err, out)
	}

	// A wrong expectation fails, with promtool's explanation.
	for _, tc := range []struct {
		name string
		at   AlertTest
	}{
		{"fires_early", AlertTest{EvalTime: time.Minute, AlertName: "RoomHot", ExpAlerts: []ExpAlert{{Labels: lab}}}},
		{"wrong_labels", AlertTest{EvalTime: 5 * time.Minute, AlertName: "RoomHot", ExpAlerts: []ExpAlert{{Labels: map[string]string{"room": "hall", "severity": "warning"}}}}},
		{"wrong_annotation", AlertTest{EvalTime: 5 * time.Minute, AlertName: "RoomHot", ExpAlerts: []ExpAlert{{Labels: lab, Annotations: map[string]string{"summary": "lab is hot"}}}}},
		{"not_firing", AlertTest{EvalTime: 5 * time.Minute, AlertName: "RoomHot"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Run(ctx, promtool, t.TempDir(), RuleTest{RuleFiles: rules, Series: roomSeries(t), AlertTests: []AlertTest{tc.at}})
			if err == nil {
				t.Fatalf("Run() with a wrong expectation passed; output:\n%s", out)
			}
			if !strings.Contains(out, "FAILED") {
				t.Errorf("Run() output does not report the failure:\n%s", out)
			}
		})
	}
}

func TestRunRejectsMixedAnnotations(t *testing.T) {
	_, err := Run(context.Background(), "promtool-not-needed", t.TempDir(), RuleTest{AlertTests: []AlertTest{{
		AlertName: "X",
		ExpAlerts: []ExpAlert{{Labels: map[string]string{"a": "1"}}, {Labels: map[string]string{"a": "2"}, Annotations: map[string]string{}}},
	}}})
	if err == nil {
		t.Error("Run() with annotations on some expected alerts only: got no error")
	}
}

func TestFiring(t *testing.T) {
	promtool := Promtool(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		at   time.Duration
		want map[string][]map[string]string
	}{
		{"pending_is_not_firing", time.Minute, map[string][]map[string]string{
			"SensorStale": {{"severity": "critical"}},
		}},
		{"after_for", 2 * time.Minute, map[string][]map[string]string{
			"RoomHot":     {{"room": "lab", "severity": "warning"}},
			"SensorStale": {{"severity": "critical"}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Firing(ctx, promtool, t.TempDir(), []string{"testdata/rules.yaml"}, roomSeries(t), tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Firing() mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("nothing_firing", func(t *testing.T) {
		got, err := Firing(ctx, promtool, t.TempDir(), []string{"testdata/rules.yaml"}, []Series{{`room_temperature_celsius{room="hall"}`, "20+0x10"}}, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("Firing() = %v, want nothing", got)
		}
	})

	t.Run("broken_rules", func(t *testing.T) {
		bad := t.TempDir() + "/bad.yaml"
		writeFile(t, bad, "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(\n")
		if _, err := Firing(ctx, promtool, t.TempDir(), []string{bad}, nil, 0); err == nil {
			t.Error("Firing() with a broken rules file: got no error")
		}
	})
}
