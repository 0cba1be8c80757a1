package approval

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/csrguard/csrguard/internal/policy"
)

// nodeAddressIndex indexes cached Nodes by every address they report,
// normalised as policy.AddressKey does.
const nodeAddressIndex = "csrguard.status.addresses"

// csrNodeIndex indexes cached CSRs by the node that requested them.
const csrNodeIndex = "csrguard.spec.node"

// cacheFacts answers the policy's lookups from the controller's caches, so a
// decision costs no API request.
type cacheFacts struct {
	reader  client.Reader
	cluster *ClusterDiscovery
}

// NewCacheFacts returns policy.Facts backed by reader (a cache with the
// indexes Setup registers) and the cluster discovery.
func NewCacheFacts(reader client.Reader, cluster *ClusterDiscovery) policy.Facts {
	return &cacheFacts{reader: reader, cluster: cluster}
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
	var nodes corev1.NodeList
	if err := f.reader.List(ctx, &nodes, client.MatchingFields{nodeAddressIndex: key}); err != nil {
		return nil, fmt.Errorf("list nodes with address %q: %w", key, err)
	}
	names := make([]string, 0, len(nodes.Items))
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	return names, nil
}

func (f *cacheFacts) Cluster(ctx context.Context) (policy.Cluster, error) {
	return f.cluster.Cluster(ctx)
}

// ClusterDiscovery keeps the API server's addresses and the service CIDRs
// current: the kubernetes Service's cluster IPs, its EndpointSlices and the
// ServiceCIDR objects, plus addresses and ranges configured by flags. They
// change rarely, so it reads them directly every interval rather than
// watching them; until the first read succeeds, Cluster returns an error and
// every CSR is held.
type ClusterDiscovery struct {
	reader   client.Reader
	static   policy.Cluster
	interval time.Duration

	mu      sync.Mutex
	current *policy.Cluster
	lastErr error
}

// NewClusterDiscovery returns a discovery that reads with reader (an uncached
// API reader) every interval, adding static to what it finds.
func NewClusterDiscovery(reader client.Reader, static policy.Cluster, interval time.Duration) *ClusterDiscovery {
	return &ClusterDiscovery{reader: reader, static: static, interval: interval}
}

// Cluster returns the last discovered addresses, or an error before the
// first successful discovery.
func (d *ClusterDiscovery) Cluster(context.Context) (policy.Cluster, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current == nil {
		return policy.Cluster{}, fmt.Errorf("API server addresses and service CIDRs not discovered yet: %w", errors.Join(d.lastErr, errNotYet))
	}
	return *d.current, nil
}

var errNotYet = errors.New("discovery pending")

// Start refreshes until ctx ends; it is a manager.Runnable.
func (d *ClusterDiscovery) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("cluster-discovery")
	t := time.NewTicker(d.interval)
	defer t.Stop()
	var last policy.Cluster
	for {
		c, err := d.Refresh(ctx)
		if err != nil {
			// Keep the last good value: a transient error must not un-reserve
			// the API server's addresses.
			logger.Error(err, "Failed to discover API server addresses and service CIDRs")
		} else if !slices.Equal(c.APIServerAddresses, last.APIServerAddresses) || !slices.Equal(c.ServiceCIDRs, last.ServiceCIDRs) {
			logger.Info("Discovered reserved cluster addresses", "apiServerAddresses", c.APIServerAddresses, "serviceCIDRs", c.ServiceCIDRs)
			last = c
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// NeedLeaderElection is false: standby replicas keep facts warm for explain
// and a fast takeover.
func (d *ClusterDiscovery) NeedLeaderElection() bool { return false }

// Refresh reads the cluster once and stores the result.
func (d *ClusterDiscovery) Refresh(ctx context.Context) (policy.Cluster, error) {
	c, err := Discover(ctx, d.reader)
	if err == nil {
		c.APIServerAddresses = uniqueSorted(append(c.APIServerAddresses, d.static.APIServerAddresses...), netip.Addr.Compare)
		c.ServiceCIDRs = uniqueSorted(append(c.ServiceCIDRs, d.static.ServiceCIDRs...), comparePrefix)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastErr = err
	if err != nil {
		return policy.Cluster{}, err
	}
	d.current = &c
	return c, nil
}

// Discover reads the API server's addresses and the service CIDRs from the
// cluster: the default/kubernetes Service's cluster IPs and EndpointSlices,
// and every ServiceCIDR (absent on clusters older than 1.33, which is fine).
func Discover(ctx context.Context, reader client.Reader) (policy.Cluster, error) {
	var c policy.Cluster
	var svc corev1.Service
	if err := reader.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "kubernetes"}, &svc); err != nil {
		return c, fmt.Errorf("get service default/kubernetes: %w", err)
	}
	// The Service's cluster IPs are Service IPs, never a node's — not even a
	// control-plane node's, which may hold its own API server endpoint.
	for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if a, err := netip.ParseAddr(ip); err == nil {
			c.ServiceCIDRs = append(c.ServiceCIDRs, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	var slices discoveryv1.EndpointSliceList
	if err := reader.List(ctx, &slices, client.InNamespace(metav1.NamespaceDefault), client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}); err != nil {
		return c, fmt.Errorf("list endpointslices of service default/kubernetes: %w", err)
	}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			for _, ip := range e.Addresses {
				if a, err := netip.ParseAddr(ip); err == nil {
					c.APIServerAddresses = append(c.APIServerAddresses, a.Unmap())
				}
			}
		}
	}
	var cidrs networkingv1.ServiceCIDRList
	switch err := reader.List(ctx, &cidrs); {
	case err == nil:
		for _, s := range cidrs.Items {
			for _, cidr := range s.Spec.CIDRs {
				if p, err := netip.ParsePrefix(cidr); err == nil {
					c.ServiceCIDRs = append(c.ServiceCIDRs, p.Masked())
				}
			}
		}
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		// No ServiceCIDR API: only --service-cidr flags describe the range.
	default:
		return c, fmt.Errorf("list servicecidrs: %w", err)
	}
	c.APIServerAddresses = uniqueSorted(c.APIServerAddresses, netip.Addr.Compare)
	c.ServiceCIDRs = uniqueSorted(c.ServiceCIDRs, comparePrefix)
	return c, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func uniqueSorted[T comparable](s []T, cmp func(a, b T) int) []T {
	slices.SortFunc(s, cmp)
	return slices.Compact(s)
}
