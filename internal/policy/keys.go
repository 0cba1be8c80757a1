package policy

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	netutils "k8s.io/utils/net"
)

// ParseNodeIP parses a Node status address the way the kubelet does before it puts the address
// into its serving CSR (k8s.io/utils/net.ParseIPSloppy, which allows leading zeros:
// "010.000.000.010" is 10.0.0.10), and returns it normalised: IPv4-mapped IPv6 as IPv4. It
// reports false for anything the kubelet would not take as an IP, zoned addresses included.
func ParseNodeIP(s string) (netip.Addr, bool) {
	ip := netutils.ParseIPSloppy(s)
	if ip == nil {
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return addr.Unmap(), ok
}

// AddressKey returns the key under which Facts.NodesWithAddress and Facts.AddressClaim find a
// Node status address: the IP as ParseNodeIP reads it, else the name lowercased without a
// trailing dot. It is "" for an address that could never be a SAN: neither an IP nor a valid
// RFC 1123 DNS name. Such an address is neither indexed nor claimed, so a Node cannot smuggle
// blanks, newlines or megabytes into the bookkeeping.
func AddressKey(address string) string {
	if address == "" {
		return ""
	}
	if ip, ok := ParseNodeIP(address); ok {
		return ip.String()
	}
	name := normaliseDNS(address)
	if strings.Contains(name, "*") || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return ""
	}
	return name
}

// NamePrefixes returns the label-prefixes of a Node name, shortest first ("a.b.c": "a", "a.b",
// "a.b.c"): the short forms by which the Node is reached through DNS search domains, and the
// keys under which Facts.NodesUnderName finds it.
func NamePrefixes(nodeName string) []string {
	name := normaliseDNS(nodeName)
	var prefixes []string
	for i, c := range name {
		if c == '.' {
			prefixes = append(prefixes, name[:i])
		}
	}
	return append(prefixes, name)
}

// AddressKeys returns AddressKey of every one of addrs, sorted, without duplicates and empty
// keys. Controllers index their Node caches with it. A key that is its address as written (an
// IPv4 address, a lowercase name) is the address's own string, so that what keeps both keeps
// it once. One pass and a sort: a kubelet can report tens of thousands of addresses.
func AddressKeys(addrs []corev1.NodeAddress) []string {
	keys := make([]string, 0, len(addrs))
	for _, a := range addrs {
		switch k := AddressKey(a.Address); k {
		case "":
		case a.Address:
			keys = append(keys, a.Address)
		default:
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}
