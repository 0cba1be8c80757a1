package approval

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/policy"
)

// clusterText is a policy.Cluster in comparable text form.
type clusterText struct {
	APIServerAddresses []string
	ServiceCIDRs       []string
}

func asText(c policy.Cluster) clusterText {
	var t clusterText
	for _, a := range c.APIServerAddresses {
		t.APIServerAddresses = append(t.APIServerAddresses, a.String())
	}
	for _, p := range c.ServiceCIDRs {
		t.ServiceCIDRs = append(t.ServiceCIDRs, p.String())
	}
	return t
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
		name    string
		objs    []client.Object
		funcs   interceptor.Funcs
		want    clusterText
		wantErr bool
	}{
		{
			name: "dual_stack",
			objs: []client.Object{
				kubernetesService("10.96.0.1", "10.96.0.1", "fd00:96::1"),
				endpointSlice("default", "kubernetes", "kubernetes", "192.168.10.6", "192.168.10.5"),
				endpointSlice("default", "kubernetes-ipv6", "kubernetes", "fd00::5"),
				serviceCIDRObject("kubernetes", "10.96.0.0/16", "fd00:96::/112"),
			},
			want: clusterText{
				APIServerAddresses: []string{"192.168.10.5", "192.168.10.6", "fd00::5"},
				ServiceCIDRs:       []string{"10.96.0.0/16", "10.96.0.1/32", "fd00:96::/112", "fd00:96::1/128"},
			},
		},
		{
			// Another Service's endpoints, or the label in another namespace, are not the API server.
			name: "other_endpoints_ignored",
			objs: []client.Object{
				kubernetesService("10.96.0.1"),
				endpointSlice("default", "kubernetes", "kubernetes", "192.168.10.5"),
				endpointSlice("default", "web", "web", "192.168.99.9"),
				endpointSlice("kube-system", "kubernetes", "kubernetes", "192.168.99.10"),
			},
			want: clusterText{APIServerAddresses: []string{"192.168.10.5"}, ServiceCIDRs: []string{"10.96.0.1/32"}},
		},
		{
			name: "normalised",
			objs: []client.Object{
				kubernetesService("::ffff:10.96.0.1", "None"),
				endpointSlice("default", "kubernetes", "kubernetes", "::ffff:192.168.10.5", "not-an-ip"),
				serviceCIDRObject("extra", "10.100.7.1/16", "nope"),
			},
			want: clusterText{
				APIServerAddresses: []string{"192.168.10.5"},
				ServiceCIDRs:       []string{"10.100.0.0/16", "10.96.0.1/32"},
			},
		},
		{
			// Clusters before 1.33 have no ServiceCIDR API; --service-cidrs covers them.
			name:  "servicecidr_no_match",
			objs:  []client.Object{kubernetesService("10.96.0.1")},
			funcs: failServiceCIDRList(&meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: networkingv1.GroupName, Kind: "ServiceCIDR"}, SearchedVersions: []string{"v1"}}),
			want:  clusterText{ServiceCIDRs: []string{"10.96.0.1/32"}},
		},
		{
			name:  "servicecidr_not_found",
			objs:  []client.Object{kubernetesService("10.96.0.1")},
			funcs: failServiceCIDRList(apierrors.NewNotFound(serviceCIDRs, "")),
			want:  clusterText{ServiceCIDRs: []string{"10.96.0.1/32"}},
		},
		{
			name:    "servicecidr_forbidden",
			objs:    []client.Object{kubernetesService("10.96.0.1")},
			funcs:   failServiceCIDRList(apierrors.NewForbidden(serviceCIDRs, "", errors.New("RBAC"))),
			wantErr: true,
		},
		{
			name:    "no_kubernetes_service",
			objs:    []client.Object{serviceCIDRObject("kubernetes", "10.96.0.0/16")},
			wantErr: true,
		},
		{
			name: "endpointslice_list_error",
			objs: []client.Object{kubernetesService("10.96.0.1")},
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
			got, _, err := Discover(t.Context(), reader, nil)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("Discover() error = %v, want error: %t", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			gotText := asText(got)
			slices.Sort(gotText.ServiceCIDRs) // Discover keeps list order; Refresh sorts
			if diff := cmp.Diff(gotText, tc.want); diff != "" {
				t.Errorf("Discover() mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestClusterDiscoveryBeforeRefresh(t *testing.T) {
	d := newDiscovery(fake.NewClientBuilder().WithObjects(clusterObjects()...).Build(), policy.Cluster{}, 0)
	if _, err := d.Cluster(t.Context()); !errors.Is(err, errNotYet) {
		t.Errorf("Cluster() error = %v, want one wrapping %v", err, errNotYet)
	}
}

func TestClusterDiscoveryRefreshAddsStatic(t *testing.T) {
	static := policy.Cluster{
		APIServerAddresses: []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr(apiServerClusterIP)},
		ServiceCIDRs:       []netip.Prefix{netip.MustParsePrefix(serviceCIDR), netip.MustParsePrefix("10.96.0.0/12")},
	}
	d := newDiscovery(fake.NewClientBuilder().WithObjects(clusterObjects()...).Build(), static, 0)
	refreshed, err := d.Refresh(t.Context())
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	got, err := d.Cluster(t.Context())
	if err != nil {
		t.Fatalf("Cluster() error = %v", err)
	}
	// Sorted, without the duplicates static shares with what was discovered.
	want := clusterText{
		APIServerAddresses: []string{apiServerClusterIP, apiServerEndpoint, "203.0.113.7"},
		ServiceCIDRs:       []string{"10.96.0.0/12", serviceCIDR, apiServerClusterIP + "/32"},
	}
	if diff := cmp.Diff(asText(got), want); diff != "" {
		t.Errorf("Cluster() mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(asText(refreshed), want); diff != "" {
		t.Errorf("Refresh() mismatch (-got +want):\n%s", diff)
	}
}

func TestClusterDiscoveryKeepsLastGood(t *testing.T) {
	var fail error
	reader := fake.NewClientBuilder().WithObjects(clusterObjects()...).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if fail != nil {
				return fail
			}
			return c.Get(ctx, key, obj, opts...)
		},
	}).Build()
	d := newDiscovery(reader, policy.Cluster{}, 0)

	fail = apierrors.NewServiceUnavailable("starting")
	if _, err := d.Refresh(t.Context()); err == nil {
		t.Fatal("Refresh() error = nil, want the read error")
	}
	// Before any success, the error says both what failed and that nothing is known yet.
	if _, err := d.Cluster(t.Context()); !errors.Is(err, errNotYet) || !errors.Is(err, fail) {
		t.Errorf("Cluster() error = %v, want one wrapping %v and %v", err, errNotYet, fail)
	}

	fail = nil
	if _, err := d.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	fail = apierrors.NewServiceUnavailable("outage")
	if _, err := d.Refresh(t.Context()); err == nil {
		t.Fatal("Refresh() error = nil, want the read error")
	}
	// A transient error must not un-reserve the API server's addresses.
	got, err := d.Cluster(t.Context())
	if err != nil {
		t.Fatalf("Cluster() after a failed refresh: error = %v", err)
	}
	want := clusterText{APIServerAddresses: []string{apiServerEndpoint}, ServiceCIDRs: []string{serviceCIDR, apiServerClusterIP + "/32"}}
	if diff := cmp.Diff(asText(got), want); diff != "" {
		t.Errorf("Cluster() after a failed refresh mismatch (-got +want):\n%s", diff)
	}
}

func TestClusterDiscoveryStart(t *testing.T) {
	d := newDiscovery(fake.NewClientBuilder().WithObjects(clusterObjects()...).Build(), policy.Cluster{}, 1<<62)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// Start refreshes once before it looks at ctx, then returns when ctx is done.
	if err := d.Start(ctx); err != nil {
		t.Fatalf("Start() error = %v", err)
	}
	if _, err := d.Cluster(t.Context()); err != nil {
		t.Errorf("Cluster() after Start error = %v", err)
	}
	if d.NeedLeaderElection() {
		t.Error("NeedLeaderElection() = true, want false: standbys keep facts warm")
	}
}

func TestCacheFactsNode(t *testing.T) {
	cache := newCache(nodeA())
	facts := NewCacheFacts(cache, discovered(t), claimsOf())

	got, err := facts.Node(t.Context(), "node-a")
	if err != nil {
		t.Fatalf("Node(node-a) error = %v", err)
	}
	want := &policy.Node{Name: "node-a", Addresses: nodeA().Status.Addresses}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Node(node-a) mismatch (-got +want):\n%s", diff)
	}

	// A missing Node is a fact (hold), not an error (retry).
	got, err = facts.Node(t.Context(), "node-x")
	if err != nil || got != nil {
		t.Errorf("Node(node-x) = %v, %v; want nil, nil", got, err)
	}

	failing := NewCacheFacts(fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return apierrors.NewServiceUnavailable("down")
		},
	}).Build(), discovered(t), claimsOf())
	if _, err := failing.Node(t.Context(), "node-a"); err == nil {
		t.Error("Node() on a failing reader: error = nil, want an error")
	}
}

func TestCacheFactsNodesWithAddress(t *testing.T) {
	cache := newCache(
		node("node-a", "Hostname=node-a", "InternalIP=10.0.0.10", "InternalDNS=Node-A.Example."),
		node("node-b", "Hostname=node-b", "InternalIP=::ffff:10.0.0.10"),
		node("node-c", "Hostname=node-c", "InternalIP=10.0.0.12"),
	)
	facts := NewCacheFacts(cache, discovered(t), claimsOf())
	tests := []struct {
		name string
		key  string
		want []string
	}{
		{"ip_of_two_nodes", "10.0.0.10", []string{"node-a", "node-b"}},
		{"dns_name_normalised", "node-a.example", []string{"node-a"}},
		{"hostname", "node-c", []string{"node-c"}},
		{"unknown", "10.0.0.99", []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := facts.NodesWithAddress(t.Context(), tc.key)
			if err != nil {
				t.Fatalf("NodesWithAddress(%q) error = %v", tc.key, err)
			}
			slices.Sort(got)
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("NodesWithAddress(%q) mismatch (-got +want):\n%s", tc.key, diff)
			}
		})
	}
}

func TestCacheFactsCluster(t *testing.T) {
	facts := NewCacheFacts(newCache(), discovered(t), claimsOf())
	got, err := facts.Cluster(t.Context())
	if err != nil {
		t.Fatalf("Cluster() error = %v", err)
	}
	want := clusterText{APIServerAddresses: []string{apiServerEndpoint}, ServiceCIDRs: []string{serviceCIDR, apiServerClusterIP + "/32"}}
	if diff := cmp.Diff(asText(got), want); diff != "" {
		t.Errorf("Cluster() mismatch (-got +want):\n%s", diff)
	}
}

func TestCacheFactsNodesUnderName(t *testing.T) {
	cache := newCache(node("web.dc1.example"), node("web.dc2.example"), node("web"), nodeA())
	facts := NewCacheFacts(cache, discovered(t), claimsOf())
	for _, tt := range []struct {
		name  string
		limit int
		want  []string
	}{
		{"web", 0, []string{"web", "web.dc1.example", "web.dc2.example"}},
		{"web.dc1", 0, []string{"web.dc1.example"}},
		{"web.dc1.example", 0, []string{"web.dc1.example"}},
		{"we", 0, []string{}},
		{"web.dc1.example.com", 0, []string{}},
	} {
		got, err := facts.NodesUnderName(t.Context(), tt.name, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("NodesUnderName(%q) (-got +want):\n%s", tt.name, diff)
		}
	}
	// Without the index the lookup fails, and the policy holds.
	plain := NewCacheFacts(fake.NewClientBuilder().WithObjects(nodeA()).Build(), discovered(t), claimsOf())
	if _, err := plain.NodesUnderName(t.Context(), "node-a", 2); err == nil {
		t.Error("NodesUnderName without the index: error = nil")
	}
}
