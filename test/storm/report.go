package storm

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// String summarises r on one line, for test logs.
func (r Result) String() string {
	v := r.Verdict
	s := fmt.Sprintf("%s: %d legitimate CSRs approved %d, issued %d; %d hostile approved %d, denied %d; %d conflicting; fault healed after %s, last approval %s later (%s after the first CSR); %.0f decision writes failed and retried; %d creates retried",
		r.Fault, v.Legitimate, v.Approved, v.Issued, v.Hostile, v.HostileApproved, v.Denied, v.Conflicting,
		secs(r.Healed), secs(r.ToLastApproval), secs(r.Total), r.WriteErrors, r.CreateRetries)
	if len(r.Exited) > 0 {
		s += "; exited: " + strings.Join(r.Exited, ", ")
	}
	if r.Detail != "" {
		s += "; " + r.Detail
	}
	return s
}

// PrintTable writes results as a Markdown table, one row per fault run.
func PrintTable(w io.Writer, results []Result) {
	fmt.Fprintln(w, "| fault | CSRs (hostile) | fault healed after | healed → last approval | first CSR → last approval | legitimate approved / issued | hostile approved | conflicting | decision writes failed, retried | creates retried | replicas exited | detail |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
	for _, r := range results {
		v := r.Verdict
		exited := strings.Join(r.Exited, ", ")
		if exited == "" {
			exited = "—"
		}
		fmt.Fprintf(w, "| %s | %d (%d) | %s | %s | %s | %d / %d of %d | %d of %d | %d | %.0f | %d | %s | %s |\n",
			r.Fault, v.Legitimate+v.Hostile, v.Hostile, secs(r.Healed), secs(r.ToLastApproval), secs(r.Total),
			v.Approved, v.Issued, v.Legitimate, v.HostileApproved, v.Hostile, v.Conflicting,
			r.WriteErrors, r.CreateRetries, exited, r.Detail)
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
