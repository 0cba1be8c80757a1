package policy_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/policy"
)

// fakeFacts answers lookups from a fixed set of nodes, like the controller's caches would.
type fakeFacts struct {
	nodes      map[string]*policy.Node
	claims     map[string]policy.Claim
	namespaces []string
	cluster    policy.Cluster

	nodeErr, addressErr, claimErr, namespaceErr, clusterErr error
}

// defaultFacts returns a dual-stack node-a with every address type, a node-b, the namespaces of
// a new cluster plus "vault", no claims, and a dual-stack cluster whose API server certificate
// names a load balancer.
func defaultFacts() *fakeFacts {
	return &fakeFacts{
		nodes: map[string]*policy.Node{
			"node-a": node("node-a",
				"Hostname=node-a", "InternalIP=10.0.0.10", "InternalIP=fd00::10", "ExternalIP=203.0.113.10",
				"InternalDNS=node-a.internal.example", "ExternalDNS=node-a.example.com"),
			"node-b": node("node-b", "Hostname=node-b", "InternalIP=10.0.0.11", "InternalIP=fd00::11"),
		},
		claims:     map[string]policy.Claim{},
		namespaces: []string{"default", "kube-system", "kube-public", "kube-node-lease", "vault"},
		cluster: policy.Cluster{
			APIServerAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")},
			APIServerNames:     []string{"api.k8s.example"},
			ServiceCIDRs:       []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:96::/112")},
		},
	}
}

// node builds a Node from "Type=address" pairs.
func node(name string, addresses ...string) *policy.Node {
	n := &policy.Node{Name: name}
	for _, a := range addresses {
		typ, addr, _ := strings.Cut(a, "=")
		n.Addresses = append(n.Addresses, corev1.NodeAddress{Type: corev1.NodeAddressType(typ), Address: addr})
	}
	return n
}

// addAddresses adds "Type=address" pairs to the named node.
func (f *fakeFacts) addAddresses(name string, addresses ...string) {
	f.nodes[name].Addresses = append(f.nodes[name].Addresses, node(name, addresses...).Addresses...)
}

func (f *fakeFacts) Node(_ context.Context, name string) (*policy.Node, error) {
	if f.nodeErr != nil {
		return nil, f.nodeErr
	}
	return f.nodes[name], nil
}

func (f *fakeFacts) NodesWithAddress(_ context.Context, key string) ([]string, error) {
	if f.addressErr != nil {
		return nil, f.addressErr
	}
	var names []string
	for name, n := range f.nodes {
		if slices.Contains(policy.AddressKeys(n.Addresses), key) {
			names = append(names, name)
		}
	}
	return names, nil
}

func (f *fakeFacts) NodesUnderName(_ context.Context, prefix string, limit int) ([]string, error) {
	if f.nodeErr != nil {
		return nil, f.nodeErr
	}
	var names []string
	for name := range f.nodes {
		if slices.Contains(policy.NamePrefixes(name), prefix) && (limit <= 0 || len(names) < limit) {
			names = append(names, name)
		}
	}
	return names, nil
}

func (f *fakeFacts) AddressClaim(_ context.Context, key string) (policy.Claim, bool, error) {
	if f.claimErr != nil {
		return policy.Claim{}, false, f.claimErr
	}
	c, ok := f.claims[key]
	return c, ok, nil
}

func (f *fakeFacts) NamespaceExists(_ context.Context, name string) (bool, error) {
	if f.namespaceErr != nil {
		return false, f.namespaceErr
	}
	return slices.Contains(f.namespaces, name), nil
}

// controlPlane puts the control-plane label on the named node.
func (f *fakeFacts) controlPlane(name string) {
	f.nodes[name].Labels = map[string]string{policy.ControlPlaneLabel: ""}
}

func (f *fakeFacts) Cluster(context.Context) (policy.Cluster, error) {
	return f.cluster, f.clusterErr
}
