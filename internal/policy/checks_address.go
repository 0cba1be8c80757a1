package policy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

var (
	// metadataAddresses are the clouds' instance metadata and host services: 169.254.169.254
	// (AWS, GCP, Azure, OpenStack, most others; named here for a clearer message, the
	// link-local ranges are reserved whole), AWS's IPv6 metadata, DNS, time and EKS Pod
	// Identity services (fd00:ec2::254, ::253, ::123, ::23), GCP's IPv6 metadata
	// (fd20:ce::254), Alibaba Cloud's metadata (100.100.100.200) and Azure's WireServer
	// (168.63.129.16).
	metadataAddresses = []netip.Addr{
		netip.MustParseAddr("169.254.169.254"),
		netip.MustParseAddr("fd00:ec2::254"), netip.MustParseAddr("fd00:ec2::253"), netip.MustParseAddr("fd00:ec2::123"), netip.MustParseAddr("fd00:ec2::23"),
		netip.MustParseAddr("fd20:ce::254"), netip.MustParseAddr("100.100.100.200"), netip.MustParseAddr("168.63.129.16"),
	}
	// metadataNames are the names of metadata services (GCP; AWS, which also answers to
	// instance-data.<region>.compute.internal).
	metadataNames = []string{"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
	broadcast     = netip.MustParseAddr("255.255.255.255")
)

// reserved denies names and addresses no node may hold, whoever it is: there is no exemption
// here, so a control-plane node is refused them too (its exemption is apiServer's alone).
func (e *evaluation) reserved(ctx context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	cluster, err := e.clusterFacts(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	// Kubelet-serving certificates are often signed by the cluster CA that every pod trusts: one
	// for a cluster name or address would let a node impersonate the API server or a Service.
	for _, name := range e.dnsNames {
		why, err := e.reservedName(ctx, name)
		if err != nil {
			return CheckResult{}, err
		}
		if why != "" {
			return failed(Deny, ReservedName, "DNS SAN %q is %s", name, why)
		}
	}
	for _, ip := range e.ips {
		if why := e.reservedAddress(ip, cluster); why != "" {
			return failed(Deny, ReservedAddress, "IP SAN %s is %s", ip, why)
		}
	}
	return passed("no reserved name or address")
}

// reservedName says why the normalised DNS name belongs to the cluster or to the local host, so
// that no node may hold a certificate for it, or returns "".
func (e *evaluation) reservedName(ctx context.Context, name string) (string, error) {
	domain := e.cfg.ClusterDomain
	switch name {
	case "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + domain:
		return "the API server's in-cluster name", nil
	case domain:
		return "the cluster domain", nil
	case "localhost":
		return "the local host", nil
	}
	if slices.Contains(metadataNames, name) || strings.HasPrefix(name, "instance-data.") && strings.HasSuffix(name, ".compute.internal") {
		return "a cloud metadata service's name", nil
	}
	// ".svc."+domain and ".pod."+domain are within "."+domain. Pods resolve "<service>.<ns>.svc"
	// and "<a-b-c-d>.<ns>.pod" through their DNS search path, with or without the domain.
	for _, suffix := range []struct{ s, why string }{
		{"." + domain, "in the cluster domain " + domain},
		{".localhost", "under localhost"},
	} {
		if strings.HasSuffix(name, suffix.s) {
			return suffix.why, nil
		}
	}
	labels := strings.Split(name, ".")
	// A "svc" or "pod" label after the first is a Service or Pod name in some cluster domain:
	// this one with or without the domain, or another if --cluster-domain is wrong.
	for _, l := range labels[1:] {
		if l == "svc" || l == "pod" {
			return fmt.Sprintf("a Service or Pod name (it has a %q label)", l), nil
		}
	}
	if slices.ContainsFunc(e.cfg.ExtraReservedNames, func(r string) bool { return normaliseDNS(r) == name }) {
		return "a reserved name (--reserved-names)", nil
	}
	// "<service>.<ns>" and "<pod>.<service>.<ns>" (headless Services, StatefulSets) are what a
	// pod's search path completes to "….<ns>.svc.<domain>". Any Service may be created in an
	// existing namespace while the certificate lives, so such names of every existing
	// namespace are reserved.
	// Not even a Node's own name is exempt: with a bootstrap token a node picks its own name,
	// and "kube-dns.kube-system" is no node's. A Node named "<host>.<ns>" is stranded once
	// namespace <ns> exists; doctor and preflight name it.
	if n := len(labels); n == 2 || n == 3 {
		ns := labels[n-1]
		exists, err := e.facts.NamespaceExists(ctx, ns)
		if err != nil {
			return "", fmt.Errorf("look up namespace %q: %w", ns, err)
		}
		if exists {
			return fmt.Sprintf("<service>.<namespace> or <pod>.<service>.<namespace> for namespace %q, which pods resolve to a Service or a Pod", ns), nil
		}
	}
	return "", nil
}

// reservedAddress says why the unmapped addr may not be a node's serving address, or returns "".
// API server addresses are apiServer's to judge.
func (e *evaluation) reservedAddress(addr netip.Addr, cluster Cluster) string {
	switch {
	case addr.IsLoopback() && !e.cfg.InsecureAllowLoopback:
		return "a loopback address"
	case slices.Contains(metadataAddresses, addr):
		return "a cloud metadata address"
	case addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast():
		return "a link-local address"
	case addr.IsMulticast():
		return "a multicast address"
	case addr.IsUnspecified():
		return "the unspecified address"
	case addr == broadcast:
		return "the broadcast address"
	case inAny(cluster.ServiceCIDRs, addr):
		return "a Service IP"
	case inAny(e.cfg.ExtraReservedCIDRs, addr):
		return "in a reserved CIDR (--reserved-cidrs)"
	}
	return ""
}

func inAny(prefixes []netip.Prefix, addr netip.Addr) bool {
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return NormalisePrefix(p).Contains(addr) })
}

// apiServer keeps the API server's addresses and names for the API server. On kubeadm and Talos
// it listens on each control-plane node's own IP and its certificate names that node, so that
// node's kubelet asks for them too: a Node with a control-plane label (which NodeRestriction
// forbids a kubelet to set on itself) may hold them, and san-ownership then checks they are
// its own. This is the only exemption in the policy, and it lifts this rule alone.
func (e *evaluation) apiServer(ctx context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	cluster, err := e.clusterFacts(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	var hits []string
	for _, name := range e.dnsNames {
		if slices.ContainsFunc(cluster.APIServerNames, func(n string) bool { return normaliseDNS(n) == name }) {
			hits = append(hits, fmt.Sprintf("DNS SAN %q", name))
		}
	}
	for _, ip := range e.ips {
		if slices.ContainsFunc(cluster.APIServerAddresses, func(a netip.Addr) bool { return normaliseAddr(a) == ip }) {
			hits = append(hits, "IP SAN "+ip.String())
		}
	}
	if len(hits) == 0 {
		return passed("no API server address or name")
	}
	what := strings.Join(hits, ", ")
	reason := ReservedAddress
	if strings.HasPrefix(hits[0], "DNS") {
		reason = ReservedName
	}
	node, err := e.requestingNode(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	if node == nil {
		if e.nodeName == "" {
			return failed(Deny, reason, "%s: the API server's, and the requester is no node", what)
		}
		return failed(Hold, NodeNotFound, "%s: the API server's; only its own control-plane node may hold it, and node %q does not exist (yet)", what, e.nodeName)
	}
	if label, ok := e.cfg.isControlPlane(node.Labels); ok {
		return passed("%s: the API server's; node %q is a control-plane node (label %s) and may hold its own", what, e.nodeName, label)
	}
	// Installers label a control-plane Node just after its kubelet registers, so hold for the
	// settle time before denying.
	return e.unsettled(reason, "%s: the API server's, and node %q is not a control-plane node (labels %s)", what, e.nodeName, strings.Join(e.cfg.ControlPlaneLabels, ", "))
}

func (e *evaluation) allowedCIDRs(context.Context) (CheckResult, error) {
	if len(e.cfg.AllowedNodeCIDRs) == 0 {
		return skipped("skipped: no allowed node CIDRs configured")
	}
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	for _, ip := range e.ips {
		if !inAny(e.cfg.AllowedNodeCIDRs, ip) {
			return failed(Deny, AddressNotAllowed, "IP SAN %s is outside the allowed node CIDRs", ip)
		}
	}
	return passed("every IP SAN is inside the allowed node CIDRs")
}

func (e *evaluation) dnsRegex(context.Context) (CheckResult, error) {
	re := e.cfg.DNSNameRegex
	if re == nil {
		return skipped("skipped: no DNS name pattern configured")
	}
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	for _, name := range e.dnsNames {
		// Require a full match even if the pattern is not anchored.
		if loc := re.FindStringIndex(name); loc == nil || loc[0] != 0 || loc[1] != len(name) {
			return failed(Deny, DNSNameNotAllowed, "DNS SAN %q does not match the allowed DNS name pattern", name)
		}
	}
	return passed("every DNS SAN matches the allowed DNS name pattern")
}

// clusterFacts looks up the cluster's reserved addresses once per evaluation.
func (e *evaluation) clusterFacts(ctx context.Context) (Cluster, error) {
	if e.cluster == nil {
		c, err := e.facts.Cluster(ctx)
		if err != nil {
			return Cluster{}, fmt.Errorf("get cluster addresses: %w", err)
		}
		e.cluster = &c
	}
	return *e.cluster, nil
}
