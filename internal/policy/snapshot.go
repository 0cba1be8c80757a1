package policy

import (
	"context"
	"slices"
)

// snapshotFacts answers lookups from a fixed list of nodes and cluster
// addresses, read once: what CLI commands (explain, approve, doctor) decide
// with, where the controller uses its caches.
type snapshotFacts struct {
	nodes   map[string]*Node
	byKey   map[string][]string
	cluster Cluster
}

// NewSnapshotFacts returns Facts over nodes and cluster. It indexes nodes by
// AddressKeys, exactly as the controller's cache index does, so a CLI
// command decides as the controller would.
func NewSnapshotFacts(nodes []Node, cluster Cluster) Facts {
	f := &snapshotFacts{nodes: map[string]*Node{}, byKey: map[string][]string{}, cluster: cluster}
	for i := range nodes {
		n := &nodes[i]
		f.nodes[n.Name] = n
		for _, k := range AddressKeys(n.Addresses) {
			f.byKey[k] = append(f.byKey[k], n.Name)
		}
	}
	return f
}

func (f *snapshotFacts) Node(_ context.Context, name string) (*Node, error) {
	return f.nodes[name], nil
}

func (f *snapshotFacts) NodesWithAddress(_ context.Context, key string) ([]string, error) {
	return slices.Clone(f.byKey[key]), nil
}

func (f *snapshotFacts) Cluster(context.Context) (Cluster, error) { return f.cluster, nil }
