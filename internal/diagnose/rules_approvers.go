package diagnose

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/severity"
)

// noApprover: kubelet serving certificate rotation is on (kubelets file
// CSRs, or serve no certificate) and nothing approves the CSRs.
func (v *view) noApprover() *Finding {
	noCert := false
	for _, n := range v.nodeNames {
		if r, ok := v.probe(n); ok && r.State == metrics.ProbeNoServingCertificate {
			noCert = true
		}
	}
	if (len(v.csrs) == 0 && !noCert) || len(v.approving()) > 0 {
		return nil
	}
	var oldest time.Duration
	counts := map[string]int{}
	var nodes []string
	for _, c := range v.csrs {
		counts[c.state]++
		if c.state == "Pending" {
			oldest = max(oldest, c.age)
			if c.node != "" && (len(nodes) == 0 || nodes[len(nodes)-1] != c.node) {
				nodes = append(nodes, c.node)
			}
		}
	}
	sev := severity.Warning
	if oldest > pendingGrace || noCert {
		// CSRs wait beyond what any approver takes, or kubelets already
		// serve nothing: the incident is on.
		sev = severity.Critical
	}
	f := &Finding{
		Severity: sev, Nodes: nodes,
		Title: "Kubelet serving certificate rotation is on, but nothing approves the kubelets' CSRs",
	}
	var parts []string
	for _, st := range []string{"Pending", "Approved", "Issued", "Denied", "Failed"} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], strings.ToLower(st)))
		}
	}
	if len(parts) > 0 {
		line := "kubelet-serving CSRs in the API: " + strings.Join(parts, ", ")
		if counts["Pending"] > 0 {
			line += fmt.Sprintf(" (oldest pending %s)", human.Duration(oldest))
		}
		f.Evidence = append(f.Evidence, line)
	}
	if noCert {
		f.Evidence = append(f.Evidence, "kubelets answer the probe with \"tls: internal error\": they have no serving certificate (see "+IDKubeletsWithoutCert+")")
	}
	f.Evidence = append(f.Evidence, v.approverEvidence()...)
	if v.talos {
		f.Evidence = append(f.Evidence, "Kubernetes never approves kubelet-serving CSRs by itself, and Talos ships no approver")
	} else {
		f.Evidence = append(f.Evidence, "Kubernetes never approves kubelet-serving CSRs by itself")
	}

	for _, a := range v.Approvers {
		switch {
		case a.Ready && a.Mode == "dry-run":
			f.Fix = append(f.Fix, fmt.Sprintf("csrguard in %s runs with --mode=dry-run and approves nothing: set --mode=enforce (or no-deny) once its Events show the decisions you expect.", a.Where))
		case !a.Ready && strings.HasPrefix(a.Where, "Deployment "):
			f.Fix = append(f.Fix, fmt.Sprintf("%s (%s) is not ready: kubectl -n %s describe deployment %s", a.Kind, a.Where, a.Namespace, a.Name))
		}
	}
	f.Fix = append(f.Fix, v.installFixes()...)
	if counts["Pending"] > 0 {
		f.Fix = append(f.Fix, v.breakGlassFixes(v.newestPending())...)
	}
	return f
}

// approverEvidence describes the approvers found, or their absence.
func (v *view) approverEvidence() []string {
	var out []string
	if len(v.Approvers) == 0 {
		out = append(out, "no approver found: no csrguard Lease or Deployment, no kubelet-serving-cert-approver, kubelet-csr-approver or Talos CCM approving controller")
	}
	for _, a := range v.Approvers {
		state := "not running"
		switch {
		case a.approves():
			state = "running"
		case a.Ready:
			state = "running in dry-run mode, approving nothing"
		}
		out = append(out, fmt.Sprintf("approver %s (%s): %s; %s", a.Kind, a.Where, state, a.Detail))
	}
	return append(out, v.Notes...)
}

// newestPending returns the newest pending CSR of each node.
func (v *view) newestPending() []string {
	var out []string
	for _, who := range sortedKeys(v.pending) {
		p := v.pending[who]
		out = append(out, p[len(p)-1].name)
	}
	return out
}

// severalApprovers: more than one kind of approver approves kubelet-serving
// CSRs. Each decides every CSR on its own and the first approval wins, so the
// most permissive policy among them is the one in force: beside an approver
// that checks no SANs, csrguard's checks protect nothing.
func (v *view) severalApprovers() *Finding {
	byKind := map[string]Approver{}
	var kinds []string
	for _, a := range v.approving() {
		if _, seen := byKind[a.Kind]; !seen {
			byKind[a.Kind] = a
			kinds = append(kinds, a.Kind)
		}
	}
	if len(kinds) < 2 {
		return nil
	}
	sort.Strings(kinds)
	f := &Finding{
		Severity: severity.Warning,
		Title:    fmt.Sprintf("%d approvers approve kubelet-serving CSRs: whichever writes first decides, so the most permissive policy is in force", len(kinds)),
	}
	for _, k := range kinds {
		a := byKind[k]
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): %s", k, a.Where, a.Detail))
	}
	_, csrguard := byKind[servingcsr.ApproverCSRGuard]
	if !csrguard {
		f.Fix = append(f.Fix, "Keep one approver and stop the others; csrguard checks every SAN against the Node's own addresses, the others do less.")
	}
	for _, k := range kinds {
		if k == servingcsr.ApproverCSRGuard {
			continue
		}
		f.Fix = append(f.Fix, fmt.Sprintf("Stop %s: %s", k, byKind[k].stopCommand()))
	}
	return f
}

// stopCommand says how to stop a from approving.
func (a Approver) stopCommand() string {
	switch {
	case a.Kind == servingcsr.ApproverTalosCCM:
		return "drop " + talosCCMController + " from talos-cloud-controller-manager's --controllers (it also initialises Nodes; keep the rest)"
	case strings.HasPrefix(a.Where, "Deployment "):
		return fmt.Sprintf("kubectl -n %s delete deployment %s (and the rest of what its manifest installed)", a.Namespace, a.Name)
	}
	return "uninstall it the way it was installed"
}

// approvedWouldDeny: CSRs another approver approved that csrguard, judging
// them in dry-run beside it, would have denied (its WouldDeny Events). This is
// the comparison to read before csrguard replaces that approver: each is a
// serving certificate issued, or about to be, that csrguard would refuse.
func (v *view) approvedWouldDeny() *Finding {
	// The newest WouldDeny note of each CSR: "<reason>: <message>".
	notes := map[string]string{}
	seen := map[string]time.Time{}
	for i := range v.Events {
		e := &v.Events[i]
		if e.InvolvedObject.Kind != "CertificateSigningRequest" || e.ReportingController != eventReporter || e.Reason != servingcsr.EventWouldDeny {
			continue
		}
		name, at := e.InvolvedObject.Name, eventTime(e)
		if prev, ok := seen[name]; !ok || at.After(prev) {
			seen[name], notes[name] = at, e.Message
		}
	}
	var bad []csrView
	reasons := map[policy.Reason]int{}
	for _, c := range v.csrs {
		if note, ok := notes[c.name]; ok && servingcsr.ApprovedByOther(c.csr) {
			bad = append(bad, c)
			r, _, _ := strings.Cut(note, ":")
			reasons[policy.Reason(r)]++
		}
	}
	if len(bad) == 0 {
		return nil
	}
	var others []string
	for _, a := range v.Approvers {
		if a.Kind != servingcsr.ApproverCSRGuard && a.Ready && !slices.Contains(others, a.Kind) {
			others = append(others, a.Kind)
		}
	}
	who := strings.Join(others, " or ")
	if who == "" {
		who = "another approver"
	}
	f := &Finding{
		Severity: severity.Warning,
		Title:    fmt.Sprintf("Approved by %s but csrguard would deny: %s", who, plural(len(bad), "kubelet-serving CSR")),
		Evidence: []string{"reasons: " + countList(reasons)},
	}
	for _, c := range bad {
		i := slices.IndexFunc(c.csr.Status.Conditions, func(cond certificatesv1.CertificateSigningRequestCondition) bool {
			return cond.Type == certificatesv1.CertificateApproved
		})
		issued := "not issued yet"
		if c.state == string(servingcsr.Issued) {
			issued = "certificate issued"
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): approved %s ago, reason %q, %s; csrguard would deny: %s",
			c.name, c.who(), human.Duration(v.Now.Sub(servingcsr.ApprovedAt(c.csr))), c.csr.Status.Conditions[i].Reason, issued, notes[c.name]))
		if c.node != "" && !slices.Contains(f.Nodes, c.node) {
			f.Nodes = append(f.Nodes, c.node)
		}
	}
	sort.Strings(f.Nodes)
	f.Fix = []string{
		"See every check: csrguard explain " + bad[0].name,
		fmt.Sprintf("Investigate %s: a kubelet asks only for its own Node's addresses, so a reserved name or a foreign address means a misconfigured or compromised node, and %s issued it a certificate.", names(orDefault(f.Nodes, "the requesters"), 5), who),
		"If one is a request you mean to allow, fix its cause (the check above names it) while csrguard is still in dry-run: once it enforces, it denies it.",
		fmt.Sprintf("Then switch without a gap: set csrguard to --mode=enforce first, then remove %s (README: Migrating from kubelet-serving-cert-approver / kubelet-csr-approver).", who),
	}
	return f
}
