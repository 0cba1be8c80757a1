package policy

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// AddressKeys returns the keys under which Facts.NodesWithAddress finds a node
// with these status.addresses: each IP normalised, each name lowercased
// without a trailing dot; sorted, without duplicates. Controllers index their
// Node caches with it.
func AddressKeys(addrs []corev1.NodeAddress) []string {
	keys := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if a.Address == "" {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			keys = append(keys, normaliseAddr(ip).String())
			continue
		}
		keys = append(keys, normaliseDNS(a.Address))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
