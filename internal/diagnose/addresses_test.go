package diagnose

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/csrguard/csrguard/internal/policy"
)

func TestNodeCIDRs(t *testing.T) {
	nodes := []corev1.Node{
		newNode("a", "10.0.0.7", ubuntuOS, false),
		newNode("b", "10.0.1.9", ubuntuOS, false),    // 10.0.1.0/24 merges with 10.0.0.0/24
		newNode("c", "10.0.3.1", ubuntuOS, false),    // 10.0.2.0/24 is absent: no merge
		newNode("d", "010.0.0.8", ubuntuOS, false),   // the kubelet's reading: 10.0.0.8
		newNode("e", "2001:db8::5", ubuntuOS, false), // IPv6: its /64
	}
	nodes[0].Status.Addresses = append(nodes[0].Status.Addresses,
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.10"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "a.example.com"})
	var got []string
	for _, p := range NodeCIDRs(nodes) {
		got = append(got, p.String())
	}
	want := []string{"10.0.0.0/23", "10.0.3.0/24", "203.0.113.0/24", "2001:db8::/64"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("NodeCIDRs (-got +want):\n%s", diff)
	}
}

func TestAddressFindings(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Snapshot)
		want   []string
		check  func(t *testing.T, f []Finding)
	}{
		{name: "hardened_healthy", want: nil},
		{name: "allowed_node_cidrs_unset", modify: func(s *Snapshot) { s.Policy = policy.DefaultConfig() },
			want: []string{"info allowed-node-cidrs-unset"},
			check: func(t *testing.T, f []Finding) {
				if !strings.Contains(strings.Join(f[0].Fix, "\n"), "policy.allowedNodeCIDRs={10.0.0.0/24}") {
					t.Errorf("fix does not give the Helm value: %q", f[0].Fix)
				}
			}},
		{name: "api_server_address_on_unlabelled_node", modify: func(s *Snapshot) {
			s.Cluster.APIServerAddresses = []netip.Addr{netip.MustParseAddr("10.0.0.2")} // node-b's
		}, want: []string{"warning control-plane-node-unlabelled"},
			check: func(t *testing.T, f []Finding) {
				if diff := cmp.Diff(f[0].Nodes, []string{"node-b"}); diff != "" {
					t.Errorf("nodes (-got +want):\n%s", diff)
				}
			}},
		{name: "api_server_address_on_labelled_node", modify: func(s *Snapshot) {
			s.Cluster.APIServerAddresses = []netip.Addr{netip.MustParseAddr("10.0.0.1")} // node-a, control plane
		}},
		{name: "api_server_address_rke_label", modify: func(s *Snapshot) {
			s.Cluster.APIServerAddresses = []netip.Addr{netip.MustParseAddr("10.0.0.2")}
			s.Nodes[1].Labels = map[string]string{"node-role.kubernetes.io/controlplane": "true"}
			s.Policy.ControlPlaneLabels = []string{"node-role.kubernetes.io/controlplane=true"}
		}},
		{name: "pod_cidrs_inside_allowed_node_cidrs", modify: func(s *Snapshot) {
			s.Nodes[0].Spec.PodCIDRs = []string{"10.0.0.128/26"}
			s.Nodes[1].Spec.PodCIDRs = []string{"10.0.0.192/26"}
			s.Policy.ExtraReservedCIDRs = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
		}, want: []string{"info pod-cidrs-not-reserved"},
			check: func(t *testing.T, f []Finding) {
				// The existing reserved CIDRs stay in the value to set.
				if !strings.Contains(strings.Join(f[0].Fix, "\n"), "policy.reservedCIDRs={203.0.113.0/24,10.0.0.128/25}") {
					t.Errorf("fix does not give the Helm value: %q", f[0].Fix)
				}
			}},
		{name: "pod_cidrs_inside_mapped_allowed_node_cidrs", modify: func(s *Snapshot) {
			s.Nodes[0].Spec.PodCIDRs = []string{"10.0.0.128/26"}
			s.Policy.AllowedNodeCIDRs = []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/120")}
		}, want: []string{"info pod-cidrs-not-reserved"}},
		{name: "pod_cidrs_reserved", modify: func(s *Snapshot) {
			s.Nodes[0].Spec.PodCIDRs = []string{"10.0.0.128/26"}
			s.Policy.ExtraReservedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.128/25")}
		}},
		{name: "pod_cidrs_outside_allowed_node_cidrs", modify: func(s *Snapshot) {
			s.Nodes[0].Spec.PodCIDRs = []string{"10.244.0.0/24"}
		}},
		{name: "pod_cidrs_without_allowed_node_cidrs", modify: func(s *Snapshot) {
			s.Policy = policy.DefaultConfig()
			s.Nodes[0].Spec.PodCIDRs = []string{"10.244.0.0/24", "fd00:244::/64"}
		}, want: []string{"info allowed-node-cidrs-unset", "info pod-cidrs-not-reserved"}},
		// A node may set its own pod CIDR: one that would deny nodes if reserved stays out of
		// the advice, and is named.
		{name: "pod_cidrs_suspicious", modify: func(s *Snapshot) {
			s.Policy = policy.DefaultConfig()
			s.Nodes[0].Spec.PodCIDRs = []string{"10.244.0.0/24"}
			s.Nodes[1].Spec.PodCIDRs = []string{"0.0.0.0/0"}
			s.Nodes[2].Spec.PodCIDRs = []string{"10.0.0.0/24"} // the nodes' own network
		}, want: []string{"info allowed-node-cidrs-unset", "info pod-cidrs-not-reserved"},
			check: func(t *testing.T, f []Finding) {
				fix, evidence := strings.Join(f[1].Fix, "\n"), strings.Join(f[1].Evidence, "\n")
				if !strings.Contains(fix, "policy.reservedCIDRs={10.244.0.0/24}") {
					t.Errorf("fix = %q, want only the plausible pod CIDR", fix)
				}
				for _, want := range []string{"node node-b has pod CIDR 0.0.0.0/0", "node node-c has pod CIDR 10.0.0.0/24"} {
					if !strings.Contains(evidence, want) {
						t.Errorf("evidence %q does not say %q", evidence, want)
					}
				}
			}},
		// Before 1.33 (or with the API turned off) there are no ServiceCIDR objects: the
		// range must come from --service-cidrs, here or on the running csrguard.
		{name: "no_servicecidr_api", modify: func(s *Snapshot) {
			s.NoServiceCIDRAPI = true
			s.Cluster.ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.1/32")}
		}, want: []string{"warning service-cidrs-unknown"},
			check: func(t *testing.T, f []Finding) {
				want := Finding{
					ID: IDServiceCIDRsUnknown, Severity: f[0].Severity,
					Title:    "The service range is unknown: the API server serves no ServiceCIDR objects and --service-cidrs is not set",
					Evidence: []string{"the API server serves no ServiceCIDR objects (networking.k8s.io/v1 servicecidrs, Kubernetes 1.33+); the Service IPs known are only 10.96.0.1/32"},
					Fix: []string{
						"Set --service-cidrs to kube-apiserver's --service-cluster-ip-range (kubeadm: networking.serviceSubnet, 10.96.0.0/12 by default):",
						"helm upgrade csrguard <chart> --reuse-values --set 'policy.serviceCIDRs={<range>}'",
						"or run csrguard controller (and doctor, preflight) with --service-cidrs=<range>",
					},
				}
				if diff := cmp.Diff(f[0], want); diff != "" {
					t.Errorf("finding (-got +want):\n%s", diff)
				}
			}},
		{name: "no_servicecidr_api_flag_here", modify: func(s *Snapshot) {
			s.NoServiceCIDRAPI = true
			s.StaticServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}
		}},
		{name: "no_servicecidr_api_flag_on_csrguard", modify: func(s *Snapshot) {
			s.NoServiceCIDRAPI = true
			s.Approvers[0].ServiceCIDRs = "10.96.0.0/12"
		}},
		{name: "squatter", modify: func(s *Snapshot) {
			s.Nodes[2].Status.Addresses = append(s.Nodes[2].Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "10.0.0.1"})
			s.Claims = map[string]policy.Claim{"10.0.0.1": {Node: "node-a", Since: now.Add(-time.Hour)}}
		}, want: []string{"warning address-conflicts"},
			check: func(t *testing.T, f []Finding) {
				if diff := cmp.Diff(f[0].Nodes, []string{"node-c"}); diff != "" {
					t.Errorf("nodes (-got +want):\n%s", diff)
				}
			}},
		{name: "shared_without_claim", modify: func(s *Snapshot) {
			s.Nodes[2].Status.Addresses = append(s.Nodes[2].Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "10.0.0.1"})
		}, want: []string{"warning address-conflicts"},
			check: func(t *testing.T, f []Finding) {
				if diff := cmp.Diff(f[0].Nodes, []string{"node-a", "node-c"}); diff != "" {
					t.Errorf("nodes (-got +want):\n%s", diff)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := healthy(t, ubuntuOS)
			if tt.modify != nil {
				tt.modify(&s)
			}
			v := newView(s)
			var got []Finding
			var ids []string
			for _, id := range []string{IDAllowedNodeCIDRs, IDPodCIDRsNotReserved, IDControlPlaneUnlabelled, IDAddressConflicts, IDServiceCIDRsUnknown} {
				if f := ruleOf(t, id).check(v); f != nil {
					got = append(got, *f)
					ids = append(ids, f.Severity.String()+" "+f.ID)
				}
			}
			if diff := cmp.Diff(ids, tt.want); diff != "" {
				t.Fatalf("findings (-got +want):\n%s", diff)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}
