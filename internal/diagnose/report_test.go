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

	"github.com/csrguard/csrguard/internal/approval"
	"github.com/csrguard/csrguard/internal/metrics"
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

// mixed is a cluster with a certificate in every state the certs table shows.
func mixed(t *testing.T) Snapshot {
	s := healthy(t, ubuntuOS)
	s.Probes["node-b"] = probeNoCert("node-b", "10.0.0.2")
	s.Probes["node-c"] = probeOK("node-c", "10.0.0.3", newLeaf(t, leafSpec{node: "node-c", ip: "10.0.0.3", notBefore: now.Add(-362 * 24 * time.Hour), notAfter: now.Add(3*24*time.Hour + 14*time.Minute)}))
	s.Nodes = append(s.Nodes, newNode("node-d", "10.0.0.4", ubuntuOS, false), newNode("node-e", "10.0.0.5", ubuntuOS, false))
	s.Probes["node-d"] = probeFailed("node-d", "10.0.0.4", metrics.ProbeRefused, "dial tcp 10.0.0.4:10250: connect: connection refused")
	s.Probes["node-e"] = probeFailed("node-e", "10.0.0.5", metrics.ProbeTimeout, "dial tcp 10.0.0.5:10250: i/o timeout")
	s.CSRs = append(s.CSRs, issuedCSR(t, "csr-node-e-1", "node-e", "10.0.0.5", 40*time.Minute, newLeaf(t, leafSpec{node: "node-e", ip: "10.0.0.5", notBefore: now.Add(-40 * time.Minute), notAfter: now.Add(364 * 24 * time.Hour)})))
	approval.SortCSRs(s.CSRs)
	return s
}

func TestRenderFindingsGolden(t *testing.T) {
	tests := []struct {
		name string
		s    func(t *testing.T) Snapshot
	}{
		{"doctor-incident", func(t *testing.T) Snapshot { return incident(t, talosOS) }},
		{"doctor-healthy", func(t *testing.T) Snapshot { return healthy(t, ubuntuOS) }},
		{"doctor-mixed", mixed},
	}
	for _, tt := range tests {
		for _, format := range []string{FormatTable, FormatJSON, FormatYAML} {
			if format == FormatYAML && tt.name != "doctor-incident" {
				continue
			}
			t.Run(tt.name+"_"+format, func(t *testing.T) {
				s := tt.s(t)
				var buf bytes.Buffer
				if err := RenderFindings(&buf, s, Diagnose(s), format); err != nil {
					t.Fatal(err)
				}
				golden(t, tt.name+"."+format+".golden", buf.Bytes())
			})
		}
	}
}

func TestRenderCertsGolden(t *testing.T) {
	rows := Certs(mixed(t))
	tests := []struct {
		name, sortBy, format string
	}{
		{"certs.table.golden", SortByNode, FormatTable},
		{"certs-expiry.table.golden", SortByExpiry, FormatTable},
		{"certs.json.golden", SortByNode, FormatJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := RenderCerts(&buf, rows, tt.sortBy, tt.format); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, buf.Bytes())
		})
	}
}

// TestRenderJSONShape checks the JSON a script reads: field names, empty
// lists as [], severities as words.
func TestRenderJSONShape(t *testing.T) {
	s := healthy(t, ubuntuOS)
	s.Approvers = nil
	var buf bytes.Buffer
	if err := RenderFindings(&buf, s, Diagnose(s), FormatJSON); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Summary struct {
			Nodes     int            `json:"nodes"`
			CSRs      map[string]int `json:"csrs"`
			Approvers []Approver     `json:"approvers"`
			Warning   int            `json:"warning"`
		} `json:"summary"`
		Findings []struct {
			ID       string   `json:"id"`
			Severity Severity `json:"severity"`
			Nodes    []string `json:"nodes"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Summary.Nodes != 3 || got.Summary.CSRs["issued"] != 3 || got.Summary.Approvers == nil || got.Summary.Warning != 1 {
		t.Errorf("summary = %+v", got.Summary)
	}
	if len(got.Findings) != 1 || got.Findings[0].ID != IDNoApprover || got.Findings[0].Severity != Warning || got.Findings[0].Nodes == nil {
		t.Errorf("findings = %+v", got.Findings)
	}
	if !strings.Contains(buf.String(), `"nodes": []`) {
		t.Errorf("empty nodes not rendered as []:\n%s", buf.String())
	}
}

func TestRenderErrors(t *testing.T) {
	var buf bytes.Buffer
	if err := RenderFindings(&buf, Snapshot{}, nil, "xml"); err == nil {
		t.Error("RenderFindings accepted format xml")
	}
	if err := RenderCerts(&buf, nil, "age", FormatTable); err == nil {
		t.Error("RenderCerts accepted sort order age")
	}
	if err := RenderCerts(&buf, nil, SortByNode, "xml"); err == nil {
		t.Error("RenderCerts accepted format xml")
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		findings []Finding
		want     string
	}{
		{nil, "No problems found"},
		{[]Finding{{Severity: Info}}, "No problems found (1 info)"},
		{[]Finding{{Severity: Critical}, {Severity: Warning}, {Severity: Warning}}, "1 critical, 2 warnings"},
		{[]Finding{{Severity: Critical}, {Severity: Critical}, {Severity: Info}}, "2 critical, 1 info"},
	}
	for _, tt := range tests {
		if got := NewReport(Snapshot{}, tt.findings).Verdict(); got != tt.want {
			t.Errorf("Verdict() = %q, want %q", got, tt.want)
		}
	}
}

// TestRenderTableTruncates checks that long lists are cut in the table.
func TestRenderTableTruncates(t *testing.T) {
	f := Finding{ID: "x", Severity: Warning, Title: "many", Fix: []string{"fix"}}
	for i := range 30 {
		f.Nodes = append(f.Nodes, "node-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		f.Evidence = append(f.Evidence, "line")
	}
	var buf bytes.Buffer
	if err := RenderFindings(&buf, Snapshot{}, []Finding{f}, FormatTable); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"… (20 more)", "… 15 more (see -o json)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}
