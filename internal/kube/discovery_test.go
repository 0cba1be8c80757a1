package kube

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

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
