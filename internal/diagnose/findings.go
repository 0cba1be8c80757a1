package diagnose

import (
	"crypto/x509"
	"fmt"
	"sort"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// Severity says how urgent a finding is. The zero value is not a severity.
type Severity int

// The severities, least urgent first.
const (
	// Info is worth knowing; nothing is broken.
	Info Severity = iota + 1
	// Warning will break something, or weakens security, if left alone.
	Warning
	// Critical is broken now: kubelets serve no valid certificate, or soon will not.
	Critical
)

// String returns "info", "warning" or "critical".
func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	default:
		return fmt.Sprintf("Severity(%d)", int(s))
	}
}

// MarshalText encodes s as its String.
func (s Severity) MarshalText() ([]byte, error) {
	switch s {
	case Info, Warning, Critical:
		return []byte(s.String()), nil
	}
	return nil, fmt.Errorf("invalid severity %d", int(s))
}

// UnmarshalText decodes "info", "warning" or "critical".
func (s *Severity) UnmarshalText(b []byte) error {
	for _, v := range []Severity{Info, Warning, Critical} {
		if string(b) == v.String() {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("invalid severity %q", b)
}

// The finding IDs. They are stable: scripts match on them.
const (
	IDKubeletsWithoutCert   = "kubelets-without-serving-certificate"
	IDMetricsServerTLS      = "metrics-server-kubelet-tls"
	IDNoApprover            = "no-approver"
	IDPendingCSRs           = "pending-csrs"
	IDPendingWouldDeny      = "pending-csrs-policy-would-deny"
	IDPendingWouldHold      = "pending-csrs-policy-would-hold"
	IDApprovedNotIssued     = "approved-not-issued"
	IDSignerFailed          = "signer-failed"
	IDDeniedCSRs            = "denied-csrs"
	IDDuplicatePending      = "duplicate-pending-csrs"
	IDSoonGarbageCollected  = "csrs-soon-garbage-collected"
	IDCertExpired           = "serving-certificate-expired"
	IDCertExpiring          = "serving-certificate-expiring"
	IDCertSANMismatch       = "serving-certificate-san-mismatch"
	IDCertUntrusted         = "serving-certificate-untrusted"
	IDSharedCA              = "shared-ca"
	IDProbeUnavailable      = "probe-unavailable"
	IDKubeletsUnreachable   = "kubelets-unreachable"
	IDClusterDiscoveryError = "cluster-discovery-failed"
)

// Finding is one problem found, with the facts that show it and what to do.
type Finding struct {
	// ID is a stable kebab-case identifier, one of the ID* constants.
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	// Title says what is wrong in one line.
	Title string `json:"title"`
	// Nodes are the nodes concerned, sorted; empty when cluster-wide.
	Nodes []string `json:"nodes"`
	// Evidence quotes the facts: CSR names and ages, probe errors, approvers.
	Evidence []string `json:"evidence"`
	// Fix lists the steps to take, in order. A step may span several lines
	// (a YAML patch); its first line says what it is.
	Fix []string `json:"fix"`
}

// Diagnose returns the findings about s, most severe first, then by ID. It
// is pure: everything comes from s, including the time.
func Diagnose(s Snapshot) []Finding {
	v := newView(s)
	checks := []func() *Finding{
		v.kubeletsWithoutCert,
		v.noApprover,
		v.pendingCSRs,
		v.pendingWouldDeny,
		v.pendingWouldHold,
		v.approvedNotIssued,
		v.signerFailed,
		v.deniedCSRs,
		v.duplicatePending,
		v.soonGarbageCollected,
		v.certExpired,
		v.certExpiring,
		v.certSANMismatch,
		v.certUntrusted,
		v.sharedCA,
		v.probeUnavailable,
		v.kubeletsUnreachable,
		v.clusterDiscovery,
		v.metricsServerTLS,
		v.controlPlaneUnlabelled,
		v.addressConflicts,
		v.allowedNodeCIDRs,
		v.podCIDRsNotReserved,
	}
	out := []Finding{}
	for _, check := range checks {
		if f := check(); f != nil {
			out = append(out, *f)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Severity != out[j].Severity {
			return out[i].Severity > out[j].Severity
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// kubeletsWithoutCert is the incident: kubelets answer every handshake with
// "tls: internal error" because they have no serving certificate.
func (v *view) kubeletsWithoutCert() *Finding {
	var nodes []string
	for _, n := range v.nodeNames {
		if r, ok := v.probe(n); ok && r.State == metrics.ProbeNoServingCertificate {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	f := &Finding{
		ID: IDKubeletsWithoutCert, Severity: Critical, Nodes: nodes,
		Title: fmt.Sprintf("%s no TLS certificate: kubectl logs/exec/port-forward and metrics-server fail on %s", pluralVerb(len(nodes), "kubelet", "serves", "serve"), them(len(nodes))),
	}
	var newest, silent []string
	for _, n := range nodes {
		r := v.Probes[n]
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: probe of %s: %v", n, r.Endpoint, r.Err))
		if p := v.pending[n]; len(p) > 0 {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s: %s pending: %s", n, plural(len(p), "kubelet-serving CSR"), csrAges(p)))
			last := p[len(p)-1]
			if d, ok := v.Decisions[last.name]; ok && d.Verdict != policy.Approve {
				// Never suggest approving what the policy rejects.
				f.Evidence = append(f.Evidence, fmt.Sprintf("%s: the policy would %s its newest CSR %s: %s: %s", n, strings.ToLower(d.Verdict.String()), last.name, d.Reason, d.Message))
				continue
			}
			newest = append(newest, last.name)
			continue
		}
		silent = append(silent, n)
		if last, ok := v.last[n]; ok {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s: no CSR pending; its newest kubelet-serving CSR %s is %s (created %s ago)%s", n, last.name, last.state, humanDuration(last.age), conditionReason(&last)))
		} else {
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s: no kubelet-serving CSR from this node in the API", n))
		}
	}
	f.Evidence = append(f.Evidence, v.approverEvidence()...)
	for _, m := range v.MetricsServers {
		if missing, _ := v.nodesWithoutMetrics(); len(missing) > 0 {
			f.Evidence = append(f.Evidence, fmt.Sprintf("metrics-server %s/%s (%s) has no metrics for %s, so kubectl top fails", m.Namespace, m.Name, m.tlsMode(), names(missing, 5)))
		}
	}

	if len(newest) > 0 {
		f.Fix = append(f.Fix, v.breakGlassFixes(newest)...)
	}
	if approving := v.approving(); len(approving) > 0 {
		if len(newest) > 0 {
			a := approving[0]
			f.Fix = append(f.Fix, fmt.Sprintf("%s (%s) runs but leaves these CSRs pending: read its log (kubectl -n %s logs deploy/%s) and the CSRs' Events.", a.Kind, a.Where, a.Namespace, a.Name))
		}
	} else {
		f.Fix = append(f.Fix, v.installFixShort())
	}
	if len(silent) > 0 {
		f.Fix = append(f.Fix, fmt.Sprintf("For %s without a pending CSR: a kubelet files a new one within 15 minutes; if none comes, it cannot reach the API server or rotation is off while it lost its certificate. %s", names(silent, 5), v.kubeletLogFix(silent)))
	}
	f.Fix = append(f.Fix, "Verify: csrguard certs shows these nodes ok, and kubectl logs works for their pods.")
	return f
}

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
	sev := Warning
	if oldest > pendingGrace || noCert {
		// CSRs wait beyond what any approver takes, or kubelets already
		// serve nothing: the incident is on.
		sev = Critical
	}
	f := &Finding{
		ID: IDNoApprover, Severity: sev, Nodes: nodes,
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
			line += fmt.Sprintf(" (oldest pending %s)", humanDuration(oldest))
		}
		f.Evidence = append(f.Evidence, line)
	}
	if noCert {
		f.Evidence = append(f.Evidence, "kubelets answer the probe with \"tls: internal error\": they have no serving certificate (see kubelets-without-serving-certificate)")
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

// pendingCSRs: CSRs pending beyond the grace period that the policy would
// approve — nothing approved what should have been.
func (v *view) pendingCSRs() *Finding {
	var stuck []csrView
	for _, c := range v.csrs {
		if d, ok := v.Decisions[c.name]; ok && c.state == "Pending" && c.age > pendingGrace && d.Verdict == policy.Approve {
			stuck = append(stuck, c)
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	f := &Finding{ID: IDPendingCSRs, Severity: Warning}
	groups := groupByWho(stuck)
	var newest []string
	for _, g := range groups {
		who := g[0].who()
		if g[0].node != "" {
			f.Nodes = append(f.Nodes, who)
		}
		line := fmt.Sprintf("%s: %s pending over %s that the policy would approve: %s", who, plural(len(g), "CSR"), humanDuration(pendingGrace), csrAges(g))
		if lacks, why := v.lacksCert(who); lacks {
			f.Severity = Critical
			line += "; " + why
		}
		f.Evidence = append(f.Evidence, line)
		// The kubelet waits only for its newest CSR, which may be younger
		// than the grace period.
		all := v.pending[who]
		newest = append(newest, all[len(all)-1].name)
	}
	f.Title = fmt.Sprintf("%s pending over %s although the policy would approve %s", plural(len(stuck), "kubelet-serving CSR"), humanDuration(pendingGrace), them(len(stuck)))
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
		f.Fix = append(f.Fix, fmt.Sprintf("Find out why %s holds them: kubectl get events -A --field-selector involvedObject.kind=CertificateSigningRequest, and kubectl -n %s logs deploy/%s (csrguard holds on its rate limit or breaker and says so in Held events).", a.Kind, a.Namespace, a.Name))
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
		ID: IDPendingWouldDeny, Severity: Warning,
		Title: fmt.Sprintf("%s pending that the policy would deny", plural(len(bad), "kubelet-serving CSR")),
	}
	f.Evidence = append(f.Evidence, "reasons: "+countList(reasons))
	var csrNames, nodes []string
	for _, c := range bad {
		d := v.Decisions[c.name]
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s, pending %s): %s: %s", c.name, c.who(), humanDuration(c.age), d.Reason, d.Message))
		csrNames = append(csrNames, c.name)
		if c.node != "" && !contains(nodes, c.node) {
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
		ID: IDPendingWouldHold, Severity: Warning,
		Title: fmt.Sprintf("%s pending over %s that the policy would keep holding", plural(len(held), "kubelet-serving CSR"), humanDuration(pendingGrace)),
	}
	var csrNames []string
	nodeGone := false
	for _, c := range held {
		why := "not evaluated"
		if d, ok := v.Decisions[c.name]; ok {
			why = fmt.Sprintf("%s: %s", d.Reason, d.Message)
			nodeGone = nodeGone || d.Reason == policy.NodeNotFound
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s, pending %s): %s", c.name, c.who(), humanDuration(c.age), why))
		csrNames = append(csrNames, c.name)
		if c.node != "" && !contains(f.Nodes, c.node) {
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
		if c.state == "Approved" && v.Now.Sub(approvedAt(c.csr)) > approvedGrace {
			stuck = append(stuck, c)
		}
	}
	if len(stuck) == 0 {
		return nil
	}
	f := &Finding{
		ID: IDApprovedNotIssued, Severity: Critical,
		Title: fmt.Sprintf("%s approved but not issued: the signer does not sign kubernetes.io/kubelet-serving", plural(len(stuck), "kubelet-serving CSR")),
	}
	for _, c := range stuck {
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): approved %s ago%s, no certificate and no Failed condition", c.name, c.who(), humanDuration(v.Now.Sub(approvedAt(c.csr))), conditionReason(&c)))
		if c.node != "" && !contains(f.Nodes, c.node) {
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
		ID: IDSignerFailed, Severity: Critical,
		Title: fmt.Sprintf("The signer failed %s", plural(len(failed), "kubelet-serving CSR")),
	}
	var csrNames []string
	for _, c := range failed {
		cond := condition(c.csr, certificatesv1.CertificateFailed)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s, created %s ago): %s: %s", c.name, c.who(), humanDuration(c.age), cond.Reason, cond.Message))
		csrNames = append(csrNames, c.name)
		if c.node != "" && !contains(f.Nodes, c.node) {
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
	f := &Finding{ID: IDDeniedCSRs, Severity: Warning}
	n := 0
	for _, r := range reasons {
		for _, c := range byReason[r] {
			n++
			cond := condition(c.csr, certificatesv1.CertificateDenied)
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s: %s (%s, created %s ago): %s", r, c.name, c.who(), humanDuration(c.age), cond.Message))
			if c.node != "" && !contains(f.Nodes, c.node) {
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

// duplicatePending: the kubelet refiles every 15 minutes while none is approved.
func (v *view) duplicatePending() *Finding {
	var nodes []string
	for _, n := range sortedKeys(v.pending) {
		if p := v.pending[n]; len(p) >= 2 && p[0].node != "" {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	f := &Finding{
		ID: IDDuplicatePending, Severity: Warning, Nodes: nodes,
		Title: fmt.Sprintf("%s with several pending kubelet-serving CSRs", plural(len(nodes), "node")),
	}
	var newest, stale []string
	for _, n := range nodes {
		p := v.pending[n]
		old, last := p[0], p[len(p)-1]
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: %d pending, oldest %s (%s), newest %s (%s)", n, len(p), old.name, humanDuration(old.age), last.name, humanDuration(last.age)))
		newest = append(newest, last.name)
		for _, c := range p[:len(p)-1] {
			stale = append(stale, c.name)
		}
	}
	f.Fix = []string{
		"A kubelet waits 15 minutes for each CSR, then files a new one with a new key: only the newest CSR of each node can still give it a certificate (" + names(newest, 5) + ").",
		"Approve those (csrguard approve, or kubectl certificate approve after csrguard explain), then delete the stale ones: kubectl delete csr " + names(stale, 10),
	}
	return f
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
		ID: IDSoonGarbageCollected, Severity: Info,
		Title: fmt.Sprintf("%s pending for over %s: kube-controller-manager deletes pending CSRs after 24h", plural(len(old), "kubelet-serving CSR"), humanDuration(gcWarnAge)),
	}
	for _, c := range old {
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): pending %s, deleted in about %s", c.name, c.who(), humanDuration(c.age), humanDuration(24*time.Hour-c.age)))
		if c.node != "" && !contains(f.Nodes, c.node) {
			f.Nodes = append(f.Nodes, c.node)
		}
	}
	f.Fix = []string{
		"These are stale: their kubelets gave up on them after 15 minutes. Only each node's newest CSR matters.",
		"To keep the evidence of how long this has lasted: kubectl get csr " + old[0].name + " -o yaml > " + old[0].name + ".yaml",
	}
	return f
}

// certExpired: kubelets serve (or were last issued) an expired certificate.
func (v *view) certExpired() *Finding {
	f := &Finding{ID: IDCertExpired, Severity: Critical}
	for _, n := range v.nodeNames {
		cert, source, _ := v.servingCert(n)
		if cert == nil || cert.NotAfter.After(v.Now) {
			continue
		}
		f.Nodes = append(f.Nodes, n)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: serving certificate (%s) issued by %s expired %s ago (%s)", n, sourceText(source), issuerName(cert), humanDuration(v.Now.Sub(cert.NotAfter)), cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s expired", plural(len(f.Nodes), "kubelet serving certificate"))
	f.Fix = []string{
		"A kubelet with rotation on serves no certificate once its own expired; one that serves an expired certificate has a static or self-signed one (--tls-cert-file) or rotation off: renew it, or turn rotation on together with an approver.",
		"Where the certificate comes from issued CSRs, the kubelet got no newer one approved: see the pending and denied CSR findings. " + v.kubeletLogFix(f.Nodes),
	}
	if len(v.approving()) == 0 {
		f.Fix = append(f.Fix, v.installFixShort())
	}
	return f
}

// certExpiring: certificates the kubelet should have rotated already.
// Critical when one has less than a day left, warning otherwise.
func (v *view) certExpiring() *Finding {
	f := &Finding{ID: IDCertExpiring, Severity: Warning}
	for _, n := range v.nodeNames {
		cert, source, _ := v.servingCert(n)
		if cert == nil || !expiring(cert, v.Now) {
			continue
		}
		left := cert.NotAfter.Sub(v.Now)
		if left < expiryCritical {
			f.Severity = Critical
		}
		f.Nodes = append(f.Nodes, n)
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: serving certificate (%s) issued by %s expires in %s (%s), %s of its lifetime left", n, sourceText(source), issuerName(cert), humanDuration(left), cert.NotAfter.UTC().Format(time.RFC3339), percent(left, cert.NotAfter.Sub(cert.NotBefore))))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s expiring without having been rotated", plural(len(f.Nodes), "kubelet serving certificate"))
	f.Fix = []string{
		"A kubelet rotates at 70-90% of its certificate's lifetime: these did not get a new one. Look for their pending or denied CSRs above. " + v.kubeletLogFix(f.Nodes),
	}
	if len(v.approving()) == 0 {
		f.Fix = append(f.Fix, v.installFixShort())
	}
	return f
}

// certSANMismatch: a served certificate's SANs differ from the Node's addresses.
func (v *view) certSANMismatch() *Finding {
	f := &Finding{ID: IDCertSANMismatch, Severity: Warning}
	extra := false
	for _, n := range v.nodeNames {
		r, ok := v.probe(n)
		if !ok || r.Cert == nil || r.SANsMatch {
			continue
		}
		f.Nodes = append(f.Nodes, n)
		var parts []string
		if len(r.Missing) > 0 {
			parts = append(parts, "missing "+strings.Join(r.Missing, ", "))
		}
		if len(r.Extra) > 0 {
			extra = true
			parts = append(parts, "extra "+strings.Join(r.Extra, ", "))
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: serving certificate SANs differ from the Node's addresses: %s", n, strings.Join(parts, "; ")))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = "1 kubelet serving certificate has SANs that do not match its Node's addresses"
	if len(f.Nodes) > 1 {
		f.Title = fmt.Sprintf("%d kubelet serving certificates have SANs that do not match their Nodes' addresses", len(f.Nodes))
	}
	if extra {
		f.Fix = append(f.Fix, "Extra SANs are names or addresses the Node does not report: an approver that does not check SANs against the Node signed them (csrguard denies them as SANNotOnNode). Find out who approved the certificate and treat the node as suspect until explained.")
	}
	f.Fix = append(f.Fix,
		"Missing SANs: the Node's addresses changed after the certificate was issued. The kubelet requests a new certificate for its current addresses; if the mismatch stays, that CSR is pending or denied (see above).",
		"Clients that verify kubelets (kube-apiserver with --kubelet-certificate-authority, metrics-server) reject a certificate without the address they dial.",
	)
	return f
}

// certUntrusted: the served certificate does not chain to the CA the probe was given.
func (v *view) certUntrusted() *Finding {
	f := &Finding{ID: IDCertUntrusted, Severity: Warning}
	for _, n := range v.nodeNames {
		r, ok := v.probe(n)
		if !ok || r.State != metrics.ProbeUntrusted {
			continue
		}
		f.Nodes = append(f.Nodes, n)
		issuer := "?"
		if r.Cert != nil {
			issuer = issuerName(r.Cert)
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: certificate issued by %s: %v", n, issuer, r.Err))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s not signed by the kubelet-serving CA given", plural(len(f.Nodes), "kubelet serving certificate"))
	f.Fix = []string{
		"A self-signed issuer (<hostname>-ca@<timestamp>) means rotation is off on that kubelet: turn on serverTLSBootstrap" + talosRotationHint(v.talos) + " together with an approver.",
		"Otherwise check the CA bundle given to the probe: it must hold the CA kube-controller-manager signs kubelet-serving certificates with.",
	}
	return f
}

// sharedCA: kubelet serving certificates signed by a CA every pod trusts.
func (v *view) sharedCA() *Finding {
	if len(v.PodTrustedCAs) == 0 {
		return nil
	}
	f := &Finding{ID: IDSharedCA, Severity: Warning}
	for _, n := range v.nodeNames {
		seen := map[string]bool{}
		for _, c := range v.certsOf(n) {
			for _, ca := range v.PodTrustedCAs {
				if c.cert.CheckSignatureFrom(ca) != nil {
					continue
				}
				key := c.source + "|" + ca.Subject.String()
				if seen[key] {
					continue
				}
				seen[key] = true
				if !contains(f.Nodes, n) {
					f.Nodes = append(f.Nodes, n)
				}
				f.Evidence = append(f.Evidence, fmt.Sprintf("%s: serving certificate (%s) is signed by %s, which kube-system/kube-root-ca.crt gives every pod to trust", n, sourceText(c.source), ca.Subject.String()))
			}
		}
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = "Kubelet serving certificates are signed by the CA pods trust for the API server: a wrongly approved CSR lets a node impersonate the API server"
	f.Fix = []string{
		"Sign kubelet-serving certificates with a dedicated CA: kube-controller-manager --cluster-signing-kubelet-serving-cert-file and --cluster-signing-kubelet-serving-key-file (once one per-signer pair is set, give every signer in use its own pair instead of --cluster-signing-cert-file).",
		"Have kube-apiserver verify kubelets against that CA: --kubelet-certificate-authority=<dedicated CA>; likewise metrics-server --kubelet-certificate-authority.",
		"Until then, approve kubelet-serving CSRs only with SAN ownership checks: csrguard denies kubernetes.default.svc, Service IPs and API server addresses.",
	}
	if v.talos {
		f.Fix = append(f.Fix, "On Talos these flags go in cluster.controllerManager.extraArgs and cluster.apiServer.extraArgs, with the CA files mounted through their extraVolumes.")
	}
	return f
}

// probeUnavailable: the findings rest on the API alone.
func (v *view) probeUnavailable() *Finding {
	if v.ProbeNote == "" {
		return nil
	}
	return &Finding{
		ID: IDProbeUnavailable, Severity: Info,
		Title:    "Kubelets were not probed: findings rest on what the API shows",
		Evidence: []string{v.ProbeNote},
		Fix: []string{
			"Without a probe, a kubelet with no serving certificate shows only through its pending CSRs, and issued CSRs are deleted after 1h.",
			"Run the doctor where the nodes' kubelet port (10250) is reachable, or read csrguard's own probe from inside the cluster: the metric csrguard_kubelet_probe_result.",
		},
	}
}

// kubeletsUnreachable: some probes got no TLS verdict.
func (v *view) kubeletsUnreachable() *Finding {
	f := &Finding{ID: IDKubeletsUnreachable, Severity: Info}
	for _, n := range v.nodeNames {
		r, ok := v.probe(n)
		if !ok || probeReached(r) {
			continue
		}
		f.Nodes = append(f.Nodes, n)
		endpoint := r.Endpoint
		if endpoint == "" {
			endpoint = "no address"
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s (%s): %s: %v", n, endpoint, r.State, r.Err))
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s could not be probed from here", plural(len(f.Nodes), "kubelet"))
	f.Fix = []string{
		"refused: is the kubelet running on the node? timeout: a firewall between here and port 10250, or the node is down (kubectl get nodes).",
		"For these nodes the certificate findings use the issued CSRs in the API.",
	}
	return f
}

// clusterDiscovery: the policy's verdicts here lacked the reserved addresses.
func (v *view) clusterDiscovery() *Finding {
	if v.ClusterErr == "" {
		return nil
	}
	return &Finding{
		ID: IDClusterDiscoveryError, Severity: Info,
		Title:    "API server addresses and service CIDRs could not be discovered: the policy verdicts shown miss their checks",
		Evidence: []string{v.ClusterErr},
		Fix: []string{
			"Allow reading Service default/kubernetes, its EndpointSlices and ServiceCIDRs, or pass --apiserver-addresses and --service-cidrs.",
		},
	}
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

type sourcedCert struct {
	cert   *x509.Certificate
	source string
}

// certsOf returns node's probed and issued certificates.
func (v *view) certsOf(node string) []sourcedCert {
	var out []sourcedCert
	if r, ok := v.probe(node); ok && r.Cert != nil {
		out = append(out, sourcedCert{r.Cert, "probe"})
	}
	if c := v.issued[node]; c != nil && (len(out) == 0 || !c.Equal(out[0].cert)) {
		out = append(out, sourcedCert{c, "csr"})
	}
	return out
}

func sourceText(source string) string {
	switch source {
	case "probe":
		return "served, per probe"
	case "csr":
		return "newest issued CSR"
	}
	return source
}

// approvedAt is when csr was approved (servingcsr.ApprovedAt).
func approvedAt(csr *certificatesv1.CertificateSigningRequest) time.Time {
	return servingcsr.ApprovedAt(csr)
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
		parts = append(parts, fmt.Sprintf("%s (%s)", c.name, humanDuration(c.age)))
	}
	return strings.Join(parts, ", ")
}

func groupByWho(csrs []csrView) [][]csrView {
	var out [][]csrView
	for _, c := range csrs {
		if len(out) > 0 && out[len(out)-1][0].who() == c.who() {
			out[len(out)-1] = append(out[len(out)-1], c)
			continue
		}
		out = append(out, []csrView{c})
	}
	return out
}

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

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orDefault(list []string, def string) []string {
	if len(list) == 0 {
		return []string{def}
	}
	return list
}

// pluralVerb returns "1 kubelet serves" or "2 kubelets serve".
func pluralVerb(n int, noun, one, many string) string {
	if n == 1 {
		return plural(n, noun) + " " + one
	}
	return plural(n, noun) + " " + many
}

func them(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}

func percent(part, whole time.Duration) string {
	if whole <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

func talosRotationHint(talos bool) string {
	if talos {
		return " (Talos: rotate-server-certificates: true in machine.kubelet.extraArgs, or the KubeletConfig document's extraArgs on 1.14+)"
	}
	return ""
}
