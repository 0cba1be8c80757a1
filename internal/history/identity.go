package history

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/csrguard/csrguard/internal/policy"
)

// Identity is every address and DNS name the API server has been seen at, and when. An entry
// outlives its last sighting by a retention (the longest certificate lifetime the policy
// allows), so that no certificate minted while an address is missing from the kubernetes
// EndpointSlice (an API server that restarts, or is not a Node) can outlive the memory of it.
type Identity map[string]Sighting

// Sighting is when and where an address or name of the API server was seen.
type Sighting struct {
	FirstSeen time.Time
	// LastSeen is kept to the hour: it only decides when the entry is forgotten.
	LastSeen time.Time
	// Sources says where it was seen: "endpointslice", "certificate", "cluster-info",
	// "client" or "flag".
	Sources []string
}

// lastSeenStep is the granularity of LastSeen, which keeps writes rare.
const lastSeenStep = time.Hour

// Observe records that the API server was seen at each key of seen (an IP address or a DNS name)
// through the sources its value names, at now. It reports whether the Identity changed enough
// to be worth saving: a new key or source, or a LastSeen an hour old.
func (id Identity) Observe(seen map[string][]string, now time.Time) bool {
	changed := false
	for key, sources := range seen {
		key = identityKey(key)
		if key == "" {
			continue
		}
		s, ok := id[key]
		if !ok {
			s = Sighting{FirstSeen: now, LastSeen: now}
			changed = true
		}
		if now.Sub(s.LastSeen) >= lastSeenStep {
			s.LastSeen = now
			changed = true
		}
		for _, source := range sources {
			if !slices.Contains(s.Sources, source) {
				s.Sources = slices.Sorted(slices.Values(append(slices.Clone(s.Sources), source)))
				changed = true
			}
		}
		id[key] = s
	}
	return changed
}

// Expire forgets the entries last seen more than retention before now, and reports whether any
// were.
func (id Identity) Expire(now time.Time, retention time.Duration) bool {
	n := len(id)
	maps.DeleteFunc(id, func(_ string, s Sighting) bool { return now.Sub(s.LastSeen) > retention })
	return len(id) != n
}

// Merge adds other to id: every key of either, first seen at the earlier time, last seen at the
// later, from every source of both.
func (id Identity) Merge(other Identity) {
	for key, o := range other {
		s, ok := id[key]
		if !ok {
			id[key] = Sighting{FirstSeen: o.FirstSeen, LastSeen: o.LastSeen, Sources: slices.Clone(o.Sources)}
			continue
		}
		if o.FirstSeen.Before(s.FirstSeen) {
			s.FirstSeen = o.FirstSeen
		}
		if o.LastSeen.After(s.LastSeen) {
			s.LastSeen = o.LastSeen
		}
		s.Sources = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(s.Sources), o.Sources...))))
		id[key] = s
	}
}

// Split returns the addresses and the names of id, sorted.
func (id Identity) Split() ([]netip.Addr, []string) {
	var addrs []netip.Addr
	var names []string
	for key := range id {
		if a, err := netip.ParseAddr(key); err == nil {
			addrs = append(addrs, a)
		} else {
			names = append(names, key)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	slices.Sort(names)
	return addrs, names
}

// identityKey normalises an address or a name; "" for neither.
func identityKey(s string) string { return policy.AddressKey(strings.TrimSpace(s)) }
