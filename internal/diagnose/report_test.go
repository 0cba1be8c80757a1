package diagnose

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/severity"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(got), string(want)); diff != "" {
		t.Errorf("%s differs (-got +want):\n%s", name, diff)
	}
}

// asJSON is v as `csrguard … -o json` prints it: indented by two spaces,
// without HTML escaping. internal/cli's tests read these goldens as the
// reports they print, and check that -o json reproduces them byte for byte.
func asJSON(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mixed is a cluster with a certificate in every state the certs table shows.
func mixed(t *testing.T) Snapshot {
	s := healthy(t, ubuntuOS)
	s.Probes["node-b"] = probeNoCert("node-b", "10.0.0.2")
	s.Probes["node-c"] = probeOK("node-c", "10.0.0.3", newLeaf(t, leafSpec{node: "node-c", ip: "10.0.0.3", notBefore: now.Add(-362 * 24 * time.Hour), notAfter: now.Add(3*24*time.Hour + 14*time.Minute)}))
	s.Nodes = append(s.Nodes, newNode("node-d", "10.0.0.4", ubuntuOS, false), newNode("node-e", "10.0.0.5", ubuntuOS, false))
	s.Probes["node-d"] = probeFailed("node-d", "10.0.0.4", metrics.ProbeRefused, "dial tcp 10.0.0.4:10250: connect: connection refused")
	s.Probes["node-e"] = probeFailed("node-e", "10.0.0.5", metrics.ProbeTimeout, "dial tcp 10.0.0.5:10250: i/o timeout")
	s.CSRs = append(s.CSRs, issuedCSR(t, "csr-node-e-1", "node-e", "10.0.0.5", 40*time.Minute, newLeaf(t, leafSpec{node: "node-e", ip: "10.0.0.5", notBefore: now.Add(-40 * time.Minute), notAfter: now.Add(364 * 24 * time.Hour)})))
	kube.SortCSRs(s.CSRs)
	return s
}

// TestReportGolden locks in the doctor's report, findings and summary, of
// three clusters.
func TestReportGolden(t *testing.T) {
	tests := []struct {
		name string
		s    func(t *testing.T) Snapshot
	}{
		{"doctor-incident", func(t *testing.T) Snapshot { return incident(t, talosOS) }},
		{"doctor-healthy", func(t *testing.T) Snapshot { return healthy(t, ubuntuOS) }},
		{"doctor-mixed", mixed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.s(t)
			golden(t, tt.name+".json.golden", asJSON(t, NewReport(s, Diagnose(s))))
		})
	}
}

// TestReportJSONShape checks the JSON a script reads: field names, empty
// lists as [], severities as words.
func TestReportJSONShape(t *testing.T) {
	s := healthy(t, ubuntuOS)
	s.Approvers = nil
	out := asJSON(t, NewReport(s, Diagnose(s)))
	var got struct {
		Summary struct {
			Nodes     int            `json:"nodes"`
			CSRs      map[string]int `json:"csrs"`
			Approvers []Approver     `json:"approvers"`
			Warning   int            `json:"warning"`
		} `json:"summary"`
		Findings []struct {
			ID       string         `json:"id"`
			Severity severity.Level `json:"severity"`
			Nodes    []string       `json:"nodes"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Summary.Nodes != 3 || got.Summary.CSRs["issued"] != 3 || got.Summary.Approvers == nil || got.Summary.Warning != 1 {
		t.Errorf("summary = %+v", got.Summary)
	}
	if len(got.Findings) != 1 || got.Findings[0].ID != IDNoApprover || got.Findings[0].Severity != severity.Warning || got.Findings[0].Nodes == nil {
		t.Errorf("findings = %+v", got.Findings)
	}
	if !strings.Contains(string(out), `"nodes": []`) {
		t.Errorf("empty nodes not rendered as []:\n%s", out)
	}
}

func TestApproverState(t *testing.T) {
	for _, tc := range []struct {
		a    Approver
		want string
	}{
		{Approver{Ready: true, Mode: "enforce"}, "running"},
		{Approver{Ready: true}, "running"},
		{Approver{Ready: true, Mode: "dry-run"}, "dry-run"},
		{Approver{Mode: "enforce"}, "not running"},
	} {
		if got := tc.a.State(); got != tc.want {
			t.Errorf("%+v.State() = %q, want %q", tc.a, got, tc.want)
		}
	}
}
