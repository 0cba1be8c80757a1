package approval

import (
	"context"
	"fmt"
	"net/netip"
	"sort"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/policy"
	"github.com/csrguard/csrguard/internal/servingcsr"
)

// ReadSnapshot reads, once, what the controller decides with, for commands
// that decide from a laptop (explain, approve, doctor, preflight): the given
// Nodes, the Namespaces, the API server's identity and the service CIDRs
// (Discover, what csrguard's record in namespace remembers, and static), and
// the address claims csrguard recorded there. reader should be uncached.
//
// Failing to read the record is an error, not an empty record: without it an
// address the API server once had, or the owner of a squatted address, is
// unknown, and the policy would decide on less than the controller knows. An
// absent record (csrguard never ran there) is empty.
func ReadSnapshot(ctx context.Context, reader client.Reader, apiServer *rest.Config, namespace string, static policy.Cluster, nodes []corev1.Node) (policy.Snapshot, error) {
	s := policy.Snapshot{Nodes: policy.FromNodes(nodes)}
	var err error
	if s.Namespaces, err = listNamespaces(ctx, reader); err != nil {
		return s, err
	}
	cluster, _, err := Discover(ctx, reader, apiServer)
	if err != nil {
		return s, fmt.Errorf("discover API server addresses and service CIDRs (needed to decide safely): %w", err)
	}
	store := history.NewStore(reader, nil, namespace)
	identity, err := store.LoadIdentity(ctx)
	if err != nil {
		return s, fmt.Errorf("read csrguard's record of the API server's addresses: %w", err)
	}
	// Unusable entries are left out (LoadClaims): they can only make the policy stricter.
	if s.Claims, _, err = store.LoadClaims(ctx); err != nil {
		return s, fmt.Errorf("read csrguard's record of address claims: %w", err)
	}
	addrs, names := identity.Split()
	cluster.APIServerAddresses = uniqueSorted(append(append(cluster.APIServerAddresses, addrs...), static.APIServerAddresses...), netip.Addr.Compare)
	cluster.APIServerNames = uniqueSorted(append(cluster.APIServerNames, names...), compareString)
	cluster.ServiceCIDRs = uniqueSorted(append(cluster.ServiceCIDRs, static.ServiceCIDRs...), comparePrefix)
	s.Cluster = cluster
	return s, nil
}

// listNamespaces lists the names of every Namespace, as metadata only.
func listNamespaces(ctx context.Context, reader client.Reader) ([]string, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	var names []string
	opts := &client.ListOptions{Limit: 500}
	for {
		if err := reader.List(ctx, list, opts); err != nil {
			return nil, fmt.Errorf("list namespaces: %w", err)
		}
		for _, ns := range list.Items {
			names = append(names, ns.Name)
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return names, nil
		}
	}
}

// ListNodes lists every Node, in pages, sorted by name.
func ListNodes(ctx context.Context, cs kubernetes.Interface) ([]corev1.Node, error) {
	var out []corev1.Node
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := cs.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, list.Items...)
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ListServingCSRs lists every kubelet-serving CSR, in pages, sorted by SortCSRs.
func ListServingCSRs(ctx context.Context, cs kubernetes.Interface) ([]certificatesv1.CertificateSigningRequest, error) {
	var out []certificatesv1.CertificateSigningRequest
	opts := metav1.ListOptions{Limit: 500, FieldSelector: "spec.signerName=" + servingcsr.SignerName}
	for {
		list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list kubelet-serving certificatesigningrequests: %w", err)
		}
		for _, csr := range list.Items {
			// The field selector already filters; clients that ignore it
			// (fakes, proxies) must not bring other signers in.
			if servingcsr.InScope(&csr) {
				out = append(out, csr)
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	SortCSRs(out)
	return out, nil
}

// SortCSRs orders CSRs by creation time, then name.
func SortCSRs(csrs []certificatesv1.CertificateSigningRequest) {
	sort.SliceStable(csrs, func(i, j int) bool {
		a, b := csrs[i].CreationTimestamp.Time, csrs[j].CreationTimestamp.Time
		if !a.Equal(b) {
			return a.Before(b)
		}
		return csrs[i].Name < csrs[j].Name
	})
}
