package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/csrguard/csrguard/internal/severity"
)

// The output formats.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatYAML  = "yaml"
)

// The orders RenderCerts sorts rows in.
const (
	SortByNode   = "node"
	SortByExpiry = "expiry"
)

// In the table, long lists are cut; JSON and YAML hold them in full.
const (
	maxTableNodes    = 10
	maxTableEvidence = 15
)

// Report is the JSON and YAML form of the doctor's output. Field names are
// stable lowerCamelCase; durations are whole seconds in fields ending in
// Seconds, times are RFC 3339.
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

// Verdict is the one-line conclusion: "1 critical, 2 warnings" or "No problems found".
func (r Report) Verdict() string {
	var parts []string
	if n := r.Summary.Critical; n > 0 {
		parts = append(parts, fmt.Sprintf("%d critical", n))
	}
	if n := r.Summary.Warning; n > 0 {
		parts = append(parts, plural(n, "warning"))
	}
	if len(parts) == 0 {
		if r.Summary.Info > 0 {
			return fmt.Sprintf("No problems found (%d info)", r.Summary.Info)
		}
		return "No problems found"
	}
	if n := r.Summary.Info; n > 0 {
		parts = append(parts, fmt.Sprintf("%d info", n))
	}
	return strings.Join(parts, ", ")
}

// RenderFindings prints the findings f about s in format: "table" (for
// people: a summary, one block per finding, a verdict), "json" or "yaml"
// (a Report).
func RenderFindings(w io.Writer, s Snapshot, f []Finding, format string) error {
	r := NewReport(s, f)
	switch format {
	case FormatTable, "":
		return renderFindingsTable(w, s, r)
	case FormatJSON, FormatYAML:
		return encode(w, r, format)
	}
	return fmt.Errorf("unknown output format %q: want table, json or yaml", format)
}

func renderFindingsTable(w io.Writer, s Snapshot, r Report) error {
	var b strings.Builder
	sum := r.Summary
	nodes := plural(sum.Nodes, "node")
	if sum.Talos {
		nodes += " (Talos Linux)"
	}
	total := 0
	for _, n := range sum.CSRs {
		total += n
	}
	csrs := plural(total, "kubelet-serving CSR")
	if total > 0 {
		var parts []string
		for _, st := range []string{"pending", "approved", "issued", "denied", "failed"} {
			if n := sum.CSRs[st]; n > 0 {
				part := fmt.Sprintf("%d %s", n, st)
				if st == "pending" {
					part += fmt.Sprintf(", oldest %s", humanDuration(time.Duration(sum.OldestPendingSeconds)*time.Second))
				}
				parts = append(parts, part)
			}
		}
		csrs += " (" + strings.Join(parts, "; ") + ")"
	}
	fmt.Fprintf(&b, "Cluster: %s, %s\n", nodes, csrs)

	if len(sum.Approvers) == 0 {
		fmt.Fprintf(&b, "Approver: none found\n")
	}
	for _, a := range sum.Approvers {
		state := "not running"
		switch {
		case a.approves():
			state = "running"
		case a.Ready:
			state = "dry-run"
		}
		fmt.Fprintf(&b, "Approver: %s (%s): %s; %s\n", a.Kind, a.Where, state, a.Detail)
	}
	if sum.Probed {
		var parts []string
		for _, st := range sortedKeys(sum.ProbeResults) {
			parts = append(parts, fmt.Sprintf("%d %s", sum.ProbeResults[st], st))
		}
		fmt.Fprintf(&b, "Probe: %s probed from here: %s\n", plural(len(s.Probes), "kubelet"), strings.Join(parts, ", "))
	} else {
		fmt.Fprintf(&b, "Probe: %s\n", sum.ProbeNote)
	}
	for _, n := range sum.Notes {
		fmt.Fprintf(&b, "Note: %s\n", n)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "\n[%s] %s\n", strings.ToUpper(f.Severity.String()), f.Title)
		fmt.Fprintf(&b, "  ID: %s\n", f.ID)
		if len(f.Nodes) > 0 {
			list := f.Nodes
			more := ""
			if len(list) > maxTableNodes {
				list, more = list[:maxTableNodes], fmt.Sprintf(" … (%d more)", len(f.Nodes)-maxTableNodes)
			}
			fmt.Fprintf(&b, "  Nodes: %s%s\n", strings.Join(list, ", "), more)
		}
		if len(f.Evidence) > 0 {
			b.WriteString("  Evidence:\n")
			for i, e := range f.Evidence {
				if i == maxTableEvidence {
					fmt.Fprintf(&b, "    … %d more (see -o json)\n", len(f.Evidence)-maxTableEvidence)
					break
				}
				WriteItem(&b, "    - ", e)
			}
		}
		if len(f.Fix) > 0 {
			b.WriteString("  Fix:\n")
			for i, x := range f.Fix {
				WriteItem(&b, fmt.Sprintf("    %d. ", i+1), x)
			}
		}
	}
	fmt.Fprintf(&b, "\n%s\n", r.Verdict())
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteItem writes text after prefix; further lines are indented to align
// with the first, so a YAML snippet stays a valid, copyable block. check-config
// prints its fixes the same way.
func WriteItem(b *strings.Builder, prefix, text string) {
	indent := strings.Repeat(" ", len([]rune(prefix)))
	for i, line := range strings.Split(text, "\n") {
		if i == 0 {
			b.WriteString(prefix)
		} else {
			b.WriteString(indent)
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
}

// certRowJSON is the JSON and YAML form of a CertRow.
type certRowJSON struct {
	Node string `json:"node"`
	// Expires is RFC 3339, null when no certificate is known.
	Expires *time.Time `json:"expires"`
	// ResidualSeconds is whole seconds to expiry (negative once expired),
	// null when no certificate is known; Residual is the same, humanised.
	ResidualSeconds *int64 `json:"residualSeconds"`
	Residual        string `json:"residual"`
	Issuer          string `json:"issuer"`
	Source          string `json:"source"`
	State           string `json:"state"`
	SANsMatch       *bool  `json:"sansMatch"`
}

// certsJSON is the JSON and YAML document of RenderCerts.
type certsJSON struct {
	Certificates []certRowJSON `json:"certificates"`
	Other        []OtherCert   `json:"other,omitempty"`
}

// OtherCert is a certificate an operator checks in the same breath as the
// kubelets': the API server's serving certificate, the kubeconfig's client
// certificate.
type OtherCert struct {
	Name            string    `json:"name"`
	Subject         string    `json:"subject"`
	Issuer          string    `json:"issuer"`
	Expires         time.Time `json:"expires"`
	ResidualSeconds int64     `json:"residualSeconds"`
	Source          string    `json:"source"`
}

// RenderCerts prints rows sorted by sortBy ("node", the default, or
// "expiry": soonest first, nodes without a known certificate before all)
// in format: "table" (NODE EXPIRES RESIDUAL ISSUER SOURCE STATE), "json" or
// "yaml" ({"certificates": [...]}, see certRowJSON).
//
// other, when given, is listed after the nodes.
func RenderCerts(w io.Writer, rows []CertRow, sortBy, format string, other ...OtherCert) error {
	rows = append([]CertRow(nil), rows...)
	switch sortBy {
	case SortByNode, "":
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].Node < rows[j].Node })
	case SortByExpiry:
		sort.SliceStable(rows, func(i, j int) bool {
			a, b := rows[i], rows[j]
			if a.Expires.IsZero() != b.Expires.IsZero() {
				return a.Expires.IsZero()
			}
			if !a.Expires.Equal(b.Expires) {
				return a.Expires.Before(b.Expires)
			}
			return a.Node < b.Node
		})
	default:
		return fmt.Errorf("unknown sort order %q: want node or expiry", sortBy)
	}
	switch format {
	case FormatTable, "":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tEXPIRES\tRESIDUAL\tISSUER\tSOURCE\tSTATE")
		for _, r := range rows {
			expires, residual, issuer := "-", "-", r.Issuer
			if !r.Expires.IsZero() {
				expires, residual = r.Expires.UTC().Format(time.RFC3339), humanDuration(r.Residual)
			}
			if issuer == "" {
				issuer = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, expires, residual, issuer, r.Source, r.State)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(other) == 0 {
			return nil
		}
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "OTHER CERTIFICATE\tEXPIRES\tRESIDUAL\tSUBJECT\tISSUER\tSOURCE")
		for _, o := range other {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Name, o.Expires.UTC().Format(time.RFC3339),
				humanDuration(time.Duration(o.ResidualSeconds)*time.Second), o.Subject, o.Issuer, o.Source)
		}
		return tw.Flush()
	case FormatJSON, FormatYAML:
		doc := certsJSON{Certificates: []certRowJSON{}, Other: other}
		for _, r := range rows {
			j := certRowJSON{Node: r.Node, Residual: "-", Issuer: r.Issuer, Source: r.Source, State: r.State, SANsMatch: r.SANsMatch}
			if !r.Expires.IsZero() {
				t := r.Expires.UTC()
				secs := int64(r.Residual / time.Second)
				j.Expires, j.ResidualSeconds, j.Residual = &t, &secs, humanDuration(r.Residual)
			}
			doc.Certificates = append(doc.Certificates, j)
		}
		return encode(w, doc, format)
	}
	return fmt.Errorf("unknown output format %q: want table, json or yaml", format)
}

func encode(w io.Writer, v any, format string) error {
	if format == FormatYAML {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
