package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/csrguard/csrguard/internal/diagnose"
	"github.com/csrguard/csrguard/internal/human"
)

// In the table, long lists are cut; wide, JSON and YAML hold them in full.
const (
	maxTableNodes    = 10
	maxTableEvidence = 15
)

// doctorOutput is what doctor prints: the report, whose JSON is
// {"summary": …, "findings": […]}.
type doctorOutput struct{ diagnose.Report }

// names are the IDs of the findings.
func (d doctorOutput) names() []string {
	var out []string
	for _, f := range d.Findings {
		out = append(out, f.ID)
	}
	return out
}

// table prints a summary of the cluster, one block per finding (severity,
// title, ID, nodes, evidence, numbered fixes) and the verdict.
func (d doctorOutput) table(w io.Writer, o tableOptions) error {
	var b strings.Builder
	if !o.noHeaders {
		writeDoctorSummary(&b, d.Summary)
	}
	for _, f := range d.Findings {
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "[%s] %s\n", strings.ToUpper(f.Severity.String()), f.Title)
		fmt.Fprintf(&b, "  ID: %s\n", f.ID)
		if len(f.Nodes) > 0 {
			list, more := f.Nodes, ""
			if len(list) > maxTableNodes && !o.wide {
				list, more = list[:maxTableNodes], fmt.Sprintf(" … (%d more)", len(f.Nodes)-maxTableNodes)
			}
			fmt.Fprintf(&b, "  Nodes: %s%s\n", strings.Join(list, ", "), more)
		}
		if len(f.Evidence) > 0 {
			b.WriteString("  Evidence:\n")
			for i, e := range f.Evidence {
				if i == maxTableEvidence && !o.wide {
					fmt.Fprintf(&b, "    … %d more (see -o wide)\n", len(f.Evidence)-maxTableEvidence)
					break
				}
				writeItem(&b, "    - ", e)
			}
		}
		if len(f.Fix) > 0 {
			b.WriteString("  Fix:\n")
			for i, x := range f.Fix {
				writeItem(&b, fmt.Sprintf("    %d. ", i+1), x)
			}
		}
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	worst := ""
	if n := d.Summary.Critical; n > 0 {
		worst = fmt.Sprintf("%d critical", n)
	}
	fmt.Fprintf(&b, "%s\n", verdict(worst, d.Summary.Warning, d.Summary.Info))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeDoctorSummary writes the lines above the findings: the cluster, its
// approvers, what the probe saw, and what could not be read.
func writeDoctorSummary(b *strings.Builder, sum diagnose.Summary) {
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
					part += ", oldest " + human.Duration(time.Duration(sum.OldestPendingSeconds)*time.Second)
				}
				parts = append(parts, part)
			}
		}
		csrs += " (" + strings.Join(parts, "; ") + ")"
	}
	fmt.Fprintf(b, "Cluster: %s, %s\n", nodes, csrs)

	if len(sum.Approvers) == 0 {
		fmt.Fprintf(b, "Approver: none found\n")
	}
	for _, a := range sum.Approvers {
		fmt.Fprintf(b, "Approver: %s (%s): %s; %s\n", a.Kind, a.Where, a.State(), a.Detail)
	}
	if sum.Probed {
		var parts []string
		probed := 0
		for _, st := range slices.Sorted(maps.Keys(sum.ProbeResults)) {
			parts = append(parts, fmt.Sprintf("%d %s", sum.ProbeResults[st], st))
			probed += sum.ProbeResults[st]
		}
		fmt.Fprintf(b, "Probe: %s probed from here: %s\n", plural(probed, "kubelet"), strings.Join(parts, ", "))
	} else {
		fmt.Fprintf(b, "Probe: %s\n", sum.ProbeNote)
	}
	for _, n := range sum.Notes {
		fmt.Fprintf(b, "Note: %s\n", n)
	}
}

// verdict is the last line of a report: the problems, worst first, as
// "1 critical, 2 warnings, 1 info", or "No problems found". worst counts
// the most severe ("1 critical", "2 errors"), empty when there are none.
func verdict(worst string, warnings, info int) string {
	var parts []string
	if worst != "" {
		parts = append(parts, worst)
	}
	if warnings > 0 {
		parts = append(parts, plural(warnings, "warning"))
	}
	if len(parts) == 0 {
		if info > 0 {
			return fmt.Sprintf("No problems found (%d info)", info)
		}
		return "No problems found"
	}
	if info > 0 {
		parts = append(parts, fmt.Sprintf("%d info", info))
	}
	return strings.Join(parts, ", ")
}

// writeItem writes text after prefix; further lines are indented to align
// with the first, so a YAML snippet stays a valid, copyable block.
func writeItem(b *strings.Builder, prefix, text string) {
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
