package approval

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/csrguard/csrguard/internal/kube/kubetest"
	"github.com/csrguard/csrguard/internal/nodes"
	"github.com/csrguard/csrguard/internal/policy"
)

func TestCacheFactsNode(t *testing.T) {
	facts := NewCacheFacts(newCache(), storeOf(t, nodeA()), discovered(t), claimsOf())

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

	// The answer is a copy: a policy that changed it would not change the store.
	got, _ = facts.Node(t.Context(), "node-a")
	got.Addresses[0].Address = "changed"
	if again, _ := facts.Node(t.Context(), "node-a"); again.Addresses[0].Address == "changed" {
		t.Error("Node() returned the store's own addresses")
	}

	// Before the Nodes are listed every Node lookup fails: the policy holds, and never reads an
	// empty store as "no other Node has this address".
	unsynced := NewCacheFacts(newCache(), nodes.NewStore(nil, nil), discovered(t), claimsOf())
	if _, err := unsynced.Node(t.Context(), "node-a"); !errors.Is(err, nodes.ErrNotSynced) {
		t.Errorf("Node() before the Node list: error = %v, want ErrNotSynced", err)
	}
	if _, err := unsynced.NodesWithAddress(t.Context(), "node-a"); !errors.Is(err, nodes.ErrNotSynced) {
		t.Errorf("NodesWithAddress() before the Node list: error = %v, want ErrNotSynced", err)
	}
	if _, err := unsynced.NodesUnderName(t.Context(), "node-a", 2); !errors.Is(err, nodes.ErrNotSynced) {
		t.Errorf("NodesUnderName() before the Node list: error = %v, want ErrNotSynced", err)
	}
}

func TestCacheFactsNodesWithAddress(t *testing.T) {
	facts := NewCacheFacts(newCache(), storeOf(t,
		node("node-a", "Hostname=node-a", "InternalIP=10.0.0.10", "InternalDNS=Node-A.Example."),
		node("node-b", "Hostname=node-b", "InternalIP=::ffff:10.0.0.10"),
		node("node-c", "Hostname=node-c", "InternalIP=10.0.0.12"),
		node("node-d", "InternalIP=10.0.0.13"),
		node("node-e", "Hostname=node-d", "InternalDNS=node-c", "InternalIP=10.0.0.14"),
	), discovered(t), claimsOf())
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
	facts := NewCacheFacts(newCache(), storeOf(t), discovered(t), claimsOf())
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
	facts := NewCacheFacts(newCache(), storeOf(t, node("web.dc1.example"), node("web.dc2.example"), node("web"), nodeA()), discovered(t), claimsOf())
	for _, tt := range []struct {
		name  string
		limit int
		want  []string
	}{
		{"web", 0, []string{"web", "web.dc1.example", "web.dc2.example"}},
		// The Node named name comes first, and alone fills a limit of one.
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
}
