package policy_test

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/policy"
)

func TestAddressKeys(t *testing.T) {
	got := policy.AddressKeys([]corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "::ffff:10.0.0.10"},
		{Type: corev1.NodeInternalIP, Address: "10.0.0.10"},
		{Type: corev1.NodeInternalIP, Address: "010.000.000.010"},
		{Type: corev1.NodeExternalIP, Address: "FD00::1"},
		{Type: corev1.NodeHostName, Address: "Node-A."},
		{Type: corev1.NodeInternalDNS, Address: "node-a"},
		{Type: corev1.NodeHostName, Address: "10.0.0.50"},
		{Type: corev1.NodeExternalIP, Address: "fe80::1%eth0"},
		{Type: corev1.NodeExternalDNS, Address: ""},
		{Type: corev1.NodeInternalDNS, Address: "10.0.0.5 "},
		{Type: corev1.NodeInternalDNS, Address: "x\ny"},
		{Type: corev1.NodeInternalDNS, Address: "*.example.com"},
		{Type: corev1.NodeInternalDNS, Address: strings.Repeat("a", 300)},
		// U+212A KELVIN SIGN lowercases to "k" in Unicode, but DNS folds ASCII only.
		{Type: corev1.NodeInternalDNS, Address: "NODE-\u212a"},
	})
	// The kubelet's ParseIPSloppy takes leading zeros but no zone: a zoned address is no IP.
	// Addresses that are neither an IP nor a DNS name can never be SANs: they get no key.
	want := []string{"10.0.0.10", "10.0.0.50", "fd00::1", "node-a"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("AddressKeys (-got +want):\n%s", diff)
	}
}

func TestParseNodeIP(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" means not an IP
	}{
		{in: "10.0.0.1", want: "10.0.0.1"},
		{in: "010.000.000.001", want: "10.0.0.1"},
		{in: "::ffff:10.0.0.1", want: "10.0.0.1"},
		{in: "FD00::0:1", want: "fd00::1"},
		{in: "fe80::1%eth0"},
		{in: "10.1"},
		{in: "0x0a000001"},
		{in: "node-a"},
		{in: ""},
	}
	for _, tt := range tests {
		got, ok := policy.ParseNodeIP(tt.in)
		if ok != (tt.want != "") || (ok && got.String() != tt.want) {
			t.Errorf("ParseNodeIP(%q) = %v, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestSnapshotFacts(t *testing.T) {
	claim := policy.Claim{Node: "a", Since: time.Unix(100, 0)}
	f := policy.NewSnapshotFacts(policy.Snapshot{
		Nodes: []policy.Node{
			{Name: "a", Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}, {Type: corev1.NodeHostName, Address: "A"}}},
			{Name: "b", Addresses: []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "::ffff:10.0.0.1"}}},
		},
		Claims:     map[string]policy.Claim{"10.0.0.1": claim},
		Namespaces: []string{"default"},
	})
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
	if c, ok, _ := f.AddressClaim(ctx, "10.0.0.1"); !ok || c != claim {
		t.Errorf("AddressClaim(10.0.0.1) = %v, %v; want %v", c, ok, claim)
	}
	if _, ok, _ := f.AddressClaim(ctx, "a"); ok {
		t.Error("AddressClaim(a) found a claim, want none")
	}
	for ns, want := range map[string]bool{"default": true, "kube-system": false} {
		if got, _ := f.NamespaceExists(ctx, ns); got != want {
			t.Errorf("NamespaceExists(%q) = %v, want %v", ns, got, want)
		}
	}
}

func TestIsControlPlane(t *testing.T) {
	cfg := policy.DefaultConfig()
	rke := policy.DefaultConfig()
	rke.ControlPlaneLabels = []string{"node-role.kubernetes.io/controlplane=true"}
	tests := []struct {
		name   string
		cfg    policy.Config
		labels map[string]string
		want   bool
	}{
		{name: "control_plane", cfg: cfg, labels: map[string]string{policy.ControlPlaneLabel: ""}, want: true},
		{name: "master", cfg: cfg, labels: map[string]string{policy.LegacyControlPlaneLabel: "true"}, want: true},
		{name: "worker", cfg: cfg, labels: map[string]string{"node-role.kubernetes.io/worker": ""}},
		{name: "no_labels", cfg: cfg},
		{name: "rke_true", cfg: rke, labels: map[string]string{"node-role.kubernetes.io/controlplane": "true"}, want: true},
		{name: "rke_false", cfg: rke, labels: map[string]string{"node-role.kubernetes.io/controlplane": "false"}},
		{name: "rke_with_default_label", cfg: rke, labels: map[string]string{policy.ControlPlaneLabel: ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.IsControlPlane(tt.labels); got != tt.want {
				t.Errorf("IsControlPlane(%v) = %v, want %v", tt.labels, got, tt.want)
			}
		})
	}
}

func TestNamePrefixes(t *testing.T) {
	for name, want := range map[string][]string{
		"node-a":                    {"node-a"},
		"ip-10-0-0-22.ec2.internal": {"ip-10-0-0-22", "ip-10-0-0-22.ec2", "ip-10-0-0-22.ec2.internal"},
		"Web.DC1.":                  {"web", "web.dc1"},
	} {
		if diff := cmp.Diff(policy.NamePrefixes(name), want); diff != "" {
			t.Errorf("NamePrefixes(%q) (-got +want):\n%s", name, diff)
		}
	}
}

// TestAddressKeysShareTheAddress: a key that is its address as written is the address's own
// string, not a copy, so that a store keeping both the addresses and the keys keeps it once.
func TestAddressKeysShareTheAddress(t *testing.T) {
	addrs := []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: strings.Clone("10.0.0.1")},
		{Type: corev1.NodeHostName, Address: strings.Clone("node-a")},
		{Type: corev1.NodeInternalDNS, Address: "Node-A.Example"},
	}
	keys := policy.AddressKeys(addrs)
	if want := []string{"10.0.0.1", "node-a", "node-a.example"}; !slices.Equal(keys, want) {
		t.Fatalf("AddressKeys = %q, want %q", keys, want)
	}
	for i, a := range addrs[:2] {
		if k := keys[i]; unsafe.StringData(k) != unsafe.StringData(a.Address) { //nolint:gosec // G103: compares where two strings point, reads nothing
			t.Errorf("key %q is a copy of its address", k)
		}
	}
}
