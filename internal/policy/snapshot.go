package policy

import (
	"context"
	"slices"
)

// Snapshot is everything the policy looks up, read once: what CLI commands (explain, approve,
// doctor, preflight) decide with, where the controller uses its caches.
type Snapshot struct {
	Nodes   []Node
	Cluster Cluster
	// Claims holds the recorded address claims by address key (see AddressKey).
	Claims map[string]Claim
	// Namespaces holds the names of the namespaces that exist.
	Namespaces []string
}

// snapshotFacts answers lookups from a Snapshot.
type snapshotFacts struct {
	s          Snapshot
	nodes      map[string]*Node
	byKey      map[string][]string
	byPrefix   map[string][]string
	namespaces map[string]bool
}

// NewSnapshotFacts returns Facts over s. It indexes the nodes by AddressKeys, exactly as the
// controller's cache index does, so a CLI command decides as the controller would.
func NewSnapshotFacts(s Snapshot) Facts {
	f := &snapshotFacts{s: s, nodes: map[string]*Node{}, byKey: map[string][]string{}, byPrefix: map[string][]string{}, namespaces: map[string]bool{}}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		f.nodes[n.Name] = n
		for _, p := range NamePrefixes(n.Name) {
			f.byPrefix[p] = append(f.byPrefix[p], n.Name)
		}
		for _, k := range AddressKeys(n.Addresses) {
			f.byKey[k] = append(f.byKey[k], n.Name)
		}
	}
	for _, ns := range s.Namespaces {
		f.namespaces[ns] = true
	}
	return f
}

func (f *snapshotFacts) Node(_ context.Context, name string) (*Node, error) {
	return f.nodes[name], nil
}

func (f *snapshotFacts) NodesWithAddress(_ context.Context, key string) ([]string, error) {
	return slices.Clone(f.byKey[key]), nil
}

func (f *snapshotFacts) NodesUnderName(_ context.Context, name string, limit int) ([]string, error) {
	names := f.byPrefix[name]
	if limit > 0 && len(names) > limit {
		names = names[:limit]
	}
	return slices.Clone(names), nil
}

func (f *snapshotFacts) AddressClaim(_ context.Context, key string) (Claim, bool, error) {
	c, ok := f.s.Claims[key]
	return c, ok, nil
}

func (f *snapshotFacts) NamespaceExists(_ context.Context, name string) (bool, error) {
	return f.namespaces[name], nil
}

func (f *snapshotFacts) Cluster(context.Context) (Cluster, error) { return f.s.Cluster, nil }
