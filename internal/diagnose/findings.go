package diagnose

import (
	"sort"

	"github.com/csrguard/csrguard/internal/severity"
)

// The finding IDs, one per rule. They are stable: scripts match on them.
const (
	IDKubeletsWithoutCert    = "kubelets-without-serving-certificate"
	IDNoApprover             = "no-approver"
	IDSeveralApprovers       = "several-approvers"
	IDApprovedWouldDeny      = "approved-csrs-csrguard-would-deny"
	IDPendingCSRs            = "pending-csrs"
	IDPendingWouldDeny       = "pending-csrs-policy-would-deny"
	IDPendingWouldHold       = "pending-csrs-policy-would-hold"
	IDApprovedNotIssued      = "approved-not-issued"
	IDSignerFailed           = "signer-failed"
	IDDeniedCSRs             = "denied-csrs"
	IDDuplicatePending       = "duplicate-pending-csrs"
	IDSoonGarbageCollected   = "csrs-soon-garbage-collected"
	IDCertExpired            = "serving-certificate-expired"
	IDCertExpiring           = "serving-certificate-expiring"
	IDCertSANMismatch        = "serving-certificate-san-mismatch"
	IDCertUntrusted          = "serving-certificate-untrusted"
	IDSharedCA               = "shared-ca"
	IDProbeUnavailable       = "probe-unavailable"
	IDKubeletsUnreachable    = "kubelets-unreachable"
	IDClusterDiscoveryError  = "cluster-discovery-failed"
	IDMetricsServerTLS       = "metrics-server-kubelet-tls"
	IDControlPlaneUnlabelled = "control-plane-node-unlabelled"
	IDAddressConflicts       = "address-conflicts"
	IDAllowedNodeCIDRs       = "allowed-node-cidrs-unset"
	IDPodCIDRsNotReserved    = "pod-cidrs-not-reserved"
	IDServiceCIDRsUnknown    = "service-cidrs-unknown"
)

// Finding is one problem found, with the facts that show it and what to do.
type Finding struct {
	// ID is a stable kebab-case identifier, one of the ID* constants. It
	// names the rule that found the problem.
	ID string `json:"id"`
	// Severity is severity.Info, severity.Warning or severity.Critical.
	Severity severity.Level `json:"severity"`
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

// rule is one check of a snapshot. run returns the problem it found, or nil;
// it leaves Finding.ID empty, for the ID is the rule's.
type rule struct {
	id  string
	run func(*view) *Finding
}

// rules are every check Diagnose runs, each finding ID exactly once.
var rules = []rule{
	{IDKubeletsWithoutCert, (*view).kubeletsWithoutCert},
	{IDNoApprover, (*view).noApprover},
	{IDSeveralApprovers, (*view).severalApprovers},
	{IDApprovedWouldDeny, (*view).approvedWouldDeny},
	{IDPendingCSRs, (*view).pendingCSRs},
	{IDPendingWouldDeny, (*view).pendingWouldDeny},
	{IDPendingWouldHold, (*view).pendingWouldHold},
	{IDApprovedNotIssued, (*view).approvedNotIssued},
	{IDSignerFailed, (*view).signerFailed},
	{IDDeniedCSRs, (*view).deniedCSRs},
	{IDDuplicatePending, (*view).duplicatePending},
	{IDSoonGarbageCollected, (*view).soonGarbageCollected},
	{IDCertExpired, (*view).certExpired},
	{IDCertExpiring, (*view).certExpiring},
	{IDCertSANMismatch, (*view).certSANMismatch},
	{IDCertUntrusted, (*view).certUntrusted},
	{IDSharedCA, (*view).sharedCA},
	{IDProbeUnavailable, (*view).probeUnavailable},
	{IDKubeletsUnreachable, (*view).kubeletsUnreachable},
	{IDClusterDiscoveryError, (*view).clusterDiscovery},
	{IDMetricsServerTLS, (*view).metricsServerTLS},
	{IDControlPlaneUnlabelled, (*view).controlPlaneUnlabelled},
	{IDAddressConflicts, (*view).addressConflicts},
	{IDAllowedNodeCIDRs, (*view).allowedNodeCIDRs},
	{IDPodCIDRsNotReserved, (*view).podCIDRsNotReserved},
	{IDServiceCIDRsUnknown, (*view).serviceCIDRsUnknown},
}

// check runs r on v and gives the finding, if any, r's ID.
func (r rule) check(v *view) *Finding {
	f := r.run(v)
	if f != nil {
		f.ID = r.id
	}
	return f
}

// Diagnose returns the findings about s, most severe first, then by ID. It
// is pure: everything comes from s, including the time.
func Diagnose(s Snapshot) []Finding {
	v := newView(s)
	out := []Finding{}
	for _, r := range rules {
		if f := r.check(v); f != nil {
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
