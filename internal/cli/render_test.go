package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	"github.com/csrguard/csrguard/internal/diagnose"
	"github.com/csrguard/csrguard/internal/severity"
)

// readDiagnoseGolden decodes what package diagnose computed for one of its
// test clusters (its golden file, written as -o json prints it) into v, and
// returns the file: these goldens are the reports the CLI prints here.
func readDiagnoseGolden(t *testing.T, name string, v any) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "diagnose", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}

// outputCases are the output flags every command's goldens cover, by the
// golden's suffix. jsonpath is per command.
var outputCases = []struct {
	suffix string
	args   []string
}{
	{"table", nil},
	{"wide", []string{"-o", "wide"}},
	{"no-headers", []string{"--no-headers"}},
	{"name", []string{"-o", "name"}},
}

func TestRenderDoctor(t *testing.T) {
	for _, name := range []string{"doctor-incident", "doctor-healthy", "doctor-mixed"} {
		t.Run(name, func(t *testing.T) {
			var r diagnose.Report
			file := readDiagnoseGolden(t, name+".json.golden", &r)
			doc := doctorOutput{r}
			// One JSON: -o json prints the report exactly as diagnose's golden holds it.
			if diff := cmp.Diff(printed(t, doc, "-o", "json"), file); diff != "" {
				t.Errorf("-o json differs from ../diagnose/testdata/%s.json.golden (-got +want):\n%s", name, diff)
			}
			golden(t, name+".table.golden", printed(t, doc))
			if name != "doctor-incident" {
				return
			}
			for _, tc := range outputCases[1:] {
				golden(t, name+"."+tc.suffix+".golden", printed(t, doc, tc.args...))
			}
			golden(t, name+".yaml.golden", printed(t, doc, "-o", "yaml"))
			golden(t, name+".jsonpath.golden", printed(t, doc, "-o", `jsonpath={range .findings[?(@.severity=="critical")]}{.id}: {.nodes[*]}{"\n"}{end}`))
		})
	}
}

// TestRenderDoctorTruncates checks that long lists are cut in the table
// and printed in full with -o wide.
func TestRenderDoctorTruncates(t *testing.T) {
	f := diagnose.Finding{ID: "x", Severity: severity.Warning, Title: "many", Fix: []string{"fix"}}
	for i := range 30 {
		f.Nodes = append(f.Nodes, "node-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		f.Evidence = append(f.Evidence, "line")
	}
	doc := doctorOutput{diagnose.Report{Summary: diagnose.Summary{Warning: 1}, Findings: []diagnose.Finding{f}}}
	table := printed(t, doc)
	for _, want := range []string{"node-ja … (20 more)", "… 15 more (see -o wide)"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	wide := printed(t, doc, "-o", "wide")
	if strings.Contains(wide, "more") || !strings.Contains(wide, "node-db") || strings.Count(wide, "- line") != 30 {
		t.Errorf("wide output cuts a list:\n%s", wide)
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		worst          string
		warnings, info int
		want           string
	}{
		{"", 0, 0, "No problems found"},
		{"", 0, 1, "No problems found (1 info)"},
		{"1 critical", 2, 0, "1 critical, 2 warnings"},
		{"2 critical", 0, 1, "2 critical, 1 info"},
		{"1 error", 1, 3, "1 error, 1 warning, 3 info"},
	}
	for _, tt := range tests {
		if got := verdict(tt.worst, tt.warnings, tt.info); got != tt.want {
			t.Errorf("verdict(%q, %d, %d) = %q, want %q", tt.worst, tt.warnings, tt.info, got, tt.want)
		}
	}
}

// certRows are the rows diagnose.Certs finds in its mixed test cluster: a
// certificate in every state the table shows.
func certRows() []diagnose.CertRow {
	now := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	row := func(node string, left time.Duration, source, state string, sans bool) diagnose.CertRow {
		return diagnose.CertRow{Node: node, Expires: now.Add(left), Residual: left, Issuer: "kubelet-serving-ca", Source: source, State: state, SANsMatch: ptr.To(sans)}
	}
	return []diagnose.CertRow{
		row("node-e", 364*24*time.Hour, diagnose.SourceCSR, diagnose.StateTimeout, true),
		row("node-a", 335*24*time.Hour, diagnose.SourceProbe, diagnose.StateOK, true),
		{Node: "node-b", Source: diagnose.SourceProbe, State: diagnose.StateNoServingCertificate},
		row("node-c", 3*24*time.Hour+14*time.Minute, diagnose.SourceProbe, diagnose.StateExpiring, true),
		{Node: "node-d", Source: diagnose.SourceNone, State: diagnose.StateRefused},
		row("node-f", 90*24*time.Hour+5*time.Hour, diagnose.SourceProbe, diagnose.StateSANMismatch, false),
	}
}

func TestRenderCerts(t *testing.T) {
	other := []otherCert{{Name: "api-server", Subject: "kube-apiserver", Issuer: "kubernetes", Expires: time.Date(2026, time.June, 1, 0, 0, 0, 0, time.UTC),
		ResidualSeconds: int64((91*24*time.Hour + 12*time.Hour) / time.Second), Source: "tls 10.0.0.1:6443"}}
	doc := newCertsOutput(certRows(), sortByNode, other)
	for _, tc := range outputCases {
		golden(t, "certs."+tc.suffix+".golden", printed(t, doc, tc.args...))
	}
	golden(t, "certs.json.golden", printed(t, doc, "-o", "json"))
	golden(t, "certs.jsonpath.golden", printed(t, doc, "-o", `jsonpath={range .certificates[*]}{.node}{"\t"}{.residualSeconds}{"\n"}{end}`))
	golden(t, "certs-expiry.table.golden", printed(t, newCertsOutput(certRows(), sortByExpiry, nil)))
}

func TestRenderPreflight(t *testing.T) {
	var r diagnose.PreflightReport
	file := readDiagnoseGolden(t, "preflight-no-approver.json.golden", &r)
	doc := newPreflightOutput(r)
	if diff := cmp.Diff(printed(t, doc, "-o", "json"), file); diff != "" {
		t.Errorf("-o json differs from ../diagnose/testdata/preflight-no-approver.json.golden (-got +want):\n%s", diff)
	}
	for _, tc := range outputCases {
		golden(t, "preflight-no-approver."+tc.suffix+".golden", printed(t, doc, tc.args...))
	}
	golden(t, "preflight-no-approver.jsonpath.golden", printed(t, doc, "-o", `jsonpath={.ok}{range .checks[?(@.ok==false)]} {.name}{end}`))
	if got := printed(t, newPreflightOutput(diagnose.PreflightReport{}), "-o", "jsonpath={.nodes}"); got != "[]" {
		t.Errorf("a report without nodes lists them as %q, want []", got)
	}
}
