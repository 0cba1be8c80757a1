package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
)

// ReadSnapshot reads, once, what the controller decides with, for commands
// that decide from a laptop (explain, approve, doctor, preflight): the given
// Nodes, the Namespaces, the API server's identity and the service CIDRs
// (Discover, what csrguard's record in namespace remembers, and static,
// combined by Merge as the controller's ClusterDiscovery does), and
// the address claims csrguard recorded there. reader should be uncached.
//
// Failing to read the record is an error, not an empty record: without it an
// address the API server once had, or the owner of a squatted address, is
// unknown, and the policy would decide on less than the controller knows. An
// absent record (csrguard never ran there) is empty. It also returns what
// Discover found about the sources (whether ServiceCIDRs are served).
func ReadSnapshot(ctx context.Context, reader client.Reader, apiServer *rest.Config, namespace string, static policy.Cluster, nodes []corev1.Node) (policy.Snapshot, Found, error) {
	s := policy.Snapshot{Nodes: policy.FromNodes(nodes)}
	var err error
	if s.Namespaces, err = listNamespaces(ctx, reader); err != nil {
		return s, Found{}, err
	}
	cluster, found, err := Discover(ctx, reader, apiServer)
	if err != nil {
		return s, found, fmt.Errorf("discover API server addresses and service CIDRs (needed to decide safely): %w", err)
	}
	store := history.NewStore(reader, nil, namespace)
	identity, err := store.LoadIdentity(ctx)
	if err != nil {
		return s, found, fmt.Errorf("read csrguard's record of the API server's addresses: %w", err)
	}
	// Unusable entries are left out (LoadClaims): they can only make the policy stricter.
	if s.Claims, _, err = store.LoadClaims(ctx); err != nil {
		return s, found, fmt.Errorf("read csrguard's record of address claims: %w", err)
	}
	s.Cluster = Merge(cluster, identity, static)
	return s, found, nil
}
