package policy_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/policy"
)

func TestAddressKeys(t *testing.T) {
	got := policy.AddressKeys([]corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "::ffff:10.0.0.10"},
		{Type: corev1.NodeInternalIP, Address: "10.0.0.10"},
		{Type: corev1.NodeExternalIP, Address: "FD00::1"},
		{Type: corev1.NodeHostName, Address: "Node-A."},
		{Type: corev1.NodeInternalDNS, Address: "node-a"},
		{Type: corev1.NodeHostName, Address: "10.0.0.50"},
		{Type: corev1.NodeExternalDNS, Address: ""},
	})
	want := []string{"10.0.0.10", "10.0.0.50", "fd00::1", "node-a"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("AddressKeys (-got +want):\n%s", diff)
	}
}

func TestSnapshotFacts(t *testing.T) {
	f := policy.NewSnapshotFacts([]policy.Node{
		{Name: "a", Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: "A"}}},
		{Name: "b", Addresses: []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "::ffff:10.0.0.1"}}},
	}, policy.Cluster{})
	ctx := t.Context()
	got, _ := f.NodesWithAddress(ctx, "10.0.0.1")
	if diff := cmp.Diff(got, []string{"a", "b"}); diff != "" {
		t.Errorf("NodesWithAddress(10.0.0.1) (-got +want):\n%s", diff)
	}
	if n, _ := f.Node(ctx, "missing"); n != nil {
		t.Errorf("Node(missing) = %v, want nil", n)
	}
	if n, _ := f.Node(ctx, "a"); n == nil || n.Name != "a" {
		t.Errorf("Node(a) = %v", n)
	}
}

func TestFromNode(t *testing.T) {
	for labels, want := range map[string]bool{policy.ControlPlaneLabel: true, policy.LegacyControlPlaneLabel: true, "node-role.kubernetes.io/worker": false, "": false} {
		n := &corev1.Node{}
		n.Name = "n"
		if labels != "" {
			n.Labels = map[string]string{labels: ""}
		}
		if got := policy.FromNode(n).ControlPlane; got != want {
			t.Errorf("FromNode with label %q: ControlPlane = %v, want %v", labels, got, want)
		}
	}
}
