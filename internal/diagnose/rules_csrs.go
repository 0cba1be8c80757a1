package diagnose

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/csrguard/csrguard/internal/human"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
	"github.com/csrguard/csrguard/internal/severity"
)

// pendingCSRs: nodes that have waited beyond the grace period for their newest CSR, which the
// policy would approve — nothing approved what should have been. Only a node's live CSR counts
// (servingcsr.Supersede): its kubelet waits for nothing else.
func (v *view) pendingCSRs() *Finding {
	var stuck []csrView
	for _, c := range v.csrs {
		_, superseded := v.superseded[c.name]
		if d, ok := v.Decisions[c.name]; ok && c.state == "Pending" && !superseded && d.Verdict == policy.Approve && v.waited(c.who()) > pendingGrace {
			stuck = append(stuck, c)
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	f := &Finding{Severity: severity.Warning}
	var newest []string
	for _, c := range stuck {
		who := c.who()
		if c.node != "" {
			f.Nodes = append(f.Nodes, who)
		}
		line := fmt.Sprintf("%s: waiting %s; the policy would approve its newest CSR, %s (%s)", who, human.Duration(v.waited(who)), c.name, human.Duration(c.age))
		if n := v.supersededOf(who); n > 0 {
			line += fmt.Sprintf(" (%s superseded by it)", plural(n, "older pending CSR"))
		}
		if lacks, why := v.lacksCert(who); lacks {
			f.Severity = severity.Critical
			line += "; " + why
		}
		f.Evidence = append(f.Evidence, line)
		newest = append(newest, c.name)
	}
	f.Title = fmt.Sprintf("%s waiting over %s for a kubelet-serving CSR the policy would approve", plural(len(stuck), "node"), human.Duration(pendingGrace))
	if v.ClusterErr != "" {
		f.Evidence = append(f.Evidence, "API server addresses and service CIDRs were not discovered, so the policy ran without them: "+v.ClusterErr)
	}
	approving := v.approving()
	for _, a := range approving {
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s) runs but has not approved them", a.Kind, a.Where))
	}
	f.Fix = append(f.Fix, v.breakGlassFixes(newest)...)
	if len(approving) > 0 {
		a := approving[0]
		f.Fix = append(f.Fix, fmt.Sprintf("Find out why %s holds them: kubectl get events -A --field-selector involvedObject.kind=CertificateSigningRequest, and %s (csrguard holds on its rate limit or breaker and says so in Held events).", a.Kind, a.logs()))
	} else {
		f.Fix = append(f.Fix, v.installFixShort())
	}
	return f
}

// pendingWouldDeny: pending CSRs the policy would deny, whatever their age.
func (v *view) pendingWouldDeny() *Finding {
	var bad []csrView
	reasons := map[policy.Reason]int{}
	for _, c := range v.csrs {
		if d, ok := v.Decisions[c.name]; ok && c.state == "Pending" && d.Verdict == policy.Deny {
			bad = append(bad, c)
			reasons[d.Reason]++
		}
	}
	if len(bad) == 0 {
		return nil
	}
	f := &Finding{
		Severity: severity.Warning,
		Title:    fmt.Sprintf("%s pending that the policy would deny", plural(len(bad), "kubelet-serving CSR")),
	}
	f.Evidence = append(f.Evidence, "reasons: "+countList(reasons))
	var csrNames, nodes []string
	for _, c := range bad {
		d := v.Decisions[c.name]
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s, pending %s): %s: %s", c.name, c.who(), human.Duration(c.age), d.Reason, d.Message))
		csrNames = append(csrNames, c.name)
		if c.node != "" && !slices.Contains(nodes, c.node) {
			nodes = append(nodes, c.node)
		}
	}
	f.Nodes = nodes
	f.Fix = []string{
		"See every check: csrguard explain " + bad[0].name,
		"Deny them: kubectl certificate deny " + names(csrNames, 10),
		fmt.Sprintf("Investigate %s: a kubelet asks only for its own Node's addresses, so a reserved name or a foreign address means a misconfigured or compromised node.", names(orDefault(nodes, "the requesters"), 5)),
	}
	return f
}

// pendingWouldHold: CSRs pending beyond the grace period that the policy
// would keep pending (node unknown, addresses not settled) or could not
// decide.
func (v *view) pendingWouldHold() *Finding {
	var held []csrView
	for _, c := range v.csrs {
		d, ok := v.Decisions[c.name]
		if c.state == "Pending" && c.age > pendingGrace && (!ok || d.Verdict == policy.Hold) {
			held = append(held, c)
		}
	}
	if len(held) == 0 {
		return nil
	}
	f := &Finding{
		Severity: severity.Warning,
		Title:    fmt.Sprintf("%s pending over %s that the policy would keep holding", plural(len(held), "kubelet-serving CSR"), human.Duration(pendingGrace)),
	}
	var csrNames []string
	nodeGone := false
	for _, c := range held {
		why := "not evaluated"
		if d, ok := v.Decisions[c.name]; ok {
			why = fmt.Sprintf("%s: %s", d.Reason, d.Message)
			nodeGone = nodeGone || d.Reason == policy.NodeNotFound
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s, pending %s): %s", c.name, c.who(), human.Duration(c.age), why))
		csrNames = append(csrNames, c.name)
		if c.node != "" && !slices.Contains(f.Nodes, c.node) {
			f.Nodes = append(f.Nodes, c.node)
		}
	}
	f.Fix = []string{"See every check: csrguard explain " + held[0].name}
	if nodeGone {
		f.Fix = append(f.Fix, "NodeNotFound: the Node object does not exist — a kubelet that never registered, or a deleted node. If the node is gone, kubectl delete csr the CSRs it left.")
	}
	f.Fix = append(f.Fix, "Once the facts are there (the Node exists and reports the requested addresses), the policy decides; stale ones can go: kubectl delete csr "+names(csrNames, 10))
	return f
}

// approvedNotIssued: the approver did its part, the signer did not.
func (v *view) approvedNotIssued() *Finding {
	var stuck []csrView
	for _, c := range v.csrs {
		if c.state == "Approved" && v.Now.Sub(servingcsr.ApprovedAt(c.csr)) > approvedGrace {
			stuck = append(stuck, c)
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	f := &Finding{
		Severity: severity.Critical,
		Title:    fmt.Sprintf("%s approved but not issued: the signer does not sign kubernetes.io/kubelet-serving", plural(len(stuck), "kubelet-serving CSR")),
	}
	for _, c := range stuck {
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): approved %s ago%s, no certificate and no Failed condition", c.name, c.who(), human.Duration(v.Now.Sub(servingcsr.ApprovedAt(c.csr))), conditionReason(&c)))
		if c.node != "" && !slices.Contains(f.Nodes, c.node) {
			f.Nodes = append(f.Nodes, c.node)
		}
	}
	f.Fix = []string{
		"kube-controller-manager's csrsigning controller signs kubelet-serving certificates: check that it runs and that --controllers includes csrsigning (or *).",
		"It needs a signing key pair: --cluster-signing-kubelet-serving-cert-file/--cluster-signing-kubelet-serving-key-file, or the generic --cluster-signing-cert-file/--cluster-signing-key-file (not both kinds at once).",
		"Read kube-controller-manager's log for certificatesigningrequest-signing errors.",
	}
	if v.talos {
		f.Fix = append(f.Fix, "On Talos, kube-controller-manager is a static pod Talos configures itself: check it runs (kubectl -n kube-system get pods -l k8s-app=kube-controller-manager) and any cluster.controllerManager.extraArgs you set.")
	}
	return f
}

// signerFailed: the signer refused to issue.
func (v *view) signerFailed() *Finding {
	var failed []csrView
	for _, c := range v.csrs {
		if c.state == "Failed" {
			failed = append(failed, c)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	f := &Finding{
		Severity: severity.Critical,
		Title:    fmt.Sprintf("The signer failed %s", plural(len(failed), "kubelet-serving CSR")),
	}
	var csrNames []string
	for _, c := range failed {
		cond := condition(c.csr, certificatesv1.CertificateFailed)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s, created %s ago): %s: %s", c.name, c.who(), human.Duration(c.age), cond.Reason, cond.Message))
		csrNames = append(csrNames, c.name)
		if c.node != "" && !slices.Contains(f.Nodes, c.node) {
			f.Nodes = append(f.Nodes, c.node)
		}
	}
	f.Fix = []string{
		"The signer re-checks the subject organization (system:nodes), the usages and the SAN types of approved CSRs: compare the request with csrguard explain " + failed[0].name + ", and fix the kubelet's configuration if it asks for something else.",
		"An approver that approves such requests is too lax: csrguard denies them before the signer sees them.",
		"Failed CSRs are final; the kubelet files a new one. Clean up: kubectl delete csr " + names(csrNames, 10),
	}
	return f
}

// deniedCSRs: denials, grouped by reason.
func (v *view) deniedCSRs() *Finding {
	byReason := map[string][]csrView{}
	var reasons []string
	for _, c := range v.csrs {
		if c.state != "Denied" {
			continue
		}
		r := condition(c.csr, certificatesv1.CertificateDenied).Reason
		if r == "" {
			r = "(no reason)"
		}
		if _, ok := byReason[r]; !ok {
			reasons = append(reasons, r)
		}
		byReason[r] = append(byReason[r], c)
	}
	if len(reasons) == 0 {
		return nil
	}
	sort.Strings(reasons)
	f := &Finding{Severity: severity.Warning}
	n := 0
	for _, r := range reasons {
		for _, c := range byReason[r] {
			n++
			cond := condition(c.csr, certificatesv1.CertificateDenied)
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s: %s (%s, created %s ago): %s", r, c.name, c.who(), human.Duration(c.age), cond.Message))
			if c.node != "" && !slices.Contains(f.Nodes, c.node) {
				f.Nodes = append(f.Nodes, c.node)
			}
		}
	}
	sort.Strings(f.Nodes)
	f.Title = fmt.Sprintf("%s denied", plural(n, "kubelet-serving CSR"))
	first := byReason[reasons[0]][0].name
	f.Fix = []string{
		"Denials are final; the kubelet files a new CSR within 15 minutes and serves without a new certificate until one is issued.",
		"If the denial was right, investigate the node: a kubelet asks only for its own Node's addresses.",
		"If a legitimate CSR was denied, see why with csrguard explain " + first + " and fix the approver's configuration (e.g. kubelet-csr-approver's provider regex and IP ranges, or csrguard's --allowed-node-cidrs and --dns-name-regex).",
	}
	return f
}

// duplicatePending: superseded CSRs, counted apart: the kubelet refiles every 15 minutes while
// none is approved and waits only for its newest, so the older ones are no node's problem.
func (v *view) duplicatePending() *Finding {
	var nodes []string
	total := 0
	for _, n := range sortedKeys(v.pending) {
		if p := v.pending[n]; len(p) >= 2 && p[0].node != "" {
			if k := v.supersededOf(n); k > 0 {
				nodes = append(nodes, n)
				total += k
			}
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	f := &Finding{
		Severity: severity.Info,
		Title:    fmt.Sprintf("%s pending but superseded by a newer CSR of the same node (%s)", plural(total, "kubelet-serving CSR"), plural(len(nodes), "node")),
	}
	var newest, stale []string
	for _, n := range nodes {
		p := v.pending[n]
		var live string
		for _, c := range p {
			if s, ok := v.superseded[c.name]; ok {
				stale = append(stale, c.name)
				live = s.By
			}
		}
		old := p[0]
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: %d superseded, oldest %s (%s), by %s", n, v.supersededOf(n), old.name, human.Duration(old.age), live))
		newest = append(newest, live)
	}
	f.Fix = []string{
		"A kubelet waits 15 minutes for each CSR, then files a new one with a new key: only the newest CSR of each node can still give it a certificate (" + names(newest, 5) + "). csrguard controller and csrguard approve approve only those, and the controller denies the superseded ones (reason Superseded) once the newest is approved.",
		"Without the controller, delete the superseded ones: kubectl delete csr " + names(stale, 10),
	}
	return f
}

// supersededOf counts the pending CSRs of who that are superseded.
func (v *view) supersededOf(who string) int {
	n := 0
	for _, c := range v.pending[who] {
		if _, ok := v.superseded[c.name]; ok {
			n++
		}
	}
	return n
}

// soonGarbageCollected: pending CSRs csrcleaner is about to delete, and the
// evidence of a long outage with them.
func (v *view) soonGarbageCollected() *Finding {
	var old []csrView
	for _, c := range v.csrs {
		if c.state == "Pending" && c.age > gcWarnAge {
			old = append(old, c)
		}
	}
	if len(old) == 0 {
		return nil
	}
	f := &Finding{
		Severity: severity.Info,
		Title:    fmt.Sprintf("%s pending for over %s: kube-controller-manager deletes pending CSRs after 24h", plural(len(old), "kubelet-serving CSR"), human.Duration(gcWarnAge)),
	}
	for _, c := range old {
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): pending %s, deleted in about %s", c.name, c.who(), human.Duration(c.age), human.Duration(24*time.Hour-c.age)))
		if c.node != "" && !slices.Contains(f.Nodes, c.node) {
			f.Nodes = append(f.Nodes, c.node)
		}
	}
	f.Fix = []string{
		"These are stale: their kubelets gave up on them after 15 minutes. Only each node's newest CSR matters.",
		"To keep the evidence of how long this has lasted: kubectl get csr " + old[0].name + " -o yaml > " + old[0].name + ".yaml",
	}
	return f
}

func condition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) certificatesv1.CertificateSigningRequestCondition {
	for _, c := range csr.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return certificatesv1.CertificateSigningRequestCondition{}
}

// conditionReason is ", reason X" for c's deciding condition, if any.
func conditionReason(c *csrView) string {
	for _, t := range []certificatesv1.RequestConditionType{certificatesv1.CertificateDenied, certificatesv1.CertificateFailed, certificatesv1.CertificateApproved} {
		if cond := condition(c.csr, t); cond.Type != "" && cond.Reason != "" {
			return ", reason " + cond.Reason
		}
	}
	return ""
}

// csrAges lists CSRs with their ages, oldest first, at most 5.
func csrAges(csrs []csrView) string {
	var parts []string
	for i, c := range csrs {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("… (%d more)", len(csrs)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", c.name, human.Duration(c.age)))
	}
	return strings.Join(parts, ", ")
}

// countList writes m as "Reason (count)", sorted by reason.
func countList(m map[policy.Reason]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s (%d)", k, m[policy.Reason(k)]))
	}
	return strings.Join(parts, ", ")
}
