// Package kubetest builds the cluster objects package kube discovers the API
// server's identity and the service CIDRs from, for tests of kube and of the
// packages that read the cluster through it.
package kubetest

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/policy"
)

// Addresses the fake cluster of ClusterObjects reserves: the kubernetes
// Service's cluster IP, its endpoint and the ServiceCIDR.
const (
	APIServerClusterIP = "10.96.0.1"
	APIServerEndpoint  = "192.168.10.5"
	ServiceCIDR        = "10.96.0.0/16"
)

// ClusterObjects are what kube.Discover reads from a cluster: the
// default/kubernetes Service, its EndpointSlice and a ServiceCIDR.
func ClusterObjects() []client.Object {
	return []client.Object{
		KubernetesService(APIServerClusterIP),
		EndpointSlice(metav1.NamespaceDefault, "kubernetes", "kubernetes", APIServerEndpoint),
		ServiceCIDRObject("kubernetes", ServiceCIDR),
	}
}

// KubernetesService is the default/kubernetes Service with clusterIPs (at least one).
func KubernetesService(clusterIPs ...string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "kubernetes"},
		Spec:       corev1.ServiceSpec{ClusterIP: clusterIPs[0], ClusterIPs: clusterIPs},
	}
}

// EndpointSlice is an IPv4 EndpointSlice of service with one endpoint holding addresses.
func EndpointSlice(namespace, name, service string, addresses ...string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: addresses}},
	}
}

// ServiceCIDRObject is a ServiceCIDR object holding cidrs.
func ServiceCIDRObject(name string, cidrs ...string) *networkingv1.ServiceCIDR {
	return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
}

// ClusterText is a policy.Cluster in comparable text form.
type ClusterText struct {
	APIServerAddresses []string
	APIServerNames     []string
	ServiceCIDRs       []string
}

// AsText returns c as ClusterText.
func AsText(c policy.Cluster) ClusterText {
	t := ClusterText{APIServerNames: c.APIServerNames}
	for _, a := range c.APIServerAddresses {
		t.APIServerAddresses = append(t.APIServerAddresses, a.String())
	}
	for _, p := range c.ServiceCIDRs {
		t.ServiceCIDRs = append(t.ServiceCIDRs, p.String())
	}
	return t
}
