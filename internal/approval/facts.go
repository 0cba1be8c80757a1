package approval

import (
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"strconv"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/kube"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// csrNodeIndex indexes cached CSRs, but not denied or failed ones, by nodeBucket of the node that
// requested them; csrsOf finds a node's. An index by node name keeps a set per node, ~330 B for
// each node's one CSR at 10,000 nodes; a bucket's set holds the CSRs of nodes/nodeBuckets nodes.
const csrNodeIndex = "csrguard.spec.nodebucket"

// nodeBuckets is how many buckets csrNodeIndex spreads nodes over; a variable for tests.
var nodeBuckets uint64 = 2048

// bucketSeed is random per process, so that no node can choose to share another's bucket.
var bucketSeed = maphash.MakeSeed()

// nodeBucket returns csrNodeIndex's key for node.
func nodeBucket(node string) string {
	return strconv.FormatUint(maphash.String(bucketSeed, node)%nodeBuckets, 36)
}

// csrsOf returns the cached CSRs node requested, but denied or failed ones: csrNodeIndex's
// bucket of node, less the other nodes' CSRs. They are the cache's, not copies: read only.
func csrsOf(ctx context.Context, reader client.Reader, node string) ([]certificatesv1.CertificateSigningRequest, error) {
	var list certificatesv1.CertificateSigningRequestList
	if err := reader.List(ctx, &list, client.MatchingFields{csrNodeIndex: nodeBucket(node)}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("list the CSRs of node %q: %w", node, err)
	}
	return slices.DeleteFunc(list.Items, func(c certificatesv1.CertificateSigningRequest) bool {
		n, _ := servingcsr.NodeName(c.Spec.Username)
		return n != node
	}), nil
}

// cacheFacts answers the policy's lookups from the controller's caches and
// memory, so a decision costs no API request.
type cacheFacts struct {
	reader  client.Reader
	nodes   *nodes.Store
	cluster *kube.ClusterDiscovery
	claims  *history.Claims
}

// NewCacheFacts returns policy.Facts backed by reader (the manager's cache, for Namespaces),
// the Node store, the cluster discovery and the address claims.
func NewCacheFacts(reader client.Reader, nodes *nodes.Store, cluster *kube.ClusterDiscovery, claims *history.Claims) policy.Facts {
	return &cacheFacts{reader: reader, nodes: nodes, cluster: cluster, claims: claims}
}

func (f *cacheFacts) Node(_ context.Context, name string) (*policy.Node, error) {
	n, err := f.nodes.Get(name)
	if err != nil || n == nil {
		return nil, err
	}
	// A copy: the stored Node is shared.
	node := n.Node
	node.Addresses = slices.Clone(n.Addresses)
	node.Labels = maps.Clone(n.Labels)
	return &node, nil
}

func (f *cacheFacts) NodesWithAddress(_ context.Context, key string) ([]string, error) {
	return f.nodes.WithAddress(key)
}

func (f *cacheFacts) NodesUnderName(_ context.Context, name string, limit int) ([]string, error) {
	return f.nodes.UnderName(name, limit)
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
