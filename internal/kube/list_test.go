package kube

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/servingcsr/csrtest"
)

// pageSize is how many items the fake API servers below return per page,
// whatever limit was asked: a server may return fewer.
const pageSize = 2

// pagedList serves a list of n items in pages of pageSize, the continue token
// being the index of the next item, and records each request's options.
// A continue token in expired is refused as expired, as the API server does
// once etcd compacted the revision it points at.
type pagedList struct {
	n        int
	expired  map[string]bool
	requests []string
}

// page returns the bounds of the page opts asks for, and the next token.
func (p *pagedList) page(opts metav1.ListOptions) (from, to int, next string, err error) {
	p.requests = append(p.requests, fmt.Sprintf("limit=%d continue=%q", opts.Limit, opts.Continue))
	if p.expired[opts.Continue] {
		return 0, 0, "", apierrors.NewResourceExpired("continue token expired")
	}
	if opts.Continue != "" {
		from, _ = strconv.Atoi(opts.Continue)
	}
	to = p.n
	if opts.Limit > 0 {
		to = min(from+pageSize, p.n)
	}
	if to < p.n {
		next = strconv.Itoa(to)
	}
	return from, to, next, nil
}

func TestListNodes(t *testing.T) {
	// Out of order, as a server may return them.
	names := []string{"node-e", "node-c", "node-a", "node-d", "node-b"}
	tests := []struct {
		name         string
		expired      map[string]bool
		wantRequests []string
	}{
		{
			name:         "pages",
			wantRequests: []string{`limit=500 continue=""`, `limit=500 continue="2"`, `limit=500 continue="4"`},
		},
		{
			// A read that outlives its continue token starts over with one full list.
			name:         "expired_continue_lists_in_full",
			expired:      map[string]bool{"4": true},
			wantRequests: []string{`limit=500 continue=""`, `limit=500 continue="2"`, `limit=500 continue="4"`, `limit=0 continue=""`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &pagedList{n: len(names), expired: tc.expired}
			cs := fake.NewClientset()
			cs.PrependReactor("list", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
				from, to, next, err := p.page(a.(k8stesting.ListActionImpl).GetListOptions())
				list := &corev1.NodeList{ListMeta: metav1.ListMeta{Continue: next}}
				for _, n := range names[from:to] {
					list.Items = append(list.Items, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
				}
				return true, list, err
			})
			nodes, err := ListNodes(t.Context(), cs)
			if err != nil {
				t.Fatalf("ListNodes() error = %v", err)
			}
			var got []string
			for _, n := range nodes {
				got = append(got, n.Name)
			}
			if diff := cmp.Diff(got, []string{"node-a", "node-b", "node-c", "node-d", "node-e"}); diff != "" {
				t.Errorf("ListNodes() names (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(p.requests, tc.wantRequests); diff != "" {
				t.Errorf("requests (-got +want):\n%s", diff)
			}
		})
	}
}

func TestListNodesError(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	if _, err := ListNodes(t.Context(), cs); err == nil || !strings.HasPrefix(err.Error(), "list nodes: ") {
		t.Errorf("ListNodes() error = %v, want a list nodes error", err)
	}
}

func TestListServingCSRs(t *testing.T) {
	created := time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)
	csrs := []certificatesv1.CertificateSigningRequest{
		*csrtest.New(t, csrtest.Name("csr-late"), csrtest.CreatedAt(created.Add(time.Minute))),
		*csrtest.New(t, csrtest.Name("csr-b"), csrtest.CreatedAt(created)),
		// Another signer's CSR: a server that ignores the field selector returns it.
		*csrtest.New(t, csrtest.Name("csr-client"), csrtest.SignerName(certificatesv1.KubeAPIServerClientKubeletSignerName)),
		*csrtest.New(t, csrtest.Name("csr-a"), csrtest.CreatedAt(created)),
	}
	p := &pagedList{n: len(csrs)}
	var selectors []string
	cs := fake.NewClientset()
	cs.PrependReactor("list", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		opts := a.(k8stesting.ListActionImpl).GetListOptions()
		selectors = append(selectors, opts.FieldSelector)
		from, to, next, err := p.page(opts)
		return true, &certificatesv1.CertificateSigningRequestList{ListMeta: metav1.ListMeta{Continue: next}, Items: csrs[from:to]}, err
	})
	got, err := ListServingCSRs(t.Context(), cs)
	if err != nil {
		t.Fatalf("ListServingCSRs() error = %v", err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Name)
	}
	// By creation, then name; the client-certificate CSR left out.
	if diff := cmp.Diff(names, []string{"csr-a", "csr-b", "csr-late"}); diff != "" {
		t.Errorf("ListServingCSRs() names (-got +want):\n%s", diff)
	}
	want := "spec.signerName=" + certificatesv1.KubeletServingSignerName
	if diff := cmp.Diff(selectors, []string{want, want}); diff != "" {
		t.Errorf("field selectors (-got +want):\n%s", diff)
	}
}

func TestListNamespaces(t *testing.T) {
	names := []string{"default", "kube-system", "csrguard"}
	p := &pagedList{n: len(names)}
	reader := crfake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		List: func(_ context.Context, _ client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			lo := (&client.ListOptions{}).ApplyOptions(opts)
			from, to, next, err := p.page(metav1.ListOptions{Limit: lo.Limit, Continue: lo.Continue})
			l := list.(*metav1.PartialObjectMetadataList)
			if kind := l.GetObjectKind().GroupVersionKind().Kind; kind != "NamespaceList" {
				return fmt.Errorf("listed %s, want NamespaceList", kind)
			}
			l.Continue = next
			for _, n := range names[from:to] {
				l.Items = append(l.Items, metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: n}})
			}
			return err
		},
	}).Build()
	got, err := listNamespaces(t.Context(), reader)
	if err != nil {
		t.Fatalf("listNamespaces() error = %v", err)
	}
	if diff := cmp.Diff(got, names); diff != "" {
		t.Errorf("listNamespaces() (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(p.requests, []string{`limit=500 continue=""`, `limit=500 continue="2"`}); diff != "" {
		t.Errorf("requests (-got +want):\n%s", diff)
	}
}
