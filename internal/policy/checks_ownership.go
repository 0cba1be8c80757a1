package policy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func (e *evaluation) nodeExists(ctx context.Context) (CheckResult, error) {
	if e.nodeName == "" {
		return skipped(skipNoNode)
	}
	node, err := e.requestingNode(ctx)
	if err != nil {
		return CheckResult{}, err
	}
	if node == nil {
		// The kubelet may ask before its Node is visible here: wait for it rather than deny.
		return failed(Hold, NodeNotFound, "node %q does not exist (yet)", e.nodeName)
	}
	return passed("node %q exists", e.nodeName)
}

// sanOwnership checks that every SAN is the requesting Node's own: among its status.addresses,
// not the name of another Node, and not an address another Node owns. Ownership goes to the
// Node that reported an address first (its Claim): a Node that copies another's address into
// its own status is refused it, while the owner keeps rotating. Without a claim (csrguard has
// not seen who was first), an address reported by two Nodes belongs to neither.
func (e *evaluation) sanOwnership(ctx context.Context) (CheckResult, error) {
	if e.csr == nil {
		return skipped(skipNoRequest)
	}
	if e.node == nil {
		return skipped("skipped: the node was not found")
	}
	ownNames, ownIPs := ownAddresses(e.node.Addresses)
	var keys []string // lookup keys, one per SAN
	for _, name := range e.dnsNames {
		if !ownNames[name] {
			return e.unsettled(SANNotOnNode, "DNS SAN %q is not an address of node %q", name, e.nodeName)
		}
		keys = append(keys, name)
	}
	for _, ip := range e.ips {
		if !ownIPs[ip] {
			return e.unsettled(SANNotOnNode, "IP SAN %s is not an address of node %q", ip, e.nodeName)
		}
		keys = append(keys, ip.String())
	}
	// A Node's name is its own even when it reports no Hostname, and so are the names it is
	// reached by through DNS search domains: a DNS SAN that is another Node's name, a short
	// form of it ("node-b" for "node-b.example.com") or it under a domain ("node-b.example.com"
	// for "node-b") is that Node's. The requester's own full name is always its own. Names
	// that merely share a first label ("web1.dc1" and "web1.dc2") are left to the address
	// rules, or any new Node could deny its namesakes' aliases.
	for _, name := range e.dnsNames {
		if other, err := e.otherNodeNamed(ctx, name); err != nil || other != "" {
			if err != nil {
				return CheckResult{}, err
			}
			return e.unsettled(SANOfOtherNode, "DNS SAN %q names node %q (one is the other under a domain)", name, other)
		}
	}
	// The first denial wins over a hold on another SAN (a released claim holds whatever the
	// settle time says), so that a SAN on its way to its new holder cannot delay a denial.
	var hold *CheckResult
	slices.Sort(keys)
	for _, key := range slices.Compact(keys) {
		r, err := e.owner(ctx, key)
		switch {
		case err != nil || r.Outcome == Fail && r.Verdict == Deny:
			return r, err
		case r.Outcome == Fail && hold == nil:
			hold = &r
		}
	}
	if hold != nil {
		return *hold, nil
	}
	return passed("every SAN is an address of node %q that no other node owns", e.nodeName)
}

// owner checks that no other Node owns the address key.
func (e *evaluation) owner(ctx context.Context, key string) (CheckResult, error) {
	if _, isIP := ParseNodeIP(key); !isIP && key == normaliseDNS(e.nodeName) {
		// A Node's name is bound to its credential (NodeRestriction): no claim can take it.
		// A Node named like an IP gets no such say over the address: that is an address key.
		return CheckResult{Outcome: Pass}, nil
	}
	claim, ok, err := e.facts.AddressClaim(ctx, key)
	if err != nil {
		return CheckResult{}, fmt.Errorf("get claim on address %q: %w", key, err)
	}
	if ok && !claim.Released.IsZero() && !e.now.Before(claim.Released.Add(e.cfg.AddressSettleTime)) {
		ok = false // the claim has run out; it will be dropped
	}
	switch {
	case ok && claim.Node == e.nodeName:
		// Ours, whoever else reports it now.
		return CheckResult{Outcome: Pass}, nil
	case ok && !claim.Released.IsZero():
		// The owner stopped reporting it: the address is moving. Wait for the claim to end
		// rather than deny the new holder.
		end := claim.Released.Add(e.cfg.AddressSettleTime)
		r, err := failed(Hold, SANOfOtherNode, "SAN %q was an address of node %q until %s; its claim ends at %s",
			key, claim.Node, claim.Released.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
		r.Until = end
		return r, err
	case ok:
		return e.unsettled(SANOfOtherNode, "SAN %q is owned by node %q, which has reported it since %s", key, claim.Node, claim.Since.UTC().Format(time.RFC3339))
	}
	names, err := e.facts.NodesWithAddress(ctx, key)
	if err != nil {
		return CheckResult{}, fmt.Errorf("find nodes with address %q: %w", key, err)
	}
	for _, other := range slices.Sorted(slices.Values(names)) {
		if other != e.nodeName {
			return e.unsettled(SANOfOtherNode, "SAN %q is also an address of node %q, and neither has a claim on it", key, other)
		}
	}
	return CheckResult{Outcome: Pass}, nil
}

// ownAddresses returns the DNS names and IPs a Node's addresses give its kubelet, as
// pkg/kubelet/certificate builds its CSR template: Hostname, InternalDNS and ExternalDNS are
// names (a Hostname that parses as an IP is an IP instead), InternalIP and ExternalIP are IPs,
// all parsed as ParseNodeIP does.
func ownAddresses(addrs []corev1.NodeAddress) (map[string]bool, map[netip.Addr]bool) {
	names, ips := map[string]bool{}, map[netip.Addr]bool{}
	for _, a := range addrs {
		ip, isIP := ParseNodeIP(a.Address)
		switch a.Type {
		case corev1.NodeHostName:
			if isIP {
				ips[ip] = true
			} else {
				names[normaliseDNS(a.Address)] = true
			}
		case corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			names[normaliseDNS(a.Address)] = true
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if isIP {
				ips[ip] = true
			}
		}
	}
	return names, ips
}

// unsettled fails an ownership check: Hold while the request, or its Node if that appeared
// later, is younger than the settle time, and Deny after that. The address caches may not yet
// show a Node's new addresses; a Node that has just registered may not have reported them yet
// (a cloud controller adds them after registration); installers label control-plane Nodes
// just after. A hold never approves, so a Node that re-registers only delays its own denial.
func (e *evaluation) unsettled(reason Reason, format string, args ...any) (CheckResult, error) {
	msg := fmt.Sprintf(format, args...)
	since, what := e.req.Created, "the request"
	if e.node != nil && e.node.Created.After(since) {
		since, what = e.node.Created, "node "+e.nodeName
	}
	if end := since.Add(e.cfg.AddressSettleTime); e.now.Before(end) {
		r, err := failed(Hold, reason, "%s; holding until %s is %v old in case node addresses lag", msg, what, e.cfg.AddressSettleTime)
		r.Until = end
		return r, err
	}
	return failed(Deny, reason, "%s", msg)
}

// requestingNode looks up the requesting Node once; nil when it does not exist or the username
// names no valid node.
func (e *evaluation) requestingNode(ctx context.Context) (*Node, error) {
	if e.nodeName == "" {
		return nil, nil
	}
	if e.node == nil {
		node, err := e.facts.Node(ctx, e.nodeName)
		if err != nil {
			return nil, fmt.Errorf("get node %q: %w", e.nodeName, err)
		}
		e.node = node
	}
	return e.node, nil
}

// otherNodeNamed returns a Node other than the requester whose name is the normalised name,
// starts with it (a short form), or starts it (the name under a domain), or "" if none is.
// Each lookup is by exact key, asks for two Nodes at most and copies none, so a name prefix
// many Nodes share ("cn-hangzhou", on Alibaba Cloud) stays cheap.
func (e *evaluation) otherNodeNamed(ctx context.Context, name string) (string, error) {
	own := normaliseDNS(e.nodeName)
	if name == own {
		return "", nil
	}
	// Two suffice: one may be the requester.
	under, err := e.facts.NodesUnderName(ctx, name, 2)
	if err != nil {
		return "", fmt.Errorf("find nodes named %q: %w", name, err)
	}
	for _, other := range slices.Sorted(slices.Values(under)) {
		if other != e.nodeName {
			return other, nil
		}
	}
	prefixes := NamePrefixes(name)
	for _, p := range prefixes[:len(prefixes)-1] {
		if p == own {
			continue
		}
		node, err := e.facts.Node(ctx, p)
		if err != nil {
			return "", fmt.Errorf("get node %q: %w", p, err)
		}
		if node != nil {
			return node.Name, nil
		}
	}
	return "", nil
}

// normaliseDNS returns name as it is compared: lowercased, without a trailing dot.
func normaliseDNS(name string) string {
	return lowerASCII(strings.TrimSuffix(name, "."))
}

// lowerASCII lowercases the ASCII letters of s only: DNS is case-insensitive in ASCII alone,
// and Unicode folding would make "\u212a" (the Kelvin sign) a "k".
func lowerASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// normaliseAddr returns addr as it is compared: IPv4-mapped IPv6 as IPv4, without a zone.
func normaliseAddr(addr netip.Addr) netip.Addr {
	return addr.Unmap().WithZone("")
}

// NormalisePrefix returns an IPv4-mapped IPv6 prefix as the IPv4 prefix it covers, and any
// other prefix as it is.
func NormalisePrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}
