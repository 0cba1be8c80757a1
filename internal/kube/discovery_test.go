package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/csrguard/csrguard/internal/history"
	"github.com/csrguard/csrguard/internal/kube/kubetest"
	"github.com/csrguard/csrguard/internal/policy"
)

func TestClusterDiscoveryBeforeRefresh(t *testing.T) {
	d := newDiscovery(fake.NewClientBuilder().WithObjects(kubetest.ClusterObjects()...).Build(), policy.Cluster{}, 0)
	if _, err := d.Cluster(t.Context()); !errors.Is(err, errNotYet) {
		t.Errorf("Cluster() error = %v, want one wrapping %v", err, errNotYet)
	}
}

func TestClusterDiscoveryRefreshAddsStatic(t *testing.T) {
	static := policy.Cluster{
		APIServerAddresses: addrs("203.0.113.7", kubetest.APIServerClusterIP),
		ServiceCIDRs:       prefixes(kubetest.ServiceCIDR, "10.96.0.0/12"),
	}
	reader := fake.NewClientBuilder().WithObjects(kubetest.ClusterObjects()...).Build()
	d := newDiscovery(reader, static, 0)
	refreshed, err := d.Refresh(t.Context())
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	got, err := d.Cluster(t.Context())
	if err != nil {
		t.Fatalf("Cluster() error = %v", err)
	}
	// Sorted, without the duplicates static shares with what was discovered.
	want := kubetest.ClusterText{
		APIServerAddresses: []string{kubetest.APIServerClusterIP, kubetest.APIServerEndpoint, "203.0.113.7"},
		ServiceCIDRs:       []string{"10.96.0.0/12", kubetest.ServiceCIDR, kubetest.APIServerClusterIP + "/32"},
	}
	if diff := cmp.Diff(kubetest.AsText(got), want); diff != "" {
		t.Errorf("Cluster() mismatch (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(kubetest.AsText(refreshed), want); diff != "" {
		t.Errorf("Refresh() mismatch (-got +want):\n%s", diff)
	}
	// A flag's address is remembered too: removing the flag later must not
	// hand the address to a node before the retention ends.
	identity, err := history.NewStore(reader, nil, "csrguard").LoadIdentity(t.Context())
	if err != nil {
		t.Fatalf("LoadIdentity() error = %v", err)
	}
	if got := identity["203.0.113.7"].Sources; !slices.Equal(got, []string{SourceFlag}) {
		t.Errorf("sources of the flag's address = %q, want [%s]", got, SourceFlag)
	}
}

func TestClusterDiscoveryKeepsLastGood(t *testing.T) {
	var fail error
	reader := fake.NewClientBuilder().WithObjects(kubetest.ClusterObjects()...).WithInterceptorFuncs(interceptor.Funcs{
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
	want := kubetest.ClusterText{APIServerAddresses: []string{kubetest.APIServerEndpoint}, ServiceCIDRs: []string{kubetest.ServiceCIDR, kubetest.APIServerClusterIP + "/32"}}
	if diff := cmp.Diff(kubetest.AsText(got), want); diff != "" {
		t.Errorf("Cluster() after a failed refresh mismatch (-got +want):\n%s", diff)
	}
}

func TestClusterDiscoveryStart(t *testing.T) {
	d := newDiscovery(fake.NewClientBuilder().WithObjects(kubetest.ClusterObjects()...).Build(), policy.Cluster{}, 1<<62)
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

// A control plane without the ServiceCIDR API (before 1.33, or turned off)
// is said once, in the log and in csrguard_servicecidr_api_missing, and the
// range comes from --service-cidrs; the API appearing later is said too.
func TestClusterDiscoveryNoServiceCIDRAPI(t *testing.T) {
	var missing bool
	reader := fake.NewClientBuilder().WithObjects(kubetest.KubernetesService(kubetest.APIServerClusterIP)).WithInterceptorFuncs(interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*networkingv1.ServiceCIDRList); ok && missing {
				return &meta.NoKindMatchError{GroupKind: networkingv1.SchemeGroupVersion.WithKind("ServiceCIDR").GroupKind(), SearchedVersions: []string{"v1"}}
			}
			return c.List(ctx, list, opts...)
		},
	}).Build()
	var logged []string
	ctx := log.IntoContext(t.Context(), funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{}))
	d := newDiscovery(reader, policy.Cluster{ServiceCIDRs: prefixes("10.96.0.0/12")}, 0)

	gauge := func(v int) string {
		return fmt.Sprintf("# HELP csrguard_servicecidr_api_missing %s\n# TYPE csrguard_servicecidr_api_missing gauge\ncsrguard_servicecidr_api_missing %d\n",
			"1 while the API server serves no ServiceCIDR objects (before Kubernetes 1.33, or turned off): the service range is only the kubernetes Service's IPs and --service-cidrs, else 0.", v)
	}
	missing = true
	for range 2 {
		got, err := d.Refresh(ctx)
		if err != nil {
			t.Fatalf("Refresh() error = %v", err)
		}
		want := kubetest.ClusterText{ServiceCIDRs: []string{"10.96.0.0/12", kubetest.APIServerClusterIP + "/32"}}
		if diff := cmp.Diff(kubetest.AsText(got), want); diff != "" {
			t.Errorf("Refresh() mismatch (-got +want):\n%s", diff)
		}
	}
	if err := testutil.CollectAndCompare(d.errs.ServiceCIDRAPIMissing, strings.NewReader(gauge(1))); err != nil {
		t.Error(err)
	}
	wantLog := []string{`"level"=0 "msg"="The API server serves no ServiceCIDR objects: the service range is taken from --service-cidrs" "serviceCIDRs"=["10.96.0.0/12"]`}
	if diff := cmp.Diff(logged, wantLog); diff != "" {
		t.Errorf("log after two refreshes without the API (-got +want):\n%s", diff)
	}

	missing, logged = false, nil
	if _, err := d.Refresh(ctx); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if err := testutil.CollectAndCompare(d.errs.ServiceCIDRAPIMissing, strings.NewReader(gauge(0))); err != nil {
		t.Error(err)
	}
	wantLog = []string{`"level"=0 "msg"="Found the ServiceCIDR API; reading the service range from it again"`}
	if diff := cmp.Diff(logged, wantLog); diff != "" {
		t.Errorf("log after the API appeared (-got +want):\n%s", diff)
	}
}
