package diagnose

import (
	"strings"
	"time"

	"github.com/csrguard/csrguard/internal/severity"
)

// Report is what the doctor found, as data: the findings and a summary of
// the cluster they are about. The CLI prints it (as a table, or as JSON and
// YAML with these field names: stable lowerCamelCase, durations in whole
// seconds in fields ending in Seconds, times in RFC 3339).
type Report struct {
	Summary  Summary   `json:"summary"`
	Findings []Finding `json:"findings"`
}

// Summary describes the cluster the findings are about.
type Summary struct {
	Time  time.Time `json:"time"`
	Nodes int       `json:"nodes"`
	// Talos is true when a Node runs Talos Linux; the fixes then show the Talos way.
	Talos bool `json:"talos"`
	// CSRs counts the kubelet-serving CSRs by state: pending, approved
	// (not yet issued), issued, denied, failed.
	CSRs                 map[string]int `json:"csrs"`
	OldestPendingSeconds int64          `json:"oldestPendingSeconds"`
	Approvers            []Approver     `json:"approvers"`
	// Probed is true when probe results were used; ProbeResults counts them by state.
	Probed       bool           `json:"probed"`
	ProbeResults map[string]int `json:"probeResults,omitempty"`
	ProbeNote    string         `json:"probeNote,omitempty"`
	ClusterError string         `json:"clusterError,omitempty"`
	Notes        []string       `json:"notes,omitempty"`
	// Critical, Warning and Info count the findings by severity; the JSON
	// names are the severities' own.
	Critical int `json:"critical"`
	Warning  int `json:"warning"`
	Info     int `json:"info"`
}

// NewReport returns the report of findings f about s.
func NewReport(s Snapshot, f []Finding) Report {
	sum := Summary{Time: s.Now.UTC(), Nodes: len(s.Nodes), CSRs: map[string]int{}, Approvers: s.Approvers, Probed: s.Probes != nil,
		ProbeNote: s.ProbeNote, ClusterError: s.ClusterErr, Notes: s.Notes}
	if sum.Approvers == nil {
		sum.Approvers = []Approver{}
	}
	v := newView(s)
	sum.Talos = v.talos
	for _, c := range v.csrs {
		sum.CSRs[strings.ToLower(c.state)]++
		if c.state == "Pending" {
			sum.OldestPendingSeconds = max(sum.OldestPendingSeconds, int64(c.age/time.Second))
		}
	}
	if sum.Probed {
		sum.ProbeResults = map[string]int{}
		for _, r := range s.Probes {
			sum.ProbeResults[r.State]++
		}
	}
	findings := make([]Finding, 0, len(f))
	for _, x := range f {
		switch x.Severity {
		case severity.Critical:
			sum.Critical++
		case severity.Warning:
			sum.Warning++
		default:
			sum.Info++
		}
		// Lists are [] rather than null, so scripts need no null checks.
		x.Nodes, x.Evidence, x.Fix = nonNil(x.Nodes), nonNil(x.Evidence), nonNil(x.Fix)
		findings = append(findings, x)
	}
	return Report{Summary: sum, Findings: findings}
}

// State says whether a approves: "running" when it runs and approves,
// "dry-run" when it runs and approves nothing, else "not running".
func (a Approver) State() string {
	switch {
	case a.approves():
		return "running"
	case a.Ready:
		return "dry-run"
	}
	return "not running"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
