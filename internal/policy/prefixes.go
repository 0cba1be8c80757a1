package policy

import (
	"net/netip"
	"slices"
)

// Aggregate sorts and de-duplicates prefixes, drops those inside another, and replaces two
// halves of a network by the network, until nothing merges. The result covers exactly the
// addresses the input covers.
func Aggregate(ps []netip.Prefix) []netip.Prefix {
	ps = slices.Clone(ps)
	for {
		slices.SortFunc(ps, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		ps = slices.Compact(ps)
		var out []netip.Prefix
		merged := false
		for _, p := range ps {
			if n := len(out); n > 0 {
				last := out[n-1]
				switch {
				case last.Contains(p.Addr()) && last.Bits() <= p.Bits():
					continue // inside the previous one
				case last.Bits() == p.Bits() && last.Bits() > 0:
					if parent := netip.PrefixFrom(last.Addr(), last.Bits()-1).Masked(); parent.Addr() == last.Addr() && parent.Contains(p.Addr()) {
						out[n-1], merged = parent, true
						continue
					}
				}
			}
			out = append(out, p)
		}
		ps = out
		if !merged {
			return ps
		}
	}
}
