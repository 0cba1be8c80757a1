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
	"time"

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
	// Until is, for a Hold that ends at a known time (the settle time runs out, a released
	// claim ends), when that is; the request is to be decided again then. Zero otherwise.
	Until time.Time
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
	// Until is, for a Hold that ends at a known time, when that is; zero otherwise.
	Until time.Time
}

// Node is the part of a Node object the policy looks at.
type Node struct {
	Name      string
	Addresses []corev1.NodeAddress
	// Created is the Node's creationTimestamp: ownership failures hold for the settle time
	// after the later of it and the request's creation.
	Created time.Time
	// Labels are the Node's labels, or at least those Config.ControlPlaneLabels names: a Node
	// that carries one is a control-plane node, which may hold its own API server addresses and
	// names in its certificate.
	Labels map[string]string
}

// FromNode returns what the policy looks at of a Node.
func FromNode(n *corev1.Node) Node {
	return Node{Name: n.Name, Addresses: n.Status.Addresses, Labels: n.Labels, Created: n.CreationTimestamp.Time}
}

// FromNodes returns FromNode of each of nodes.
func FromNodes(nodes []corev1.Node) []Node {
	out := make([]Node, len(nodes))
	for i := range nodes {
		out[i] = FromNode(&nodes[i])
	}
	return out
}

// Cluster holds the API server's identity and the Service ranges: addresses and names no node
// may claim, as discovered from the cluster and remembered since.
type Cluster struct {
	// APIServerAddresses are the addresses the kube-apiserver has been seen at: its endpoints,
	// the addresses in its serving certificate, and every one remembered from earlier
	// discoveries. A control-plane node may hold its own (it runs that API server); any other
	// node never.
	APIServerAddresses []netip.Addr
	// APIServerNames are DNS names the kube-apiserver answers to (from its serving certificate,
	// remembered like the addresses), lowercased. The same exemption applies as for addresses.
	APIServerNames []string
	// ServiceCIDRs are the ranges Service cluster IPs come from. No node may hold one, control
	// plane or not.
	ServiceCIDRs []netip.Prefix
}

// Claim records which Node owns an address: the first to report it while csrguard watched.
// A Node that reports an address another Node claims is a squatter, and is refused it.
type Claim struct {
	// Node is the name of the owning Node.
	Node string
	// Since is when the owner was first seen reporting the address.
	Since time.Time
	// Released is when the owner stopped reporting the address, or zero while it still does.
	// The claim ends Config.AddressSettleTime later, so that the address can move to another
	// Node (addresses are reused) without a squatter racing the owner's next status update.
	Released time.Time
}

// Facts is what the policy may look up. The controller implements it with its caches, tests with
// fakes. An error from any method makes Evaluate return an error instead of a decision.
type Facts interface {
	// Node returns the named node, or nil and no error when it does not exist.
	Node(ctx context.Context, name string) (*Node, error)
	// NodesWithAddress returns the names of the nodes reporting an address with this key (see
	// AddressKeys).
	NodesWithAddress(ctx context.Context, key string) ([]string, error)
	// NodesUnderName returns the names of up to limit nodes (all when limit <= 0) whose name
	// is name or name followed by more labels (see NamePrefixes).
	NodesUnderName(ctx context.Context, name string, limit int) ([]string, error)
	// AddressClaim returns the claim on the address with this key, and false when there is none.
	AddressClaim(ctx context.Context, key string) (Claim, bool, error)
	// NamespaceExists reports whether the namespace exists.
	NamespaceExists(ctx context.Context, name string) (bool, error)
	// Cluster returns the API server's identity and the service CIDRs.
	Cluster(ctx context.Context) (Cluster, error)
}
