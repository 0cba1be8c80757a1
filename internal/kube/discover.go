package kube

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
)

// Where an address or name of the API server was found.
const (
	SourceEndpointSlice = "endpointslice"
	SourceCertificate   = "certificate"
	SourceClusterInfo   = "cluster-info"
	SourceClient        = "client"
	SourceFlag          = "flag"
)

// Discover reads the API server's identity and the service CIDRs from every
// source the cluster offers, as they are now:
//   - the default/kubernetes Service's cluster IPs (Service IPs, reserved for
//     everyone) and its EndpointSlices (the API servers that are ready now);
//   - the API server's serving certificate, read with a TLS handshake through
//     apiServer: its IP and DNS SANs (the addresses and names clients verify
//     it by, including those of API servers that are not Nodes);
//   - the server URL in kube-public/cluster-info (kubeadm's bootstrap
//     kubeconfig) and apiServer's own host;
//   - every ServiceCIDR (absent before 1.33, or when --runtime-config turns
//     networking.k8s.io/v1 servicecidrs off).
//
// It also returns where each API server address and name was found, and
// whether the ServiceCIDR API is served (Found).
// Wildcard names in the certificate are left out: a node may hold a name under
// the wildcard's domain (its own FQDN), which the wildcard does not make the
// API server's. Failing
// to read the Service, its EndpointSlices or ServiceCIDRs is an error; the
// certificate and cluster-info are best effort (apiServer may be nil).
func Discover(ctx context.Context, reader client.Reader, apiServer *rest.Config) (policy.Cluster, Found, error) {
	var c policy.Cluster
	var found Found
	seen := map[string][]string{}
	add := func(host, source string) {
		if a, err := netip.ParseAddr(host); err == nil {
			c.APIServerAddresses = append(c.APIServerAddresses, a.Unmap())
			seen[a.Unmap().String()] = append(seen[a.Unmap().String()], source)
		} else if host = strings.ToLower(strings.TrimSuffix(host, ".")); host != "" && host[0] != '*' {
			c.APIServerNames = append(c.APIServerNames, host)
			seen[host] = append(seen[host], source)
		}
	}

	var svc corev1.Service
	if err := reader.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "kubernetes"}, &svc); err != nil {
		return c, found, fmt.Errorf("get service default/kubernetes: %w", err)
	}
	// The Service's cluster IPs are Service IPs, never a node's — not even a
	// control-plane node's, which may hold its own API server endpoint.
	for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if a, err := netip.ParseAddr(ip); err == nil {
			c.ServiceCIDRs = append(c.ServiceCIDRs, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	var endpoints discoveryv1.EndpointSliceList
	if err := reader.List(ctx, &endpoints, client.InNamespace(metav1.NamespaceDefault), client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}); err != nil {
		return c, found, fmt.Errorf("list endpointslices of service default/kubernetes: %w", err)
	}
	for _, s := range endpoints.Items {
		for _, e := range s.Endpoints {
			for _, ip := range e.Addresses {
				add(ip, SourceEndpointSlice)
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
		// No ServiceCIDR API: only the Service's own IPs and --service-cidrs
		// describe the range. Any other error (forbidden, unavailable) is
		// returned: a range that could not be read must hold, never approve.
		found.NoServiceCIDRAPI = true
	default:
		return c, found, fmt.Errorf("list servicecidrs: %w", err)
	}

	if apiServer != nil {
		if host := hostOf(apiServer.Host); host != "" {
			add(host, SourceClient)
		}
		for _, san := range servingCertSANs(ctx, apiServer) {
			add(san, SourceCertificate)
		}
	}
	for _, host := range clusterInfoHosts(ctx, reader) {
		add(host, SourceClusterInfo)
	}
	found.Sources = seen
	return Merge(c, nil, policy.Cluster{}), found, nil
}

// Found is what Discover learnt besides the facts the policy decides with.
type Found struct {
	// Sources says, for each API server address and name, where it was found
	// (the Source* constants).
	Sources map[string][]string
	// NoServiceCIDRAPI is true when the API server serves no ServiceCIDR
	// objects (Kubernetes before 1.33, or networking.k8s.io/v1 servicecidrs
	// turned off): the service range is then only the kubernetes Service's
	// own IPs and what --service-cidrs says.
	NoServiceCIDRAPI bool
}

// Merge returns found (what Discover read) with what remembered holds
// (csrguard's record of the API server's past addresses and names) and static
// (the --apiserver-addresses and --service-cidrs flags) added: addresses
// unmapped, prefixes masked, each list sorted and without duplicates. The
// controller and the commands run from a laptop merge this one way, so they
// decide on the same facts.
func Merge(found policy.Cluster, remembered history.Identity, static policy.Cluster) policy.Cluster {
	addrs, names := remembered.Split()
	var c policy.Cluster
	for _, a := range slices.Concat(found.APIServerAddresses, addrs, static.APIServerAddresses) {
		c.APIServerAddresses = append(c.APIServerAddresses, a.Unmap())
	}
	c.APIServerNames = slices.Concat(found.APIServerNames, names, static.APIServerNames)
	for _, p := range slices.Concat(found.ServiceCIDRs, static.ServiceCIDRs) {
		c.ServiceCIDRs = append(c.ServiceCIDRs, policy.NormalisePrefix(p.Masked()))
	}
	c.APIServerAddresses = uniqueSorted(c.APIServerAddresses, netip.Addr.Compare)
	c.APIServerNames = uniqueSorted(c.APIServerNames, cmp.Compare[string])
	c.ServiceCIDRs = uniqueSorted(c.ServiceCIDRs, comparePrefix)
	return c
}

// servingCertSANs returns the IP and DNS SANs of the certificate the API
// server at cfg presents, or nothing when it cannot be read.
func servingCertSANs(ctx context.Context, cfg *rest.Config) []string {
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Scheme != "https" {
		return nil
	}
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil || tlsCfg == nil {
		return nil
	}
	hostport := u.Host
	if u.Port() == "" {
		hostport = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tlsCfg}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	if len(state.PeerCertificates) == 0 {
		return nil
	}
	leaf := state.PeerCertificates[0]
	sans := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		sans = append(sans, ip.String())
	}
	return sans
}

// clusterInfoHosts returns the hosts of the server URLs in kube-public/cluster-info,
// the bootstrap kubeconfig kubeadm publishes; nothing when it is absent or unreadable.
func clusterInfoHosts(ctx context.Context, reader client.Reader) []string {
	var cm corev1.ConfigMap
	if err := reader.Get(ctx, client.ObjectKey{Namespace: metav1.NamespacePublic, Name: "cluster-info"}, &cm); err != nil {
		return nil
	}
	kc, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		return nil
	}
	var hosts []string
	for _, cl := range kc.Clusters {
		if h := hostOf(cl.Server); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// hostOf returns the host of a URL, lowercased; "" when it has none.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return policy.AddressKey(u.Hostname())
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
