package approval

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/csrguard/csrguard/internal/kube/kubetest"
	"github.com/csrguard/csrguard/internal/policy"
)

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
	// The lookups that get a Node by its name first fail as well.
	if _, err := failing.NodesWithAddress(t.Context(), "node-a"); err == nil {
		t.Error("NodesWithAddress() on a failing reader: error = nil, want an error")
	}
	if _, err := failing.NodesUnderName(t.Context(), "node-a", 2); err == nil {
		t.Error("NodesUnderName() on a failing reader: error = nil, want an error")
	}
}

func TestCacheFactsNodesWithAddress(t *testing.T) {
	cache := newCache(
		node("node-a", "Hostname=node-a", "InternalIP=10.0.0.10", "InternalDNS=Node-A.Example."),
		node("node-b", "Hostname=node-b", "InternalIP=::ffff:10.0.0.10"),
		node("node-c", "Hostname=node-c", "InternalIP=10.0.0.12"),
		node("node-d", "InternalIP=10.0.0.13"),
		node("node-e", "Hostname=node-d", "InternalDNS=node-c", "InternalIP=10.0.0.14"),
	)
	facts := NewCacheFacts(cache, discovered(t), claimsOf())
	tests := []struct {
		name string
		key  string
		want []string
	}{
		{"ip_of_two_nodes", "10.0.0.10", []string{"node-a", "node-b"}},
		{"dns_name_normalised", "node-a.example", []string{"node-a"}},
		{"hostname", "node-c", []string{"node-c", "node-e"}},
		// A Node's name is not one of its addresses unless it reports it.
		{"name_not_reported", "node-d", []string{"node-e"}},
		{"name_only", "node-e", []string{}},
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
	want := kubetest.ClusterText{APIServerAddresses: []string{kubetest.APIServerEndpoint}, ServiceCIDRs: []string{kubetest.ServiceCIDR, kubetest.APIServerClusterIP + "/32"}}
	if diff := cmp.Diff(kubetest.AsText(got), want); diff != "" {
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
		// The fake client ignores Limit; the Node named name alone can fill it.
		{"web", 1, []string{"web"}},
		{"node-a", 2, []string{"node-a"}},
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
