package approval

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/policy"
)

// nodeAddressIndex indexes cached Nodes by every address they report, normalised as
// policy.AddressKey does, but their own name (a Hostname address, almost always), under which
// the cache finds a Node by its key: this saves an index entry (~330 B) per Node.
const nodeAddressIndex = "csrguard.status.addresses"

// nodeNamePrefixIndex indexes cached Nodes by policy.NamePrefixes of their name but the whole
// name, under which the cache finds a Node by its key: most Node names have no dot, so most Nodes
// are not in this index at all, which saves an index entry (a set of its own, ~330 B) per Node.
const nodeNamePrefixIndex = "csrguard.metadata.nameprefix"

// csrNodeIndex indexes cached CSRs by the node that requested them, but not denied or failed ones.
const csrNodeIndex = "csrguard.spec.node"

// cacheFacts answers the policy's lookups from the controller's caches and
// memory, so a decision costs no API request.
type cacheFacts struct {
	reader  client.Reader
	cluster *kube.ClusterDiscovery
	claims  *history.Claims
}

// NewCacheFacts returns policy.Facts backed by reader (a cache with the
// indexes Setup registers), the cluster discovery and the address claims.
func NewCacheFacts(reader client.Reader, cluster *kube.ClusterDiscovery, claims *history.Claims) policy.Facts {
	return &cacheFacts{reader: reader, cluster: cluster, claims: claims}
}

func (f *cacheFacts) Node(ctx context.Context, name string) (*policy.Node, error) {
	var n corev1.Node
	if err := f.reader.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get node %q: %w", name, err)
	}
	node := policy.FromNode(&n)
	return &node, nil
}

func (f *cacheFacts) NodesWithAddress(ctx context.Context, key string) ([]string, error) {
	// The Node named key if it reports key (nodeAddressIndex leaves it out), then the others.
	names := []string{}
	n, err := f.cached(ctx, key)
	if err != nil {
		return nil, err
	}
	if n != nil && slices.Contains(policy.AddressKeys(n.Status.Addresses), key) {
		names = append(names, n.Name)
	}
	others, err := f.nodesIndexed(ctx, nodeAddressIndex, key)
	if err != nil {
		return nil, err
	}
	return append(names, others...), nil
}

func (f *cacheFacts) NodesUnderName(ctx context.Context, name string, limit int) ([]string, error) {
	// The Node named name by its key (nodeNamePrefixIndex leaves it out), then those under it.
	// Only the name is read: no copy.
	names := []string{}
	n, err := f.cached(ctx, name)
	if err != nil {
		return nil, err
	}
	if n != nil {
		names = append(names, n.Name)
	}
	if limit > 0 && len(names) >= limit {
		return names, nil
	}
	under, err := f.nodesIndexed(ctx, nodeNamePrefixIndex, name, client.Limit(max(limit-len(names), 0)))
	if err != nil {
		return nil, err
	}
	return append(names, under...), nil
}

// cached returns the cached Node named name, not copied (read only), or nil if there is none.
func (f *cacheFacts) cached(ctx context.Context, name string) (*corev1.Node, error) {
	var n corev1.Node
	if err := f.reader.Get(ctx, client.ObjectKey{Name: name}, &n, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get node %q: %w", name, err)
	}
	return &n, nil
}

// nodesIndexed returns the names of the cached Nodes index holds under key. Only names are
// read, so the Nodes are not copied.
func (f *cacheFacts) nodesIndexed(ctx context.Context, index, key string, opts ...client.ListOption) ([]string, error) {
	var nodes corev1.NodeList
	opts = append(opts, client.MatchingFields{index: key}, client.UnsafeDisableDeepCopy)
	if err := f.reader.List(ctx, &nodes, opts...); err != nil {
		return nil, fmt.Errorf("list nodes by %s %q: %w", index, key, err)
	}
	names := make([]string, 0, len(nodes.Items))
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	return names, nil
}

func (f *cacheFacts) AddressClaim(_ context.Context, key string) (policy.Claim, bool, error) {
	c, ok, synced := f.claims.Get(key)
	if !synced {
		// Who reported an address first is unknown until the record is read: hold.
		return policy.Claim{}, false, history.ErrNotSynced
	}
	return c, ok, nil
}

func (f *cacheFacts) NamespaceExists(ctx context.Context, name string) (bool, error) {
	ns := namespaceMetadata()
	if err := f.reader.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("get namespace %q: %w", name, err)
	}
	return true, nil
}

// namespaceMetadata is a Namespace read as metadata only: the cache keeps
// nothing else of Namespaces.
func namespaceMetadata() *metav1.PartialObjectMetadata {
	ns := &metav1.PartialObjectMetadata{}
	ns.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return ns
}

func (f *cacheFacts) Cluster(ctx context.Context) (policy.Cluster, error) {
	return f.cluster.Cluster(ctx)
}
