package diagnose

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/severity"
)

// The Helm values the address fixes set.
const (
	allowedNodeCIDRsHelmValue = "policy.allowedNodeCIDRs"
	reservedCIDRsHelmValue    = "policy.reservedCIDRs"
	serviceCIDRsHelmValue     = "policy.serviceCIDRs"
)

// NodeCIDRs returns a small set of CIDRs covering every IP a kubelet of nodes puts into its
// serving CSR (InternalIP, ExternalIP, a Hostname that is an IP): each address's /24 (IPv4)
// or /64 (IPv6), with neighbouring networks merged into their common supernet where both
// halves are present. It never covers an address outside those networks, so it is a safe
// --allowed-node-cidrs for today's nodes; widen it for the networks new nodes will come from.
func NodeCIDRs(nodes []corev1.Node) []netip.Prefix {
	var out []netip.Prefix
	for i := range nodes {
		for _, a := range nodes[i].Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP && a.Type != corev1.NodeHostName {
				continue
			}
			ip, ok := policy.ParseNodeIP(a.Address)
			if !ok {
				continue
			}
			bits := 24
			if ip.Is6() {
				bits = 64
			}
			out = append(out, netip.PrefixFrom(ip, bits).Masked())
		}
	}
	return policy.Aggregate(out)
}

// allowedNodeCIDRs recommends --allowed-node-cidrs when it is not set: without it a node can
// get a certificate for any address nobody else holds.
func (v *view) allowedNodeCIDRs() *Finding {
	if len(v.Policy.AllowedNodeCIDRs) > 0 || len(v.Nodes) == 0 {
		return nil
	}
	cidrs := NodeCIDRs(v.Nodes)
	if len(cidrs) == 0 {
		return nil
	}
	list := joinPrefixes(cidrs)
	return &Finding{
		Severity: severity.Info,
		Title:    "--allowed-node-cidrs is not set: a node may get a certificate for any address no other node reports",
		Evidence: []string{fmt.Sprintf("%s report their IPs in %s", plural(len(v.Nodes), "node"), list)},
		Fix: []string{
			"Restrict IP SANs to your node networks (add the ranges new nodes will come from):",
			fmt.Sprintf("helm upgrade csrguard <chart> --reuse-values --set '%s={%s}'", allowedNodeCIDRsHelmValue, list),
			"or run csrguard controller with --allowed-node-cidrs=" + list,
		},
	}
}

// podCIDRsNotReserved recommends reserving the Nodes' pod CIDRs where neither --reserved-cidrs
// covers them nor --allowed-node-cidrs keeps them out. csrguard does not read Node pod CIDRs
// (a kubelet may set its own, and would then deny its neighbours' addresses), so only the
// operator can tell it where pods live. For the same reason the advice leaves out a pod CIDR
// that holds a Node or API server address, overlaps a service CIDR or is shorter than /8
// (/32 for IPv6), and names its Node instead: reserving it would deny legitimate nodes.
func (v *view) podCIDRsNotReserved() *Finding {
	cfg := v.policyConfig()
	var hosts []netip.Addr
	for i := range v.Nodes {
		for _, a := range v.Nodes[i].Status.Addresses {
			if ip, ok := policy.ParseNodeIP(a.Address); ok {
				hosts = append(hosts, ip)
			}
		}
	}
	hosts = append(hosts, v.Cluster.APIServerAddresses...)
	var pods []netip.Prefix
	var evidence []string
	for _, name := range v.nodeNames {
		for _, c := range v.nodes[name].Spec.PodCIDRs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				continue
			}
			p = policy.NormalisePrefix(p.Masked())
			switch {
			case p.Bits() < 8 || p.Addr().Is6() && p.Bits() < 32:
				evidence = append(evidence, fmt.Sprintf("node %s has pod CIDR %s, implausibly large: left out; find out who set it", name, p))
			case slices.ContainsFunc(hosts, p.Contains):
				evidence = append(evidence, fmt.Sprintf("node %s has pod CIDR %s, which holds a node or API server address: left out; find out who set it", name, p))
			case slices.ContainsFunc(v.Cluster.ServiceCIDRs, p.Overlaps):
				evidence = append(evidence, fmt.Sprintf("node %s has pod CIDR %s, which overlaps the service CIDRs: left out; find out who set it", name, p))
			default:
				pods = append(pods, p)
			}
		}
	}
	within := func(set []netip.Prefix, f func(r, p netip.Prefix) bool, p netip.Prefix) bool {
		return slices.ContainsFunc(set, func(r netip.Prefix) bool { return f(policy.NormalisePrefix(r), p) })
	}
	covers := func(r, p netip.Prefix) bool { return r.Bits() <= p.Bits() && r.Contains(p.Addr()) }
	var open []netip.Prefix
	for _, p := range policy.Aggregate(pods) {
		if !within(cfg.ExtraReservedCIDRs, covers, p) && (len(cfg.AllowedNodeCIDRs) == 0 || within(cfg.AllowedNodeCIDRs, netip.Prefix.Overlaps, p)) {
			open = append(open, p)
		}
	}
	if len(open) == 0 {
		return nil
	}
	list := joinPrefixes(append(slices.Clone(cfg.ExtraReservedCIDRs), open...))
	return &Finding{
		Severity: severity.Info,
		Title:    "Pod IPs are not reserved: a node may get a certificate for a pod's address",
		Evidence: append([]string{fmt.Sprintf("Nodes have pod CIDRs in %s, which --reserved-cidrs does not cover and --allowed-node-cidrs does not keep out", joinPrefixes(open))},
			evidence...),
		Fix: []string{
			"Reserve the cluster's whole pod range (kube-controller-manager --cluster-cidr; your CNI's pool), not only today's nodes' CIDRs:",
			fmt.Sprintf("helm upgrade csrguard <chart> --reuse-values --set '%s={%s}'", reservedCIDRsHelmValue, list),
			"or run csrguard controller with --reserved-cidrs=" + list,
		},
	}
}

// clusterDiscovery: the policy's verdicts here lacked the reserved addresses.
func (v *view) clusterDiscovery() *Finding {
	if v.ClusterErr == "" {
		return nil
	}
	return &Finding{
		Severity: severity.Info,
		Title:    "API server addresses and service CIDRs could not be discovered: the policy verdicts shown miss their checks",
		Evidence: []string{v.ClusterErr},
		Fix: []string{
			"Allow reading Service default/kubernetes, its EndpointSlices and ServiceCIDRs, or pass --apiserver-addresses and --service-cidrs.",
		},
	}
}

// serviceCIDRsUnknown asks for --service-cidrs where the API server serves no ServiceCIDR
// objects (before 1.33, or turned off) and neither this command nor a csrguard Deployment
// has it: csrguard then knows only the kubernetes Service's own IPs as Service IPs, and a
// node could get a certificate for another Service's cluster IP.
func (v *view) serviceCIDRsUnknown() *Finding {
	if !v.NoServiceCIDRAPI || len(v.StaticServiceCIDRs) > 0 {
		return nil
	}
	for _, a := range v.Approvers {
		if a.ServiceCIDRs != "" {
			return nil
		}
	}
	evidence := "the API server serves no ServiceCIDR objects (networking.k8s.io/v1 servicecidrs, Kubernetes 1.33+)"
	if len(v.Cluster.ServiceCIDRs) > 0 {
		evidence += "; the Service IPs known are only " + joinPrefixes(v.Cluster.ServiceCIDRs)
	}
	return &Finding{
		Severity: severity.Warning,
		Title:    "The service range is unknown: the API server serves no ServiceCIDR objects and --service-cidrs is not set",
		Evidence: []string{evidence},
		Fix: []string{
			"Set --service-cidrs to kube-apiserver's --service-cluster-ip-range (kubeadm: networking.serviceSubnet, 10.96.0.0/12 by default):",
			fmt.Sprintf("helm upgrade csrguard <chart> --reuse-values --set '%s={<range>}'", serviceCIDRsHelmValue),
			"or run csrguard controller (and doctor, preflight) with --service-cidrs=<range>",
		},
	}
}

// joinPrefixes writes prefixes comma-separated.
func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// controlPlaneUnlabelled finds Nodes that report an API server address but carry none of the
// control-plane labels: their kubelets' CSRs are denied, so they get no serving certificate.
func (v *view) controlPlaneUnlabelled() *Finding {
	cfg := v.policyConfig()
	f := &Finding{Severity: severity.Warning}
	for _, name := range v.nodeNames {
		n := v.nodes[name]
		if cfg.IsControlPlane(n.Labels) {
			continue
		}
		for _, a := range n.Status.Addresses {
			ip, ok := policy.ParseNodeIP(a.Address)
			if ok && slices.Contains(v.Cluster.APIServerAddresses, ip) {
				f.Nodes = append(f.Nodes, name)
				f.Evidence = append(f.Evidence, fmt.Sprintf("%s reports %s, an API server address, and has none of the labels %s", name, ip, strings.Join(cfg.ControlPlaneLabels, ", ")))
				break
			}
		}
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	f.Title = fmt.Sprintf("%s report an API server address but are not labelled control-plane: their serving CSRs are denied", plural(len(f.Nodes), "node"))
	f.Fix = []string{
		"If they are control-plane nodes, label them (a kubelet cannot set this label on itself): kubectl label node " + strings.Join(f.Nodes, " ") + " node-role.kubernetes.io/control-plane=",
		"If your distribution marks control-plane nodes with another label (RKE1: node-role.kubernetes.io/controlplane=true), tell csrguard: --control-plane-labels (Helm value policy.controlPlaneLabels).",
		"If they are not control-plane nodes, find out why they report the API server's address.",
	}
	return f
}

// addressConflicts finds Nodes reporting addresses another Node owns, or that two Nodes report
// with neither owning them, from csrguard's recorded claims.
func (v *view) addressConflicts() *Finding {
	reporters := map[string][]string{}
	for _, name := range v.nodeNames {
		for _, key := range policy.AddressKeys(v.nodes[name].Status.Addresses) {
			reporters[key] = append(reporters[key], name)
		}
	}
	f := &Finding{Severity: severity.Warning}
	for _, key := range slices.Sorted(maps.Keys(reporters)) {
		nodes := reporters[key]
		claim, claimed := v.Claims[key]
		switch {
		case claimed && (len(nodes) > 1 || nodes[0] != claim.Node):
			for _, n := range nodes {
				if n != claim.Node {
					f.Nodes = append(f.Nodes, n)
					f.Evidence = append(f.Evidence, fmt.Sprintf("%s reports %s, which node %s owns (reported it first, at %s)", n, key, claim.Node, claim.Since.UTC().Format("2006-01-02 15:04")))
				}
			}
		case !claimed && len(nodes) > 1:
			f.Nodes = append(f.Nodes, nodes...)
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s all report %s, and none owns it: each is refused certificates for it", strings.Join(nodes, ", "), key))
		}
	}
	if len(f.Nodes) == 0 {
		return nil
	}
	slices.Sort(f.Nodes)
	f.Nodes = slices.Compact(f.Nodes)
	f.Title = fmt.Sprintf("%s report addresses that belong to another node", plural(len(f.Nodes), "node"))
	f.Fix = []string{
		"Find out which machine really has the address (your IPAM or DHCP; Talos: talosctl -n <node> get addresses).",
		"A misconfigured node: give it its own address and restart its kubelet. A node that copied a neighbour's address into its status may be compromised: cordon it and follow your incident process.",
	}
	return f
}

// policyConfig is the policy the snapshot was decided with; the default one for hand-built
// snapshots.
func (v *view) policyConfig() policy.Config {
	if v.Policy.MaxSANs == 0 {
		return policy.DefaultConfig()
	}
	return v.Policy
}
