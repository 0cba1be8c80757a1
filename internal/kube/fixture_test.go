package kube

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/metrics"
	"github.com/csrguard/csrguard/internal/policy"
)

// t0 is the fake clock's start.
var t0 = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// clusterText is a policy.Cluster in comparable text form.
type clusterText struct {
	APIServerAddresses []string
	APIServerNames     []string
	ServiceCIDRs       []string
}

func asText(c policy.Cluster) clusterText {
	t := clusterText{APIServerNames: c.APIServerNames}
	for _, a := range c.APIServerAddresses {
		t.APIServerAddresses = append(t.APIServerAddresses, a.String())
	}
	for _, p := range c.ServiceCIDRs {
		t.ServiceCIDRs = append(t.ServiceCIDRs, p.String())
	}
	return t
}

// Addresses the fake cluster reserves: the kubernetes Service's cluster IP, its endpoint and the
// ServiceCIDR.
const (
	apiServerClusterIP = "10.96.0.1"
	apiServerEndpoint  = "192.168.10.5"
	serviceCIDR        = "10.96.0.0/16"
)

// clusterObjects are what Discover reads from a cluster: the default/kubernetes Service, its
// EndpointSlice and a ServiceCIDR.
func clusterObjects() []client.Object {
	return []client.Object{
		kubernetesService(apiServerClusterIP),
		endpointSlice(metav1.NamespaceDefault, "kubernetes", "kubernetes", apiServerEndpoint),
		serviceCIDRObject("kubernetes", serviceCIDR),
	}
}

func kubernetesService(clusterIPs ...string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "kubernetes"},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIPs[0], ClusterIPs: clusterIPs},
	}
}

func endpointSlice(namespace, name, service string, addresses ...string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: addresses}},
	}
}

func serviceCIDRObject(name string, cidrs ...string) *networkingv1.ServiceCIDR {
	return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
}

// newDiscovery returns a ClusterDiscovery over reader, which also holds its
// record in namespace csrguard, adding static.
func newDiscovery(reader client.Client, static policy.Cluster, interval time.Duration) *ClusterDiscovery {
	return NewClusterDiscovery(DiscoveryConfig{
		Reader: reader, Store: history.NewStore(reader, reader, "csrguard"), Static: static,
		Interval: interval, Retention: SignerDefaultLifetime,
		Clock: clocktesting.NewFakeClock(t0), Metrics: metrics.New(),
	})
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}
