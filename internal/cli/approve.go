package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// BreakGlassReason is the reason of the Approved condition `csrguard approve`
// writes, so an audit can tell it from the controller's.
const BreakGlassReason = "CSRGuardApproveCommand"

func newApproveCommand() *cobra.Command {
	var (
		kube   kubeOptions
		pol    policyOptions
		output printFlags
		dryRun bool
		yes    bool
	)
	cmd := &cobra.Command{
		Use:   "approve [CSR_NAME...]",
		Short: "Break-glass: approve pending kubelet serving CSRs that pass the policy",
		Long: `Evaluate every pending kubernetes.io/kubelet-serving CSR (or only those named)
with the same policy as csrguard controller and approve only those that pass,
once. For a cluster whose kubelets have no serving certificate and no
approver running yet. CSRs the policy would deny or hold are listed and left
untouched; so are CSRs superseded by a newer one of the same node (verdict
Superseded): a kubelet waits only for its newest CSR. With -o other than table or wide the plan is printed and nothing
is approved unless --yes is given.
` + exitCodes(""),
		Example: `  # See what would be approved:
  csrguard approve --dry-run
  # Approve, without the confirmation prompt:
  kubectl csrguard approve --yes
  # Approve two CSRs only, if they pass:
  kubectl csrguard approve csr-8b2xq csr-9c3yr`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: completeCSRs(&kube, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, view, err := decideSetup(ctx, output.format, &pol, &kube)
			if err != nil {
				return err
			}
			format, _ := parseOutput(output.format) // validated by decideSetup
			plan, err := planApprovals(cmd, view, cfg, time.Now(), args)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var toApprove []planRow
			for _, p := range plan {
				if p.Verdict == policy.Approve.String() {
					toApprove = append(toApprove, p)
				}
			}
			if err := output.print(out, plan); err != nil {
				return err
			}
			// Machine output describes the plan; approving then needs --yes.
			if dryRun || (!format.forPeople() && !yes) {
				if format.forPeople() {
					fmt.Fprintf(out, "\nDry run: would approve %d of %d pending CSRs.\n", len(toApprove), len(plan))
				}
				return nil
			}
			if len(toApprove) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "Nothing to approve.")
				return nil
			}
			if !yes {
				ok, err := confirm(cmd.InOrStdin(), cmd.ErrOrStderr(), fmt.Sprintf("Approve %d CSRs?", len(toApprove)))
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(cmd.ErrOrStderr(), "Nothing approved.")
					return nil
				}
			}
			var errs []error
			for _, p := range toApprove {
				if err := approveOne(cmd, view, p); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "approved %s (%s)\n", p.CSR, p.Node)
			}
			return errors.Join(errs...)
		},
	}
	var s flagSections
	fs := s.section("Approval")
	fs.BoolVar(&dryRun, "dry-run", false, "Only show what would be approved.")
	fs.BoolVarP(&yes, "yes", "y", false, "Approve without asking for confirmation.")
	pol.addFlags(s.section("Policy (as the controller runs with)"))
	kube.addFlags(s.section("Kubernetes client"), 50, 100)
	output.addFlags(s.section("Output"))
	s.install(cmd)
	return cmd
}

// approvalPlan is what approve prints: one row per pending CSR, by node.
// Its JSON is a list.
type approvalPlan []planRow

// planRow is one pending CSR and what the policy decides for it.
type planRow struct {
	CSR     string        `json:"csr"`
	Node    string        `json:"node"`
	Created time.Time     `json:"created"`
	Verdict string        `json:"verdict"`
	Reason  policy.Reason `json:"reason"`
	Message string        `json:"message"`

	age time.Duration // at the time of the plan
	csr *certificatesv1.CertificateSigningRequest
}

// planApprovals evaluates the pending kubelet-serving CSRs, or only those
// named, every one of which must be one.
func planApprovals(cmd *cobra.Command, view *clusterView, cfg policy.Config, now time.Time, names []string) (approvalPlan, error) {
	wanted := map[string]bool{}
	for _, n := range names {
		wanted[n] = true
	}
	plan := approvalPlan{}
	decisions := map[string]policy.Decision{}
	for i := range view.csrs {
		csr := &view.csrs[i]
		if servingcsr.IsFinal(csr) {
			continue
		}
		d, err := policy.Evaluate(cmd.Context(), cfg, servingcsr.FromAPI(csr), view.facts, now)
		if err != nil {
			return nil, fmt.Errorf("evaluate CSR %q: %w", csr.Name, err)
		}
		decisions[csr.Name] = d
	}
	// As the controller decides: only a node's newest CSR is approved, and
	// one the policy would deny or hold hides no older one.
	superseded := servingcsr.SupersedeApprovable(view.csrs, func(csr *certificatesv1.CertificateSigningRequest) bool {
		return decisions[csr.Name].Verdict == policy.Approve
	})
	for i := range view.csrs {
		csr := &view.csrs[i]
		if servingcsr.IsFinal(csr) || (len(names) > 0 && !wanted[csr.Name]) {
			continue
		}
		delete(wanted, csr.Name)
		d := decisions[csr.Name]
		node, _ := servingcsr.NodeName(csr.Spec.Username)
		row := planRow{CSR: csr.Name, Node: node, Created: csr.CreationTimestamp.UTC(),
			Verdict: d.Verdict.String(), Reason: d.Reason, Message: d.Message, age: now.Sub(csr.CreationTimestamp.Time), csr: csr}
		// A denial or hold is shown as it is.
		if s, ok := superseded[csr.Name]; ok && d.Verdict == policy.Approve {
			row.Verdict, row.Reason = servingcsr.SupersededReason, servingcsr.SupersededReason
			row.Message = "superseded by the newer CSR " + s.By + " of the same node; its kubelet waits only for its newest CSR"
		}
		plan = append(plan, row)
	}
	for _, n := range names {
		// Approving none of the named is safer than approving some.
		if wanted[n] {
			return nil, fmt.Errorf("CSR %q is not a pending kubelet-serving CSR", n)
		}
	}
	sort.Slice(plan, func(i, j int) bool {
		if plan[i].Node != plan[j].Node {
			return plan[i].Node < plan[j].Node
		}
		return plan[i].CSR < plan[j].CSR
	})
	return plan, nil
}

func approveOne(cmd *cobra.Command, view *clusterView, p planRow) error {
	csr := p.csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: BreakGlassReason,
		Message: "approved by `csrguard approve`: " + p.Message, LastUpdateTime: metav1.Now(),
	})
	// The resourceVersion read above makes this fail if anyone changed the
	// CSR since: we never approve something we did not evaluate.
	if _, err := view.cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(cmd.Context(), csr.Name, csr, metav1.UpdateOptions{FieldManager: "csrguard-approve"}); err != nil {
		return fmt.Errorf("approve CSR %q: %w", csr.Name, err)
	}
	return nil
}

// names are the CSRs, as kind.group/name.
func (p approvalPlan) names() []string {
	var out []string
	for _, r := range p {
		out = append(out, "certificatesigningrequest.certificates.k8s.io/"+r.CSR)
	}
	return out
}

// table prints CSR NODE AGE VERDICT REASON (wide: and the policy's message).
func (p approvalPlan) table(w io.Writer, o tableOptions) error {
	if len(p) == 0 {
		_, err := fmt.Fprintln(w, "No pending kubelet-serving CSRs.")
		return err
	}
	tw := newTabWriter(w)
	if !o.noHeaders {
		fmt.Fprint(tw, "CSR\tNODE\tAGE\tVERDICT\tREASON")
		if o.wide {
			fmt.Fprint(tw, "\tMESSAGE")
		}
		fmt.Fprintln(tw)
	}
	for _, r := range p {
		node := r.Node
		if node == "" {
			node = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s", r.CSR, node, human.Duration(r.age), r.Verdict, r.Reason)
		if o.wide {
			fmt.Fprintf(tw, "\t%s", r.Message)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// confirm asks question on out and reads y/yes from in.
func confirm(in io.Reader, out io.Writer, question string) (bool, error) {
	fmt.Fprintf(out, "%s [y/N]: ", question)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
