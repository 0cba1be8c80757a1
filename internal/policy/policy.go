// Package policy decides kubernetes.io/kubelet-serving CSRs: approve, deny or hold.
//
// It owns the decision and nothing else. Evaluate is pure apart from the lookups it makes through
// Facts: it writes nothing, calls no API server and logs nothing. Parsing is package servingcsr's;
// applying a decision is the controller's.
package policy

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
)

// Verdict is what a decision asks the caller to do with a CSR. The zero value is not a verdict:
// it marks a bug.
type Verdict int

// The verdicts.
const (
	// Approve means every check passed: the CSR may be approved.
	Approve Verdict = iota + 1
	// Deny means the CSR itself breaks the policy: deny it, for good.
	Deny
	// Hold means the facts to decide are not there yet: leave the CSR pending and retry.
	Hold
)

// String returns "Approve", "Deny" or "Hold".
func (v Verdict) String() string {
	switch v {
	case Approve:
		return "Approve"
	case Deny:
		return "Deny"
	case Hold:
		return "Hold"
	default:
		return fmt.Sprintf("Verdict(%d)", int(v))
	}
}

// Outcome is the result of one check.
type Outcome int

// The outcomes of a check.
const (
	// Pass means the check ran and found nothing wrong.
	Pass Outcome = iota + 1
	// Fail means the check ran and found the request wanting.
	Fail
	// Skipped means the check did not run: it is not configured or needs what an earlier
	// check could not provide (a parsed request, a valid node name, an existing Node).
	Skipped
)

// String returns "Pass", "Fail" or "Skipped".
func (o Outcome) String() string {
	switch o {
	case Pass:
		return "Pass"
	case Fail:
		return "Fail"
	case Skipped:
		return "Skipped"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

// Decision is the verdict on one CSR with the reason behind it and the result of every check.
type Decision struct {
	Verdict Verdict
	// Reason is the reason code of the deciding check, or AllChecksPassed.
	Reason Reason
	// Message names the deciding check and the offending value, for Events and explain.
	Message string
	// Checks holds one result per check, in the order the checks ran.
	Checks []CheckResult
}

// CheckResult is the result of one check.
type CheckResult struct {
	// Check is the stable kebab-case id of the check, such as "requester" or "san-ownership".
	Check   string
	Outcome Outcome
	// Verdict is what the failure calls for, Deny or Hold; it is zero unless Outcome is Fail.
	Verdict Verdict
	// Reason is the reason code of the failure; it is empty unless Outcome is Fail.
	Reason Reason
	// Message says what was checked, what failed or why the check was skipped.
	Message string
}

// Node is the part of a Node object the policy looks at.
type Node struct {
	Name      string
	Addresses []corev1.NodeAddress
	// ControlPlane is true when the Node carries a control-plane role label
	// (see IsControlPlane). Only such a node may hold an API server endpoint
	// address, its own, in its certificate.
	ControlPlane bool
}

// Control-plane role labels. NodeRestriction admission forbids a kubelet to
// set node-role.kubernetes.io labels on its own Node, so they are set by an
// administrator or an installer (kubeadm, Talos), never by a compromised node.
const (
	ControlPlaneLabel       = "node-role.kubernetes.io/control-plane"
	LegacyControlPlaneLabel = "node-role.kubernetes.io/master"
)

// FromNode returns what the policy looks at of a Node.
func FromNode(n *corev1.Node) Node {
	return Node{Name: n.Name, Addresses: n.Status.Addresses, ControlPlane: IsControlPlane(n.Labels)}
}

// FromNodes returns FromNode of each of nodes.
func FromNodes(nodes []corev1.Node) []Node {
	out := make([]Node, len(nodes))
	for i := range nodes {
		out[i] = FromNode(&nodes[i])
	}
	return out
}

// IsControlPlane reports whether Node labels mark a control-plane node.
func IsControlPlane(labels map[string]string) bool {
	_, cp := labels[ControlPlaneLabel]
	_, legacy := labels[LegacyControlPlaneLabel]
	return cp || legacy
}

// Cluster holds the addresses no node may claim, as discovered from the cluster.
type Cluster struct {
	// APIServerAddresses are the addresses of the kube-apiserver endpoints.
	// A control-plane node may hold its own (it runs that API server); any
	// other node never.
	APIServerAddresses []netip.Addr
	// ServiceCIDRs are the ranges Service cluster IPs come from.
	ServiceCIDRs []netip.Prefix
}

// Facts is what the policy may look up. The controller implements it with its caches, tests with
// fakes. An error from any method makes Evaluate return an error instead of a decision.
type Facts interface {
	// Node returns the named node, or nil and no error when it does not exist.
	Node(ctx context.Context, name string) (*Node, error)
	// NodesWithAddress returns the names of the nodes reporting an address with this key. The key
	// is a normalised IP (netip.Addr.Unmap().String()) or a lowercased DNS name without a
	// trailing dot.
	NodesWithAddress(ctx context.Context, key string) ([]string, error)
	// Cluster returns the API server addresses and service CIDRs discovered from the cluster.
	Cluster(ctx context.Context) (Cluster, error)
}
