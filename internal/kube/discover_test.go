package kube

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/kube/kubetest"
	"github.com/csrguard/csrguard/internal/policy"
)

// failServiceCIDRList makes listing ServiceCIDRs fail with err.
func failServiceCIDRList(err error) interceptor.Funcs {
	return interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		if _, ok := list.(*networkingv1.ServiceCIDRList); ok {
			return err
		}
		return c.List(ctx, list, opts...)
	}}
}

func TestDiscover(t *testing.T) {
	serviceCIDRs := schema.GroupResource{Group: networkingv1.GroupName, Resource: "servicecidrs"}
	tests := []struct {
		name  string
		objs  []client.Object
		funcs interceptor.Funcs
		want  kubetest.ClusterText
		// wantNoAPI is Found.NoServiceCIDRAPI.
		wantNoAPI bool
		wantErr   bool
	}{
		{
			name: "dual_stack",
			objs: []client.Object{
				kubetest.KubernetesService("10.96.0.1", "10.96.0.1", "fd00:96::1"),
				kubetest.EndpointSlice("default", "kubernetes", "kubernetes", "192.168.10.6", "192.168.10.5"),
				kubetest.EndpointSlice("default", "kubernetes-ipv6", "kubernetes", "fd00::5"),
				kubetest.ServiceCIDRObject("kubernetes", "10.96.0.0/16", "fd00:96::/112"),
			},
			want: kubetest.ClusterText{
				APIServerAddresses: []string{"192.168.10.5", "192.168.10.6", "fd00::5"},
				ServiceCIDRs:       []string{"10.96.0.0/16", "10.96.0.1/32", "fd00:96::/112", "fd00:96::1/128"},
			},
		},
		{
			// Another Service's endpoints, or the label in another namespace, are not the API server.
			name: "other_endpoints_ignored",
			objs: []client.Object{
				kubetest.KubernetesService("10.96.0.1"),
				kubetest.EndpointSlice("default", "kubernetes", "kubernetes", "192.168.10.5"),
				kubetest.EndpointSlice("default", "web", "web", "192.168.99.9"),
				kubetest.EndpointSlice("kube-system", "kubernetes", "kubernetes", "192.168.99.10"),
			},
			want: kubetest.ClusterText{APIServerAddresses: []string{"192.168.10.5"}, ServiceCIDRs: []string{"10.96.0.1/32"}},
		},
		{
			name: "normalised",
			objs: []client.Object{
				kubetest.KubernetesService("::ffff:10.96.0.1", "None"),
				kubetest.EndpointSlice("default", "kubernetes", "kubernetes", "::ffff:192.168.10.5", "not-an-ip"),
				kubetest.ServiceCIDRObject("extra", "10.100.7.1/16", "nope"),
			},
			// An endpoint that is no IP is taken for a name: reserving it is the safe side.
			want: kubetest.ClusterText{
				APIServerAddresses: []string{"192.168.10.5"},
				APIServerNames:     []string{"not-an-ip"},
				ServiceCIDRs:       []string{"10.100.0.0/16", "10.96.0.1/32"},
			},
		},
		{
			// Clusters before 1.33 have no ServiceCIDR API; --service-cidrs covers them.
			name:      "servicecidr_no_match",
			objs:      []client.Object{kubetest.KubernetesService("10.96.0.1")},
			funcs:     failServiceCIDRList(&meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: networkingv1.GroupName, Kind: "ServiceCIDR"}, SearchedVersions: []string{"v1"}}),
			want:      kubetest.ClusterText{ServiceCIDRs: []string{"10.96.0.1/32"}},
			wantNoAPI: true,
		},
		{
			name:      "servicecidr_not_found",
			objs:      []client.Object{kubetest.KubernetesService("10.96.0.1")},
			funcs:     failServiceCIDRList(apierrors.NewNotFound(serviceCIDRs, "")),
			want:      kubetest.ClusterText{ServiceCIDRs: []string{"10.96.0.1/32"}},
			wantNoAPI: true,
		},
		{
			name:    "servicecidr_forbidden",
			objs:    []client.Object{kubetest.KubernetesService("10.96.0.1")},
			funcs:   failServiceCIDRList(apierrors.NewForbidden(serviceCIDRs, "", errors.New("RBAC"))),
			wantErr: true,
		},
		{
			name:    "no_kubernetes_service",
			objs:    []client.Object{kubetest.ServiceCIDRObject("kubernetes", "10.96.0.0/16")},
			wantErr: true,
		},
		{
			name: "endpointslice_list_error",
			objs: []client.Object{kubetest.KubernetesService("10.96.0.1")},
			funcs: interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				if _, ok := list.(*discoveryv1.EndpointSliceList); ok {
					return apierrors.NewServiceUnavailable("etcd is down")
				}
				return c.List(ctx, list, opts...)
			}},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reader := fake.NewClientBuilder().WithObjects(tc.objs...).WithInterceptorFuncs(tc.funcs).Build()
			got, found, err := Discover(t.Context(), reader, nil)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("Discover() error = %v, want error: %t", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			gotText := kubetest.AsText(got)
			slices.Sort(gotText.ServiceCIDRs) // Discover keeps list order; Refresh sorts
			if diff := cmp.Diff(gotText, tc.want); diff != "" {
				t.Errorf("Discover() mismatch (-got +want):\n%s", diff)
			}
			if found.NoServiceCIDRAPI != tc.wantNoAPI {
				t.Errorf("Discover() NoServiceCIDRAPI = %t, want %t", found.NoServiceCIDRAPI, tc.wantNoAPI)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	sighting := history.Sighting{FirstSeen: t0, LastSeen: t0, Sources: []string{SourceEndpointSlice}}
	tests := []struct {
		name       string
		found      policy.Cluster
		remembered history.Identity
		static     policy.Cluster
		want       kubetest.ClusterText
	}{
		{name: "nothing"},
		{
			name:  "found_only_is_sorted",
			found: policy.Cluster{APIServerAddresses: addrs("10.0.0.2", "10.0.0.1", "10.0.0.2"), APIServerNames: []string{"b.example", "a.example"}},
			want:  kubetest.ClusterText{APIServerAddresses: []string{"10.0.0.1", "10.0.0.2"}, APIServerNames: []string{"a.example", "b.example"}},
		},
		{
			// One address or range found, remembered and passed as a flag is
			// listed once, whatever form it came in.
			name: "duplicates_across_sources",
			found: policy.Cluster{
				APIServerAddresses: addrs("10.0.0.2", "10.0.0.1"),
				APIServerNames:     []string{"api.example"},
				ServiceCIDRs:       prefixes("10.96.0.0/16", "10.96.0.1/32"),
			},
			remembered: history.Identity{"10.0.0.1": sighting, "10.0.0.9": sighting, "api.example": sighting, "old-api.example": sighting},
			static: policy.Cluster{
				APIServerAddresses: addrs("::ffff:10.0.0.2", "203.0.113.7", "fd00::1"),
				ServiceCIDRs:       prefixes("10.96.0.0/16", "10.96.5.5/12", "::ffff:10.100.0.0/112"),
			},
			want: kubetest.ClusterText{
				APIServerAddresses: []string{"10.0.0.1", "10.0.0.2", "10.0.0.9", "203.0.113.7", "fd00::1"},
				APIServerNames:     []string{"api.example", "old-api.example"},
				ServiceCIDRs:       []string{"10.96.0.0/12", "10.96.0.0/16", "10.96.0.1/32", "10.100.0.0/16"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := kubetest.AsText(tc.found)
			if diff := cmp.Diff(kubetest.AsText(Merge(tc.found, tc.remembered, tc.static)), tc.want); diff != "" {
				t.Errorf("Merge() mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(kubetest.AsText(tc.found), before); diff != "" {
				t.Errorf("Merge() changed its input (-got +want):\n%s", diff)
			}
		})
	}
}
