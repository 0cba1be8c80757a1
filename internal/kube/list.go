// Package kube reads the cluster: the facts csrguard decides and diagnoses
// with, read one way for the controller and for the commands run from a
// laptop (explain, approve, doctor, certs, preflight).
//
// It owns the discovery of the API server's identity and the service CIDRs
// (Discover, and ClusterDiscovery, which keeps them current and remembered in
// csrguard's history record), the merging of static flag values into what
// was discovered (Merge), the listing of Nodes and kubelet-serving CSRs in
// pages (ListNodes, ListServingCSRs), and the one read of everything the
// policy looks up that laptop commands decide with (ReadSnapshot). It decides
// nothing (package policy does); a CSR's state and approval time are package
// servingcsr's (StateOf, ApprovedAt); the controller's caches and their
// indexes are package approval's.
package kube

import (
	"context"
	"fmt"
	"sort"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/csrguard/csrguard/internal/servingcsr"
)

// ListNodes lists every Node, in pages, sorted by name.
func ListNodes(ctx context.Context, cs kubernetes.Interface) ([]corev1.Node, error) {
	nodes, err := listAll[corev1.Node](ctx, metav1.ListOptions{}, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return cs.CoreV1().Nodes().List(ctx, opts)
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	return nodes, nil
}

// ListServingCSRs lists every kubelet-serving CSR, in pages, sorted by SortCSRs.
func ListServingCSRs(ctx context.Context, cs kubernetes.Interface) ([]certificatesv1.CertificateSigningRequest, error) {
	opts := metav1.ListOptions{FieldSelector: "spec.signerName=" + servingcsr.SignerName}
	all, err := listAll[certificatesv1.CertificateSigningRequest](ctx, opts, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return cs.CertificatesV1().CertificateSigningRequests().List(ctx, opts)
	})
	if err != nil {
		return nil, fmt.Errorf("list kubelet-serving certificatesigningrequests: %w", err)
	}
	// The field selector already filters; clients that ignore it (fakes,
	// proxies) must not bring other signers in.
	var csrs []certificatesv1.CertificateSigningRequest
	for i := range all {
		if servingcsr.InScope(&all[i]) {
			csrs = append(csrs, all[i])
		}
	}
	SortCSRs(csrs)
	return csrs, nil
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

// listNamespaces lists the names of every Namespace, as metadata only, in pages.
func listNamespaces(ctx context.Context, reader client.Reader) ([]string, error) {
	all, err := listAll[metav1.PartialObjectMetadata](ctx, metav1.ListOptions{}, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
		err := reader.List(ctx, list, &client.ListOptions{Limit: opts.Limit, Continue: opts.Continue})
		return list, err
	})
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	names := make([]string, 0, len(all))
	for _, ns := range all {
		names = append(names, ns.Name)
	}
	return names, nil
}

// listAll returns every item page lists, read with client-go's pager: pages of
// 500, and one full list instead when a continue token expires midway (a long
// read of a large cluster), rather than an error.
func listAll[T any](ctx context.Context, opts metav1.ListOptions, page pager.ListPageFunc) ([]T, error) {
	list, _, err := pager.New(page).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	var items []T
	err = meta.EachListItem(list, func(o runtime.Object) error {
		item, ok := any(o).(*T)
		if !ok {
			return fmt.Errorf("list holds a %T, want a %T", o, item)
		}
		items = append(items, *item)
		return nil
	})
	return items, err
}
