package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

func newExplainCommand() *cobra.Command {
	var (
		kube   kubeOptions
		pol    policyOptions
		output printFlags
	)
	cmd := &cobra.Command{
		Use:   "explain CSR_NAME",
		Short: "Show every policy check on one CSR and the verdict the controller would reach",
		Long: `Run the policy read-only on one CertificateSigningRequest, pending or not, and
print every check with its result and the verdict csrguard controller would
reach with the same policy flags. Nothing is written.
` + exitCodes("the verdict is Deny"),
		Example: `  csrguard explain csr-8b2xq
  kubectl csrguard explain csr-8b2xq -o json
  kubectl csrguard explain csr-8b2xq -o jsonpath='{.verdict}'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeCSRs(&kube, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, view, err := decideSetup(ctx, output.format, &pol, &kube)
			if err != nil {
				return err
			}
			csr, err := view.cs.CertificatesV1().CertificateSigningRequests().Get(ctx, args[0], metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("get CSR %q: %w", args[0], err)
			}
			now := time.Now()
			d, err := policy.Evaluate(ctx, cfg, servingcsr.FromAPI(csr), view.facts, now)
			if err != nil {
				return fmt.Errorf("evaluate CSR %q: %w", csr.Name, err)
			}
			if err := output.print(cmd.OutOrStdout(), newExplanation(csr, d, now)); err != nil {
				return err
			}
			if d.Verdict == policy.Deny {
				return findingsError{fmt.Errorf("CSR %s: the controller would deny it (%s)", csr.Name, d.Reason)}
			}
			return nil
		},
	}
	var s flagSections
	pol.addFlags(s.section("Policy (as the controller runs with)"))
	kube.addFlags(s.section("Kubernetes client"), 50, 100)
	output.addFlags(s.section("Output"))
	s.install(cmd)
	return cmd
}

// explanation is what explain prints.
type explanation struct {
	CSR       string        `json:"csr"`
	Requester string        `json:"requester"`
	Signer    string        `json:"signer"`
	Created   time.Time     `json:"created"`
	State     string        `json:"state"`
	Verdict   string        `json:"verdict"`
	Reason    policy.Reason `json:"reason"`
	Message   string        `json:"message"`
	// Until is, for a hold that ends at a known time, when the controller decides again.
	Until  *time.Time `json:"until,omitempty"`
	Checks []checkOut `json:"checks"`

	// now is when the policy ran; final is true when the CSR is approved,
	// denied or failed already.
	now   time.Time
	final bool
}

type checkOut struct {
	Check   string        `json:"check"`
	Result  string        `json:"result"`
	Verdict string        `json:"verdict,omitempty"`
	Reason  policy.Reason `json:"reason,omitempty"`
	Message string        `json:"message"`
}

// newExplanation is decision d on csr, taken at now.
func newExplanation(csr *certificatesv1.CertificateSigningRequest, d policy.Decision, now time.Time) explanation {
	e := explanation{
		CSR: csr.Name, Requester: csr.Spec.Username, Signer: csr.Spec.SignerName, Created: csr.CreationTimestamp.UTC(),
		State: string(servingcsr.StateOf(csr)), Verdict: d.Verdict.String(), Reason: d.Reason, Message: d.Message,
		now: now, final: servingcsr.IsFinal(csr),
	}
	// The controller never decides a final CSR again: no time for it.
	if !d.Until.IsZero() && !e.final {
		until := d.Until.UTC()
		e.Until = &until
	}
	for _, c := range d.Checks {
		out := checkOut{Check: c.Check, Result: strings.ToLower(c.Outcome.String()), Reason: c.Reason, Message: c.Message}
		if c.Outcome == policy.Fail {
			out.Verdict = c.Verdict.String()
		}
		e.Checks = append(e.Checks, out)
	}
	return e
}

// names is the CSR, as kind.group/name.
func (e explanation) names() []string {
	return []string{"certificatesigningrequest.certificates.k8s.io/" + e.CSR}
}

// table prints the CSR, one row per check (CHECK RESULT DETAIL; wide: the
// verdict and reason of a failed check in their own columns) and the
// verdict with what the controller would do.
func (e explanation) table(w io.Writer, o tableOptions) error {
	if !o.noHeaders {
		fmt.Fprintf(w, "CSR:        %s\n", e.CSR)
		fmt.Fprintf(w, "Requester:  %s\n", e.Requester)
		fmt.Fprintf(w, "Signer:     %s\n", e.Signer)
		fmt.Fprintf(w, "Created:    %s (%s ago)\n", e.Created.Format(time.RFC3339), human.Duration(e.now.Sub(e.Created)))
		fmt.Fprintf(w, "State:      %s\n\n", e.State)
	}
	tw := newTabWriter(w)
	if !o.noHeaders {
		if o.wide {
			fmt.Fprintln(tw, "CHECK\tRESULT\tVERDICT\tREASON\tDETAIL")
		} else {
			fmt.Fprintln(tw, "CHECK\tRESULT\tDETAIL")
		}
	}
	for _, c := range e.Checks {
		if o.wide {
			verdict, reason := strings.ToLower(c.Verdict), string(c.Reason)
			if verdict == "" {
				verdict = "-"
			}
			if reason == "" {
				reason = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Check, c.Result, verdict, reason, c.Message)
			continue
		}
		result := c.Result
		if c.Verdict != "" {
			result = fmt.Sprintf("FAIL (%s %s)", strings.ToLower(c.Verdict), c.Reason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Check, result, c.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nVerdict: %s (%s)\n  %s\n", e.Verdict, e.Reason, e.Message)
	switch {
	case e.final:
		fmt.Fprintf(w, "\nThe CSR is already %s: the controller never changes a final CSR; this is what it would have decided.\n", e.State)
	case e.Verdict == policy.Approve.String():
		fmt.Fprintln(w, "\nThe controller would approve it, unless a per-node rate limit or the breaker holds it.")
	case e.Until != nil:
		fmt.Fprintf(w, "\nThe controller holds it, and decides again at %s (in %s).\n", e.Until.Format(time.RFC3339), human.Duration(e.Until.Sub(e.now)))
	}
	return nil
}
