package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/csrguard/csrguard/internal/diagnose"
)

// preflightOutput is what preflight prints: the report, whose JSON is
// {"ok": …, "nodes": […], "checks": […], "rollback": […]}.
type preflightOutput struct{ diagnose.PreflightReport }

func newPreflightOutput(r diagnose.PreflightReport) preflightOutput {
	if r.Nodes == nil {
		r.Nodes = []diagnose.NodePlan{} // [] rather than null for scripts
	}
	return preflightOutput{r}
}

// names are the nodes, as node/NAME.
func (p preflightOutput) names() []string {
	var out []string
	for _, n := range p.Nodes {
		out = append(out, "node/"+n.Node)
	}
	return out
}

// table prints NODE OUTCOME REASON DETAIL (wide: with the policy's verdict
// and the SANs the kubelet would ask for), then the cluster-wide checks, the
// rollback plan, suggestions and the conclusion.
func (p preflightOutput) table(w io.Writer, o tableOptions) error {
	tw := newTabWriter(w)
	if !o.noHeaders {
		if o.wide {
			fmt.Fprintln(tw, "NODE\tOUTCOME\tVERDICT\tREASON\tSANS\tDETAIL")
		} else {
			fmt.Fprintln(tw, "NODE\tOUTCOME\tREASON\tDETAIL")
		}
	}
	for _, n := range p.Nodes {
		reason := string(n.Reason)
		if reason == "" || n.Outcome == diagnose.OutcomePending {
			reason = "-"
		}
		if o.wide {
			verdict, sans := n.Verdict, strings.Join(n.SANs, ",")
			if verdict == "" {
				verdict = "-"
			}
			if sans == "" {
				sans = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, n.Outcome, verdict, reason, sans, n.Message)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Node, n.Outcome, reason, n.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, c := range p.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
			if c.Name == "signer" {
				mark = "??  "
			}
		}
		fmt.Fprintf(w, "[%s] %s: %s\n", mark, c.Name, c.Detail)
	}
	fmt.Fprintln(w, "\nRollback plan:")
	for _, l := range p.Rollback {
		fmt.Fprintf(w, "  - %s\n", l)
	}
	if len(p.Suggestions) > 0 {
		fmt.Fprintln(w, "\nSuggestions:")
		for _, l := range p.Suggestions {
			fmt.Fprintf(w, "  - %s\n", l)
		}
	}
	if p.OK {
		fmt.Fprintln(w, "\nSafe to enable kubelet serving-certificate rotation: every node would get a certificate.")
	} else {
		fmt.Fprintln(w, "\nNot safe yet: fix the above before enabling kubelet serving-certificate rotation.")
	}
	return nil
}
