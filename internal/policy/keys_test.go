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
